//! The domain's own rules, applied to every copied row: each row is rebuilt as the
//! input the repositories take (`NewUser`, `NewCollection`, `NewOperation`,
//! `NewDocument`, `NewChunk`) and run through the same `repo_core` functions the
//! repositories call before they write (`validated`, `prepare`, `prepare_batch`,
//! `repo_core::validate`). Stored forms those functions compute (a lowercase email, a
//! trimmed name, the folded API-key name, the vector-store name) must equal what the
//! row holds: a row the application could not have written is refused, never changed.

use crate::schema::{Table, TableSpec};
use crate::value::Value;
use repo_core::{
    api_key, chunk, validate, CollectionId, CollectionStats, DocumentId, Field, NewChunk,
    NewCollection, NewDocument, NewOperation, NewUser, RepoError, UserId,
};
use std::str::FromStr;

/// Column index and reason of the first domain rule `values` (a converted row of
/// `table`, in the order of its columns) breaks.
pub fn check(table: Table, values: &[Value]) -> Result<(), (usize, String)> {
    let spec = table.spec();
    let row = Row { spec, values };
    let result = match table {
        Table::Users => users(&row),
        Table::ApiKeys => api_keys(&row),
        Table::Collections => collections(&row),
        Table::CollectionPermissions => Ok(()),
        Table::Operations => operations(&row),
        Table::Documents => documents(&row),
        Table::Chunks => chunks(&row),
    };
    result.map_err(|e| match e {
        // Single-row batches: the batch position (`item`) says nothing here.
        RepoError::Validation { field, message, .. } => {
            (spec.index_of(field.as_str()).unwrap_or(spec.pk), message)
        }
        other => (spec.pk, other.to_string()),
    })
}

/// A converted row, read by column name.
struct Row<'a> {
    spec: &'static TableSpec,
    values: &'a [Value],
}

impl Row<'_> {
    fn value(&self, name: &str) -> &Value {
        self.spec
            .index_of(name)
            .and_then(|i| self.values.get(i))
            .unwrap_or(&Value::Null)
    }

    fn opt_str(&self, name: &str) -> Option<String> {
        match self.value(name) {
            Value::Str(s) => Some(s.clone()),
            _ => None,
        }
    }

    fn str(&self, name: &str) -> String {
        self.opt_str(name).unwrap_or_default()
    }

    fn opt_int(&self, name: &str) -> Option<i64> {
        match self.value(name) {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    fn int(&self, name: &str) -> i64 {
        self.opt_int(name).unwrap_or_default()
    }

    fn opt_i32(&self, name: &str) -> Option<i32> {
        // Range-checked by the conversion of 32-bit columns.
        self.opt_int(name).and_then(|v| i32::try_from(v).ok())
    }

    fn i32(&self, name: &str) -> i32 {
        self.opt_i32(name).unwrap_or_default()
    }

    fn bool(&self, name: &str) -> bool {
        matches!(self.value(name), Value::Bool(true))
    }

    /// JSON columns are valid by the time the domain rules run.
    fn opt_json(&self, name: &str) -> Option<serde_json::Value> {
        self.opt_str(name)
            .map(|s| serde_json::from_str(&s).unwrap_or(serde_json::Value::Null))
    }

    fn json(&self, name: &str) -> serde_json::Value {
        self.opt_json(name).unwrap_or(serde_json::Value::Null)
    }

    fn uuid(&self, name: &str) -> uuid::Uuid {
        uuid::Uuid::parse_str(&self.str(name)).unwrap_or_default()
    }

    fn parse<T: FromStr>(&self, name: &str) -> Result<T, RepoError>
    where
        RepoError: From<T::Err>,
    {
        Ok(self.str(name).parse()?)
    }
}

/// A stored value differs from the form the repositories store for it.
fn not_stored_form(field: Field, stored: &str, expected: &str, why: &str) -> RepoError {
    RepoError::validation(
        field,
        format!(
            "{} is not in its stored form {} ({why})",
            crate::timestamp::preview(stored),
            crate::timestamp::preview(expected)
        ),
    )
}

fn users(r: &Row<'_>) -> Result<(), RepoError> {
    let mut user = NewUser::new(r.str("username"), r.str("email"), r.str("hashed_password"));
    user.full_name = r.opt_str("full_name");
    user.is_active = r.bool("is_active");
    user.is_superuser = r.bool("is_superuser");
    let stored = user.validated()?;
    if stored.email != user.email {
        return Err(not_stored_form(
            Field::Email,
            &user.email,
            &stored.email,
            "emails are unique regardless of case and stored in lowercase: this one may equal \
             another except for case, and lookups by email would not find it",
        ));
    }
    Ok(())
}

fn api_keys(r: &Row<'_>) -> Result<(), RepoError> {
    let name = r.str("name");
    let trimmed = validate::api_key_name(&name)?;
    if trimmed != name {
        return Err(not_stored_form(
            Field::Name,
            &name,
            &trimmed,
            "names are stored trimmed",
        ));
    }
    let folded = api_key::fold_key_name(&name);
    let stored_folded = r.str("name_folded");
    if stored_folded != folded {
        return Err(not_stored_form(
            Field::NameFolded,
            &stored_folded,
            &folded,
            "the case-folded name that makes names unique per user regardless of case",
        ));
    }
    if let Some(p) = r.opt_json("permissions") {
        validate::json(Field::Permissions, &p)?;
    }
    Ok(())
}

fn collections(r: &Row<'_>) -> Result<(), RepoError> {
    let id = CollectionId(r.uuid("id"));
    let input = NewCollection {
        name: r.str("name"),
        owner_id: UserId(r.int("owner_id")),
        description: r.opt_str("description"),
        embedding_model: r.str("embedding_model"),
        quantization: r.parse("quantization")?,
        chunk_size: r.i32("chunk_size"),
        chunk_overlap: r.i32("chunk_overlap"),
        chunking_strategy: r.opt_str("chunking_strategy"),
        chunking_config: r.opt_json("chunking_config"),
        is_public: r.bool("is_public"),
        meta: r.json("meta"),
        sync_mode: r.parse("sync_mode")?,
        sync_interval_minutes: r.opt_i32("sync_interval_minutes"),
    };
    let stored = input.prepare()?;
    if stored.name != input.name {
        return Err(not_stored_form(
            Field::Name,
            &input.name,
            &stored.name,
            "names are stored trimmed",
        ));
    }
    let vector_store_name = r.str("vector_store_name");
    if vector_store_name != id.vector_store_name() {
        return Err(not_stored_form(
            Field::VectorStoreName,
            &vector_store_name,
            &id.vector_store_name(),
            "derived from the collection id",
        ));
    }
    validate::opt_text(Field::StatusMessage, r.opt_str("status_message").as_deref())?;
    validate::opt_text(
        Field::SyncLastError,
        r.opt_str("sync_last_error").as_deref(),
    )?;
    CollectionStats {
        document_count: r.int("document_count"),
        vector_count: r.int("vector_count"),
        total_size_bytes: r.int("total_size_bytes"),
    }
    .validate()
}

fn operations(r: &Row<'_>) -> Result<(), RepoError> {
    let mut input = NewOperation::new(
        CollectionId(r.uuid("collection_id")),
        UserId(r.int("user_id")),
        r.parse("kind")?,
        r.json("config"),
    );
    input.meta = r.json("meta");
    input.task_id = r.opt_str("task_id");
    input.idempotency_key = r.opt_str("idempotency_key");
    input.prepare()?;
    validate::opt_text(Field::ErrorMessage, r.opt_str("error_message").as_deref())
}

fn documents(r: &Row<'_>) -> Result<(), RepoError> {
    let input = NewDocument {
        collection_id: CollectionId(r.uuid("collection_id")),
        file_path: r.str("file_path"),
        file_name: r.str("file_name"),
        file_size: r.int("file_size"),
        mime_type: r.opt_str("mime_type"),
        content_hash: r.str("content_hash"),
        uri: r.opt_str("uri"),
        meta: r.json("meta"),
    };
    input.prepare()?;
    validate::opt_text(Field::ErrorMessage, r.opt_str("error_message").as_deref())
}

fn chunks(r: &Row<'_>) -> Result<(), RepoError> {
    let input = NewChunk {
        document_id: DocumentId(r.uuid("document_id")),
        chunk_index: r.i32("chunk_index"),
        content: r.str("content"),
        start_offset: r.opt_i32("start_offset"),
        end_offset: r.opt_i32("end_offset"),
        token_count: r.opt_i32("token_count"),
        meta: r.json("meta"),
    };
    chunk::prepare_batch(CollectionId(r.uuid("collection_id")), &[input])?;
    validate::opt_text(
        Field::EmbeddingVectorId,
        r.opt_str("embedding_vector_id").as_deref(),
    )
}
