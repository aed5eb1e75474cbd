-- Back to the FTS5 unicode61 index over `content` of 2026-11-21-000002.
DROP TRIGGER chunks_fts_after_update;
DROP TRIGGER chunks_fts_after_delete;
DROP TRIGGER chunks_fts_after_insert;
DROP TABLE chunks_fts;
DROP INDEX chunks_search_tokens_missing_idx;
ALTER TABLE chunks DROP COLUMN search_tokens;

CREATE VIRTUAL TABLE chunks_fts USING fts5 (
    content,
    content = 'chunks',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 0'
);
CREATE TRIGGER chunks_fts_after_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER chunks_fts_after_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER chunks_fts_after_update AFTER UPDATE OF content ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO chunks_fts (rowid, content) VALUES (new.id, new.content);
END;
INSERT INTO chunks_fts (chunks_fts) VALUES ('rebuild');
