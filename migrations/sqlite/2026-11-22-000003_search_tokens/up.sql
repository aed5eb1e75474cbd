-- Full-text search over tokens computed in Rust (repo_core::search::index_text), so
-- that SQLite and PostgreSQL index exactly the same tokens. `search_tokens` is NULL
-- until the store fills it: rows stored before this migration are backfilled by the
-- store right after migrating (the FTS5 'rebuild' below indexes nothing for them; the
-- update trigger indexes them when the backfill writes their tokens).
DROP TRIGGER chunks_fts_after_update;
DROP TRIGGER chunks_fts_after_delete;
DROP TRIGGER chunks_fts_after_insert;
DROP TABLE chunks_fts;

ALTER TABLE chunks ADD COLUMN search_tokens TEXT;
-- Finds rows still to backfill without a scan of the whole table.
CREATE INDEX chunks_search_tokens_missing_idx ON chunks (id) WHERE search_tokens IS NULL;

-- The `ascii` tokenizer splits on ASCII non-alphanumerics only and keeps every
-- non-ASCII character in tokens, so the space-separated Rust tokens are indexed as
-- they are (unicode61 would re-split and fold them its own way).
CREATE VIRTUAL TABLE chunks_fts USING fts5 (
    search_tokens,
    content = 'chunks',
    content_rowid = 'id',
    tokenize = 'ascii'
);
CREATE TRIGGER chunks_fts_after_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, search_tokens) VALUES (new.id, new.search_tokens);
END;
CREATE TRIGGER chunks_fts_after_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, search_tokens)
        VALUES ('delete', old.id, old.search_tokens);
END;
CREATE TRIGGER chunks_fts_after_update AFTER UPDATE OF search_tokens ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, search_tokens)
        VALUES ('delete', old.id, old.search_tokens);
    INSERT INTO chunks_fts (rowid, search_tokens) VALUES (new.id, new.search_tokens);
END;
INSERT INTO chunks_fts (chunks_fts) VALUES ('rebuild');
