-- Full-text search over tokens computed in Rust (repo_core::search::index_text)
-- instead of PostgreSQL's text-search parser, so that both backends index exactly
-- the same tokens. `search_tokens` is NULL until the store fills it: rows stored
-- before this migration are backfilled by the store right after migrating.
DROP INDEX chunks_content_tsv_idx;
ALTER TABLE chunks DROP COLUMN content_tsv;

ALTER TABLE chunks ADD COLUMN search_tokens TEXT;
-- Finds rows still to backfill without a scan of the whole table.
CREATE INDEX chunks_search_tokens_missing_idx ON chunks (id) WHERE search_tokens IS NULL;

-- PostgreSQL only: the tokens as a tsvector, built without the text-search parser
-- (array_to_tsvector takes the lexemes verbatim), used only as an index prefilter:
-- the exact match is a substring test on search_tokens. NULL when PostgreSQL could
-- not store it:
-- * the lexemes of a tsvector may total at most 1,048,575 bytes (MAXSTRPOS). Each
--   token takes its bytes plus two spaces in search_tokens, so octet_length of at
--   most 1,048,575 guarantees that the distinct lexemes fit;
-- * a lexeme may have at most 2,047 bytes: a token of 512 or more characters (up to
--   4 bytes each) might not fit, so such a chunk gets no vector
--   (repo_core::search::MAX_PREFILTER_TOKEN_CHARS is the same bound; the regex
--   engine caps one repetition count at 255, hence 255 + 255 + 2).
ALTER TABLE chunks ADD COLUMN search_tsv TSVECTOR GENERATED ALWAYS AS (
    CASE
        WHEN octet_length(search_tokens) <= 1048575
             AND search_tokens !~ '[^ ]{255}[^ ]{255}[^ ]{2}'
        THEN array_to_tsvector(string_to_array(btrim(search_tokens, ' '), '  '))
    END
) STORED;
-- PostgreSQL only: the prefilter index.
CREATE INDEX chunks_search_tsv_idx ON chunks USING gin (search_tsv);
-- PostgreSQL only: the chunks without a vector, which every search also reads.
CREATE INDEX chunks_search_unindexed_idx ON chunks (collection_id)
    WHERE search_tsv IS NULL AND search_tokens IS NOT NULL;
