//! [`DocumentRepository`] on PostgreSQL: registration deduplicated by content hash,
//! bulk registration through `COPY`, listings and state changes.
//!
//! The row types, the statements both backends run alike and the trait forwarding
//! are expanded from `repo_diesel`'s macros; the core plans `register_many`. What
//! stays here is PostgreSQL's own: `register`'s retry, the `COPY` path, the `@>`
//! metadata filter, and which calls a replica may serve.

use crate::codec::PgCodec;
use crate::collections as collection_repo;
use crate::connection::{ConnectionSource, QueryResultExt};
use crate::error::map_diesel_error;
use crate::schema::{documents, documents_staging};
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use repo_core::document::StoredDocuments;
use repo_core::{
    CollectionId, Document, DocumentId, Entity, Field, NewDocument, Registered, RepoError,
    RepoResult, Timestamp,
};
use repo_diesel::documents::register_batch;
use serde_json::Value;

/// Most bind parameters one PostgreSQL statement accepts.
pub(crate) const PG_MAX_BINDS: usize = 65_535;

repo_diesel::document_row!(
    backend: Pg,
    codec: PgCodec,
    uuid: uuid::Uuid,
    timestamp: Timestamp,
    json: Value,
);

repo_diesel::insert_document!(
    /// A row for `documents`.
    InsertDocument,
    table: documents,
    codec: PgCodec,
    uuid: uuid::Uuid,
    timestamp: Timestamp,
);

repo_diesel::insert_document!(
    /// A row for the temporary `documents_staging` table of bulk registration.
    InsertStagedDocument,
    table: documents_staging,
    codec: PgCodec,
    uuid: uuid::Uuid,
    timestamp: Timestamp,
);

repo_diesel::document_statements!(
    backend: Pg,
    conn: PgConnection,
    codec: PgCodec,
    uuid: uuid::Uuid,
    timestamp: Timestamp,
    map_err: map_diesel_error,
    ids_per_statement: usize::MAX,
    ids_transaction: repo_diesel::documents::without_transaction,
    uuid_sql: diesel::sql_types::Uuid,
    require_collection: collection_repo::ensure_exists,
    stats_sql: "SELECT status, count(*)::bigint AS documents, \
                coalesce(sum(file_size), 0)::bigint AS bytes, \
                coalesce(sum(chunk_count), 0)::bigint AS chunks \
                FROM documents WHERE collection_id = $1 GROUP BY status",
);

/// Columns of `documents`, in table order (for the SQL text of bulk registration).
const DOCUMENT_COLUMNS: &str = "id, collection_id, file_path, file_name, file_size, \
     mime_type, content_hash, uri, status, error_message, error_category, retry_count, \
     chunk_count, meta, last_seen_at, is_stale, created_at, updated_at";

/// How the bulk calls write their new rows. Both were measured on 10,000 rows (the
/// ignored test `bulk_measure::bulk_strategies`); the faster one is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BulkStrategy {
    /// `COPY … FROM STDIN (FORMAT binary)`: documents go into a temporary staging
    /// table, then one `INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING`; chunks
    /// (checked beforehand, so no conflict is expected) straight into `chunks`.
    Copy,
    /// Multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING`, in slices under the
    /// bind-parameter limit. Kept for the measurement.
    #[cfg_attr(not(test), allow(dead_code))]
    MultiRowInsert,
}

/// The strategy of [`DocumentRepository::register_many`].
pub(crate) const REGISTER_STRATEGY: BulkStrategy = BulkStrategy::Copy;

/// The collection of a document, or `NotFound { entity: Entity::Document }`.
pub(crate) fn collection_of(conn: &mut PgConnection, id: DocumentId) -> RepoResult<CollectionId> {
    documents::table
        .find(id.0)
        .select(documents::collection_id)
        .first::<uuid::Uuid>(conn)
        .optional()
        .db()?
        .map(CollectionId)
        .ok_or_else(|| RepoError::not_found(Entity::Document, id))
}

/// How often `register` re-tries when the conflicting row vanished before it could
/// be read (deleted by another transaction in between).
const REGISTER_ATTEMPTS: usize = 3;

fn register(conn: &mut PgConnection, new: &NewDocument) -> RepoResult<Registered> {
    let doc = new.prepare()?;
    collection_repo::ensure_exists(conn, doc.collection_id)?;
    for _ in 0..REGISTER_ATTEMPTS {
        // Every unique index arbitrates (no conflict target): a racing inserter of the
        // same document makes this wait for its commit and then do nothing, on
        // whichever index (hash or URI) the two inserts meet first. With a target of
        // (collection_id, content_hash) only, meeting on the URI index first was a
        // unique violation, so the race surfaced as `AlreadyExists { uri }`.
        let inserted = diesel::insert_into(documents::table)
            .values(InsertDocument::from_domain(&doc)?)
            .on_conflict_do_nothing()
            .returning(DocumentRow::as_returning())
            .get_result(conn)
            .optional()
            .db()?;
        if let Some(row) = inserted {
            return Ok(Registered {
                document: row.into_domain()?,
                created: true,
            });
        }
        if let Some(row) = find_by_hash(conn, doc.collection_id, &doc.content_hash)? {
            return Ok(Registered {
                document: row.into_domain()?,
                created: false,
            });
        }
        // Not our hash: the URI belongs to another document.
        if let Some(uri) = doc.uri.as_deref() {
            if uri_is_taken(conn, doc.collection_id, uri)? {
                return Err(RepoError::AlreadyExists {
                    entity: Entity::Document,
                    field: Field::Uri,
                });
            }
        }
    }
    Err(RepoError::conflict(
        repo_core::ConflictReason::ConcurrentUpdate,
        "the document was deleted while it was being registered",
    ))
}

/// Reads into `stored` the documents of one collection with a hash or URI of the
/// batch (`content_hash = ANY($2) OR uri = ANY($3)`, two index scans).
fn read_stored(
    conn: &mut PgConnection,
    collection_id: CollectionId,
    hashes: &[&str],
    uris: &[&str],
    stored: &mut StoredDocuments,
) -> RepoResult<()> {
    let rows = documents::table
        .filter(documents::collection_id.eq(collection_id.0))
        .filter(
            documents::content_hash
                .eq_any(hashes)
                .or(documents::uri.eq_any(uris)),
        )
        .select(DocumentRow::as_select())
        .load(conn)
        .db()?;
    stored.extend(many(rows)?);
    Ok(())
}

/// Writes `rows` with `ON CONFLICT DO NOTHING` (every unique index arbitrates, so a
/// racing batch of the same documents is waited for and skipped whichever index the
/// two meet on first) and returns the rows actually inserted (in no particular
/// order).
///
/// Rows go in sorted by (collection, hash): concurrent batches with overlapping
/// hashes then wait on each other in one order instead of deadlocking.
pub(crate) fn insert_new(
    conn: &mut PgConnection,
    rows: &[&Document],
    strategy: BulkStrategy,
) -> RepoResult<Vec<DocumentRow>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    match strategy {
        BulkStrategy::Copy => insert_via_copy(conn, rows),
        BulkStrategy::MultiRowInsert => insert_multi_row(conn, rows),
    }
}

fn insert_via_copy(conn: &mut PgConnection, rows: &[&Document]) -> RepoResult<Vec<DocumentRow>> {
    // ON COMMIT DROP cleans up after a failure; the explicit DROP below lets a unit
    // of work register several batches in one transaction.
    diesel::sql_query(
        "CREATE TEMP TABLE documents_staging (LIKE documents INCLUDING DEFAULTS) ON COMMIT DROP",
    )
    .execute(conn)
    .db()?;
    let staged = InsertStagedDocument::from_domain_all(rows)?;
    diesel::copy_from(documents_staging::table)
        .from_insertable(&staged)
        .execute(conn)
        .db()?;
    let inserted: Vec<DocumentRow> = diesel::sql_query(format!(
        "INSERT INTO documents ({DOCUMENT_COLUMNS}) \
         SELECT {DOCUMENT_COLUMNS} FROM documents_staging \
         ORDER BY collection_id, content_hash \
         ON CONFLICT DO NOTHING \
         RETURNING {DOCUMENT_COLUMNS}"
    ))
    .load(conn)
    .db()?;
    diesel::sql_query("DROP TABLE documents_staging")
        .execute(conn)
        .db()?;
    Ok(inserted)
}

fn insert_multi_row(conn: &mut PgConnection, rows: &[&Document]) -> RepoResult<Vec<DocumentRow>> {
    const COLUMNS: usize = 18;
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| {
        (a.collection_id, &a.content_hash).cmp(&(b.collection_id, &b.content_hash))
    });
    let mut inserted = Vec::with_capacity(rows.len());
    for slice in rows.chunks(PG_MAX_BINDS / COLUMNS) {
        let values = InsertDocument::from_domain_all(slice)?;
        let mut out = diesel::insert_into(documents::table)
            .values(&values)
            .on_conflict_do_nothing()
            .returning(DocumentRow::as_returning())
            .get_results(conn)
            .db()?;
        inserted.append(&mut out);
    }
    Ok(inserted)
}

/// `register_many` with a chosen write strategy; rows another transaction inserted
/// between the read and the insert are read back.
pub(crate) fn register_many_with(
    conn: &mut PgConnection,
    batch: &[NewDocument],
    strategy: BulkStrategy,
) -> RepoResult<Vec<Registered>> {
    register_batch(
        conn,
        batch,
        collection_repo::ensure_exists,
        read_stored,
        |c, to_insert| {
            Ok(many(insert_new(c, to_insert, strategy)?)?
                .into_iter()
                .collect())
        },
        uri_is_taken,
    )
}

fn register_many(conn: &mut PgConnection, batch: &[NewDocument]) -> RepoResult<Vec<Registered>> {
    register_many_with(conn, batch, REGISTER_STRATEGY)
}

/// `meta @> $1` (GIN `documents_meta_idx`): every leaf of the filter equal at the
/// same path, numbers compared numerically (jsonb numeric: 1 = 1.0), and a nested
/// `{}` matching any object, as `repo_core::document::meta_filter` states.
fn meta_query(
    collection_id: CollectionId,
    filter: &Value,
) -> RepoResult<documents::BoxedQuery<'_, Pg>> {
    Ok(documents::table
        .filter(documents::collection_id.eq(collection_id.0))
        .filter(documents::meta.contains(filter))
        .into_boxed())
}

/// Documents over a [`ConnectionSource`].
pub(crate) struct PgDocuments<S> {
    pub(crate) src: S,
}

repo_diesel::document_repository!(
    impl<S: ConnectionSource> for PgDocuments<S>, source: src;
    register: write,
    register_many: write,
    get: read,
    get_by_hash: read,
    get_by_uri: read,
    list_by_collection: read,
    find_by_meta: read,
    update_status: run,
    update_status_many: run,
    reset_failed_for_retry: run,
    mark_seen: run,
    mark_unseen_stale: run,
    stats: read,
    delete: run,
);
