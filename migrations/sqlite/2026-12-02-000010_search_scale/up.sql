-- Search and listings whose cost follows the page (docs/PERFORMANCE.md, "Scale").
--
-- 1. The collection becomes part of what the full-text index matches: chunks_fts gets
--    a first column holding the collection id as one token (the UUID without its
--    hyphens, which the `ascii` tokenizer would split on), and every search ANDs
--    `collection_token : "<id>"` into its MATCH expression. FTS5 then intersects the
--    query's posting lists with the collection's, so a collection's search no longer
--    reads the matches of every other collection. The external content is the view
--    chunks_fts_content, which computes that token, so that 'rebuild' and FTS5's
--    integrity check read exactly what the triggers index.
DROP TRIGGER chunks_fts_after_update;
DROP TRIGGER chunks_fts_after_delete;
DROP TRIGGER chunks_fts_after_insert;
DROP TABLE chunks_fts;

CREATE VIEW chunks_fts_content AS
    SELECT id, replace(collection_id, '-', '') AS collection_token, search_tokens FROM chunks;
CREATE VIRTUAL TABLE chunks_fts USING fts5 (
    collection_token,
    search_tokens,
    content = 'chunks_fts_content',
    content_rowid = 'id',
    tokenize = 'ascii'
);
CREATE TRIGGER chunks_fts_after_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, collection_token, search_tokens)
        VALUES (new.id, replace(new.collection_id, '-', ''), new.search_tokens);
END;
CREATE TRIGGER chunks_fts_after_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, collection_token, search_tokens)
        VALUES ('delete', old.id, replace(old.collection_id, '-', ''), old.search_tokens);
END;
CREATE TRIGGER chunks_fts_after_update AFTER UPDATE OF collection_id, search_tokens ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, collection_token, search_tokens)
        VALUES ('delete', old.id, replace(old.collection_id, '-', ''), old.search_tokens);
    INSERT INTO chunks_fts (rowid, collection_token, search_tokens)
        VALUES (new.id, replace(new.collection_id, '-', ''), new.search_tokens);
END;
INSERT INTO chunks_fts (chunks_fts) VALUES ('rebuild');

-- 2. The documents listing (failed first, then newest) reads two index ranges in
--    order instead of sorting the collection: the failed documents by
--    documents_collection_status_idx, the others by documents_collection_created_at_idx.
DROP INDEX documents_collection_created_at_idx;
CREATE INDEX documents_collection_created_at_idx ON documents (collection_id, created_at, id);
DROP INDEX documents_collection_status_idx;
CREATE INDEX documents_collection_status_idx ON documents (collection_id, status, created_at, id);

-- 3. list_visible as indexed branches, each read newest first: owned (by owner),
--    public, and granted (collection_permissions_user_id_idx, then the primary key).
DROP INDEX collections_owner_id_idx;
CREATE INDEX collections_owner_id_idx ON collections (owner_id, created_at, id);
CREATE INDEX collections_public_created_at_idx ON collections (is_public, created_at, id);
