DROP INDEX operations_task_id_idx;
DROP INDEX operations_collection_idempotency_key;
ALTER TABLE operations DROP COLUMN idempotency_key;
