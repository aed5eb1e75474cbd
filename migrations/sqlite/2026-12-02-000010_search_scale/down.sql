-- Back to 2026-11-22-000003_search_tokens's full-text index and the earlier indexes.
DROP INDEX collections_public_created_at_idx;
DROP INDEX collections_owner_id_idx;
CREATE INDEX collections_owner_id_idx ON collections (owner_id);
DROP INDEX documents_collection_status_idx;
CREATE INDEX documents_collection_status_idx ON documents (collection_id, status);
DROP INDEX documents_collection_created_at_idx;
CREATE INDEX documents_collection_created_at_idx ON documents (collection_id, created_at);

DROP TRIGGER chunks_fts_after_update;
DROP TRIGGER chunks_fts_after_delete;
DROP TRIGGER chunks_fts_after_insert;
DROP TABLE chunks_fts;
DROP VIEW chunks_fts_content;

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
