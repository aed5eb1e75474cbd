-- Back to the indexes of the earlier migrations (btree_gin stays installed).
DROP INDEX collections_public_created_at_idx;
DROP INDEX collections_owner_id_idx;
CREATE INDEX collections_owner_id_idx ON collections (owner_id);
DROP INDEX documents_collection_status_idx;
CREATE INDEX documents_collection_status_idx ON documents (collection_id, status);
DROP INDEX documents_collection_created_at_idx;
CREATE INDEX documents_collection_created_at_idx ON documents (collection_id, created_at);
DROP INDEX chunks_search_tsv_idx;
CREATE INDEX chunks_search_tsv_idx ON chunks USING gin (search_tsv);
