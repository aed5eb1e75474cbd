-- Search and listings whose cost follows the page (docs/PERFORMANCE.md, "Scale").
--
-- 1. The collection is in the full-text index path: chunks_search_tsv_idx becomes a
--    two-column GIN index (btree_gin gives uuid a GIN operator class), so a search
--    intersects the collection's posting list with the query's lexemes' inside the
--    index, also when many collections share one hash partition. btree_gin is a
--    trusted contrib extension: a database owner without superuser may create it.
--    The down migration leaves it installed (other objects may use it).
CREATE EXTENSION IF NOT EXISTS btree_gin;
DROP INDEX chunks_search_tsv_idx;
CREATE INDEX chunks_search_tsv_idx ON chunks USING gin (collection_id, search_tsv);

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
