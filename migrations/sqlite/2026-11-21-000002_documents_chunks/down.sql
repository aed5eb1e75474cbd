DROP TRIGGER chunks_fts_after_update;
DROP TRIGGER chunks_fts_after_delete;
DROP TRIGGER chunks_fts_after_insert;
DROP TABLE chunks_fts;
DROP TABLE chunks;
DROP TABLE documents;
