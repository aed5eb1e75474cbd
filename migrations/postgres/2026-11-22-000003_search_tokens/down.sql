-- Back to the parser-built content_tsv of 2026-11-21-000002.
DROP INDEX chunks_search_unindexed_idx;
DROP INDEX chunks_search_tsv_idx;
ALTER TABLE chunks DROP COLUMN search_tsv;
DROP INDEX chunks_search_tokens_missing_idx;
ALTER TABLE chunks DROP COLUMN search_tokens;

ALTER TABLE chunks ADD COLUMN content_tsv TSVECTOR GENERATED ALWAYS AS (
    to_tsvector('simple'::regconfig, regexp_replace(content, '[^[:alnum:]]+', ' ', 'g'))
) STORED;
CREATE INDEX chunks_content_tsv_idx ON chunks USING gin (content_tsv);
