-- An optional client token that makes operation creation idempotent: unique per
-- collection, so a retried create with the same key finds the first attempt.
ALTER TABLE operations ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX operations_collection_idempotency_key ON operations (collection_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX operations_task_id_idx ON operations (task_id) WHERE task_id IS NOT NULL;
