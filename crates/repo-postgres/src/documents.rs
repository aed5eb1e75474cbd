//! [`DocumentRepository`] on PostgreSQL: registration deduplicated by content hash,
//! bulk registration through `COPY`, listings and state changes.

use crate::collections as collection_repo;
use crate::connection::{parse_column, ConnectionSource, QueryResultExt};
use crate::schema::{documents, documents_staging};
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use repo_core::document::{meta_filter, prepare_batch};
use repo_core::{
    now, validate, CollectionId, Document, DocumentFilter, DocumentId, DocumentRepository,
    DocumentStats, DocumentStatus, DocumentStatusUpdate, Entity, Field, NewDocument, Page,
    PageRequest, Registered, RepoError, RepoResult, Timestamp,
};
use serde_json::Value;
use std::collections::HashMap;

/// Most bind parameters one PostgreSQL statement accepts.
pub(crate) const PG_MAX_BINDS: usize = 65_535;

/// A `documents` row.
#[derive(Queryable, QueryableByName, Selectable)]
#[diesel(table_name = documents, check_for_backend(Pg))]
pub(crate) struct DocumentRow {
    id: uuid::Uuid,
    collection_id: uuid::Uuid,
    file_path: String,
    file_name: String,
    file_size: i64,
    mime_type: Option<String>,
    content_hash: String,
    uri: Option<String>,
    status: String,
    error_message: Option<String>,
    error_category: Option<String>,
    retry_count: i32,
    chunk_count: i32,
    meta: Value,
    last_seen_at: Option<Timestamp>,
    is_stale: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl DocumentRow {
    pub(crate) fn into_domain(self) -> RepoResult<Document> {
        Ok(Document {
            id: DocumentId(self.id),
            collection_id: CollectionId(self.collection_id),
            file_path: self.file_path,
            file_name: self.file_name,
            file_size: self.file_size,
            mime_type: self.mime_type,
            content_hash: self.content_hash,
            uri: self.uri,
            status: parse_column("status", &self.status)?,
            error_message: self.error_message,
            error_category: self
                .error_category
                .as_deref()
                .map(|c| parse_column("error_category", c))
                .transpose()?,
            retry_count: self.retry_count,
            chunk_count: self.chunk_count,
            meta: self.meta,
            last_seen_at: self.last_seen_at,
            is_stale: self.is_stale,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Defines a borrowed insert shape of a documents-like table. `None` is written as
/// NULL, never as DEFAULT: `COPY … FROM STDIN (FORMAT binary)` needs every column.
macro_rules! document_insert {
    ($(#[$meta:meta])* $name:ident, $table:ident) => {
        $(#[$meta])*
        #[derive(Insertable)]
        #[diesel(table_name = $table, treat_none_as_default_value = false)]
        pub(crate) struct $name<'a> {
            id: uuid::Uuid,
            collection_id: uuid::Uuid,
            file_path: &'a str,
            file_name: &'a str,
            file_size: i64,
            mime_type: Option<&'a str>,
            content_hash: &'a str,
            uri: Option<&'a str>,
            status: &'a str,
            error_message: Option<&'a str>,
            error_category: Option<&'a str>,
            retry_count: i32,
            chunk_count: i32,
            meta: &'a Value,
            last_seen_at: Option<Timestamp>,
            is_stale: bool,
            created_at: Timestamp,
            updated_at: Timestamp,
        }

        impl<'a> From<&'a Document> for $name<'a> {
            fn from(d: &'a Document) -> Self {
                Self {
                    id: d.id.0,
                    collection_id: d.collection_id.0,
                    file_path: &d.file_path,
                    file_name: &d.file_name,
                    file_size: d.file_size,
                    mime_type: d.mime_type.as_deref(),
                    content_hash: &d.content_hash,
                    uri: d.uri.as_deref(),
                    status: d.status.as_str(),
                    error_message: d.error_message.as_deref(),
                    error_category: d.error_category.map(|c| c.as_str()),
                    retry_count: d.retry_count,
                    chunk_count: d.chunk_count,
                    meta: &d.meta,
                    last_seen_at: d.last_seen_at,
                    is_stale: d.is_stale,
                    created_at: d.created_at,
                    updated_at: d.updated_at,
                }
            }
        }
    };
}

document_insert!(
    /// A row for `documents`.
    InsertDocument,
    documents
);
document_insert!(
    /// A row for the temporary `documents_staging` table of bulk registration.
    StageDocument,
    documents_staging
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

fn one(row: Option<DocumentRow>, key: impl std::fmt::Display) -> RepoResult<Document> {
    row.ok_or_else(|| RepoError::not_found(Entity::Document, key))?
        .into_domain()
}

fn many(rows: Vec<DocumentRow>) -> RepoResult<Vec<Document>> {
    rows.into_iter().map(DocumentRow::into_domain).collect()
}

/// The document, or `NotFound { entity: Entity::Document }`.
pub(crate) fn get(conn: &mut PgConnection, id: DocumentId) -> RepoResult<Document> {
    let row = documents::table
        .find(id.0)
        .select(DocumentRow::as_select())
        .first(conn)
        .optional()
        .db()?;
    one(row, id)
}

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

fn find_by_hash(
    conn: &mut PgConnection,
    collection_id: CollectionId,
    content_hash: &str,
) -> RepoResult<Option<DocumentRow>> {
    documents::table
        .filter(documents::collection_id.eq(collection_id.0))
        .filter(documents::content_hash.eq(content_hash))
        .select(DocumentRow::as_select())
        .first(conn)
        .optional()
        .db()
}

/// How often `register` re-tries when the conflicting row vanished before it could
/// be read (deleted by another transaction in between).
const REGISTER_ATTEMPTS: usize = 3;

fn register(conn: &mut PgConnection, new: &NewDocument) -> RepoResult<Registered> {
    let doc = new.prepare()?;
    collection_repo::require(conn, doc.collection_id)?;
    for _ in 0..REGISTER_ATTEMPTS {
        // Every unique index arbitrates (no conflict target): a racing inserter of the
        // same document makes this wait for its commit and then do nothing, on
        // whichever index (hash or URI) the two inserts meet first. With a target of
        // (collection_id, content_hash) only, meeting on the URI index first was a
        // unique violation, so the race surfaced as `AlreadyExists { uri }`.
        let inserted = diesel::insert_into(documents::table)
            .values(InsertDocument::from(&doc))
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

/// Whether a document of the collection has this URI.
fn uri_is_taken(
    conn: &mut PgConnection,
    collection_id: CollectionId,
    uri: &str,
) -> RepoResult<bool> {
    diesel::select(diesel::dsl::exists(
        documents::table
            .filter(documents::collection_id.eq(collection_id.0))
            .filter(documents::uri.eq(uri)),
    ))
    .get_result(conn)
    .db()
}

/// A (collection, content hash) or (collection, uri) key.
type Key<'a> = (uuid::Uuid, &'a str);

/// Stored rows relevant to a batch: by hash (the documents that already exist) and
/// the hash behind every URI the batch uses.
#[derive(Default)]
struct Stored {
    by_hash: HashMap<(uuid::Uuid, String), Document>,
    hash_of_uri: HashMap<(uuid::Uuid, String), String>,
}

/// One read per collection of the batch: the stored documents with a hash or URI of
/// the batch (`content_hash = ANY($2) OR uri = ANY($3)`, two index scans).
fn read_stored(
    conn: &mut PgConnection,
    collections: &HashMap<uuid::Uuid, (Vec<&str>, Vec<&str>)>,
) -> RepoResult<Stored> {
    let mut stored = Stored::default();
    for (collection_id, (hashes, uris)) in collections {
        let rows = documents::table
            .filter(documents::collection_id.eq(collection_id))
            .filter(
                documents::content_hash
                    .eq_any(hashes)
                    .or(documents::uri.eq_any(uris)),
            )
            .select(DocumentRow::as_select())
            .load(conn)
            .db()?;
        for row in rows {
            let doc = row.into_domain()?;
            if let Some(uri) = &doc.uri {
                stored
                    .hash_of_uri
                    .insert((*collection_id, uri.clone()), doc.content_hash.clone());
            }
            stored
                .by_hash
                .insert((*collection_id, doc.content_hash.clone()), doc);
        }
    }
    Ok(stored)
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
    let staged: Vec<StageDocument<'_>> = rows.iter().map(|d| StageDocument::from(*d)).collect();
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
        let values: Vec<InsertDocument<'_>> =
            slice.iter().map(|d| InsertDocument::from(*d)).collect();
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

/// `register_many` with a chosen write strategy.
pub(crate) fn register_many_with(
    conn: &mut PgConnection,
    batch: &[NewDocument],
    strategy: BulkStrategy,
) -> RepoResult<Vec<Registered>> {
    let prepared = prepare_batch(batch)?;
    if prepared.is_empty() {
        return Ok(Vec::new());
    }
    // The hashes and URIs of the batch, per collection; collections in the order of
    // their first item, so a missing one is reported at its first item.
    let mut per_collection: HashMap<uuid::Uuid, (Vec<&str>, Vec<&str>)> = HashMap::new();
    let mut first_items: Vec<(uuid::Uuid, usize)> = Vec::new();
    for (i, d) in prepared.iter().enumerate() {
        let (hashes, uris) = per_collection.entry(d.collection_id.0).or_insert_with(|| {
            first_items.push((d.collection_id.0, i));
            Default::default()
        });
        hashes.push(&d.content_hash);
        if let Some(uri) = &d.uri {
            uris.push(uri);
        }
    }
    for (id, i) in first_items {
        collection_repo::require(conn, CollectionId(id)).map_err(|e| e.for_item(i))?;
    }
    let stored = read_stored(conn, &per_collection)?;

    // Every rule is checked before anything is written, in input order, so the error
    // names the first offending item. A hash already stored, or repeated from an
    // earlier item, returns that document unchanged: its other values, the URI
    // included, play no part. Each other item is new, and its URI must be neither
    // stored for another hash nor carried by an earlier new item.
    let mut first_of_hash: HashMap<Key<'_>, usize> = HashMap::with_capacity(prepared.len());
    let mut first_of_uri: HashMap<Key<'_>, usize> = HashMap::new();
    let mut to_insert: Vec<&Document> = Vec::with_capacity(prepared.len());
    for (i, d) in prepared.iter().enumerate() {
        let c = d.collection_id.0;
        if stored.by_hash.contains_key(&(c, d.content_hash.clone()))
            || first_of_hash.contains_key(&(c, d.content_hash.as_str()))
        {
            continue;
        }
        if let Some(uri) = d.uri.as_deref() {
            if stored
                .hash_of_uri
                .get(&(c, uri.to_owned()))
                .is_some_and(|h| *h != d.content_hash)
            {
                return Err(RepoError::validation(
                    Field::Uri,
                    "is already used by another document of the collection",
                )
                .for_item(i));
            }
            if let Some(other) = first_of_uri.insert((c, uri), i) {
                return Err(RepoError::validation(
                    Field::Uri,
                    format!("is also used by item {other}, which has another content hash"),
                )
                .for_item(i));
            }
        }
        first_of_hash.insert((c, &d.content_hash), i);
        to_insert.push(d);
    }

    let inserted = insert_new(conn, &to_insert, strategy)?;
    let mut created: HashMap<(uuid::Uuid, String), Document> =
        HashMap::with_capacity(inserted.len());
    for row in inserted {
        let doc = row.into_domain()?;
        created.insert((doc.collection_id.0, doc.content_hash.clone()), doc);
    }
    // Rows another transaction inserted between our read and our insert: read back.
    let mut raced: HashMap<uuid::Uuid, Vec<&str>> = HashMap::new();
    for d in &to_insert {
        if !created.contains_key(&(d.collection_id.0, d.content_hash.clone())) {
            raced
                .entry(d.collection_id.0)
                .or_default()
                .push(&d.content_hash);
        }
    }
    let mut existing = stored.by_hash;
    for (collection_id, hashes) in raced {
        let rows = documents::table
            .filter(documents::collection_id.eq(collection_id))
            .filter(documents::content_hash.eq_any(&hashes))
            .select(DocumentRow::as_select())
            .load(conn)
            .db()?;
        for row in rows {
            let doc = row.into_domain()?;
            existing.insert((collection_id, doc.content_hash.clone()), doc);
        }
    }

    let mut out = Vec::with_capacity(prepared.len());
    for (i, d) in prepared.iter().enumerate() {
        let key = (d.collection_id.0, d.content_hash.clone());
        let is_first = first_of_hash.get(&(key.0, key.1.as_str())) == Some(&i);
        let registered = match (created.get(&key), existing.get(&key)) {
            (Some(doc), _) => Registered {
                document: doc.clone(),
                created: is_first,
            },
            (None, Some(doc)) => Registered {
                document: doc.clone(),
                created: false,
            },
            (None, None) => {
                let uri_taken = match d.uri.as_deref() {
                    Some(uri) => uri_is_taken(conn, d.collection_id, uri)?,
                    None => false,
                };
                return Err(if uri_taken {
                    // Another transaction stored another hash with this URI meanwhile:
                    // what the check above reports when that row came first.
                    RepoError::validation(
                        Field::Uri,
                        "is already used by another document of the collection",
                    )
                    .for_item(i)
                } else {
                    RepoError::conflict(
                        repo_core::ConflictReason::ConcurrentUpdate,
                        format!("item {i}: the document was deleted while it was being registered"),
                    )
                });
            }
        };
        out.push(registered);
    }
    Ok(out)
}

fn get_by_hash(
    conn: &mut PgConnection,
    collection_id: CollectionId,
    content_hash: &str,
) -> RepoResult<Document> {
    validate::text(Field::ContentHash, content_hash)?;
    let row = find_by_hash(conn, collection_id, content_hash)?;
    one(row, content_hash)
}

fn get_by_uri(
    conn: &mut PgConnection,
    collection_id: CollectionId,
    uri: &str,
) -> RepoResult<Document> {
    validate::text(Field::Uri, uri)?;
    let row = documents::table
        .filter(documents::collection_id.eq(collection_id.0))
        .filter(documents::uri.eq(uri))
        .select(DocumentRow::as_select())
        .first(conn)
        .optional()
        .db()?;
    one(row, uri)
}

fn filtered(
    collection_id: CollectionId,
    filter: &DocumentFilter,
) -> documents::BoxedQuery<'static, Pg> {
    let mut q = documents::table
        .filter(documents::collection_id.eq(collection_id.0))
        .into_boxed();
    if !filter.statuses.is_empty() {
        let statuses: Vec<&'static str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        q = q.filter(documents::status.eq_any(statuses));
    }
    if let Some(stale) = filter.is_stale {
        q = q.filter(documents::is_stale.eq(stale));
    }
    q
}

/// The documents listing, failed first, then newest: two parts read in order from
/// their indexes (`documents_collection_status_idx` for the failed documents,
/// `documents_collection_created_at_idx` for the others), so a page reads its own
/// rows instead of sorting the collection.
fn list_by_collection(
    conn: &mut PgConnection,
    collection_id: CollectionId,
    filter: &DocumentFilter,
    page: PageRequest,
) -> RepoResult<Page<Document>> {
    let failed = DocumentStatus::Failed.as_str();
    let part = |is_failed: bool| {
        let query = filtered(collection_id, filter);
        if is_failed {
            query.filter(documents::status.eq(failed))
        } else {
            query.filter(documents::status.ne(failed))
        }
    };
    let failed_total: i64 = part(true).count().get_result(conn).db()?;
    let others_total: i64 = part(false).count().get_result(conn).db()?;
    let failed_total = u64::try_from(failed_total).unwrap_or(0);
    let (first, second) = page.split(failed_total);
    let mut rows = Vec::new();
    for (is_failed, slice) in [(true, first), (false, second)] {
        let Some(slice) = slice else { continue };
        rows.extend(
            part(is_failed)
                .select(DocumentRow::as_select())
                .order((documents::created_at.desc(), documents::id.desc()))
                .limit(slice.limit_i64())
                .offset(slice.offset_i64())
                .load(conn)
                .db()?,
        );
    }
    Ok(Page {
        items: many(rows)?,
        total: failed_total + u64::try_from(others_total).unwrap_or(0),
    })
}

fn find_by_meta(
    conn: &mut PgConnection,
    collection_id: CollectionId,
    filter: &Value,
    page: PageRequest,
) -> RepoResult<Page<Document>> {
    meta_filter(filter)?;
    // `meta @> $1` (GIN `documents_meta_idx`): every leaf of the filter equal at the
    // same path, numbers compared numerically (jsonb numeric: 1 = 1.0), and a nested
    // `{}` matching any object, as `repo_core::document::meta_filter` states.
    let matching = || {
        documents::table
            .filter(documents::collection_id.eq(collection_id.0))
            .filter(documents::meta.contains(filter))
    };
    let rows = matching()
        .select(DocumentRow::as_select())
        .order((documents::created_at.desc(), documents::id.desc()))
        .limit(page.limit_i64())
        .offset(page.offset_i64())
        .load(conn)
        .db()?;
    let total: i64 = matching().count().get_result(conn).db()?;
    Ok(Page {
        items: many(rows)?,
        total: u64::try_from(total).unwrap_or(0),
    })
}

/// The columns a state change writes: `None` leaves `chunk_count` as it is, while
/// the error columns are always written (cleared by `None`).
#[derive(AsChangeset)]
#[diesel(table_name = documents)]
struct StatusChanges<'a> {
    status: &'a str,
    error_message: Option<Option<&'a str>>,
    error_category: Option<Option<&'a str>>,
    chunk_count: Option<i32>,
    updated_at: Timestamp,
}

impl<'a> StatusChanges<'a> {
    fn of(update: &'a DocumentStatusUpdate) -> RepoResult<Self> {
        update.validate()?;
        Ok(Self {
            status: update.status.as_str(),
            error_message: Some(update.error_message.as_deref()),
            error_category: Some(update.error_category.map(|c| c.as_str())),
            chunk_count: update.chunk_count,
            updated_at: now(),
        })
    }
}

fn update_status(
    conn: &mut PgConnection,
    id: DocumentId,
    update: &DocumentStatusUpdate,
) -> RepoResult<Document> {
    let changes = StatusChanges::of(update)?;
    let row = diesel::update(documents::table.find(id.0))
        .set(changes)
        .returning(DocumentRow::as_returning())
        .get_result(conn)
        .optional()
        .db()?;
    one(row, id)
}

fn update_status_many(
    conn: &mut PgConnection,
    ids: &[DocumentId],
    update: &DocumentStatusUpdate,
) -> RepoResult<u64> {
    let changes = StatusChanges::of(update)?;
    if ids.is_empty() {
        return Ok(0);
    }
    let ids: Vec<uuid::Uuid> = ids.iter().map(|d| d.0).collect();
    // `id = ANY($1)`: one array parameter, whatever the number of ids.
    let n = diesel::update(documents::table.filter(documents::id.eq_any(ids)))
        .set(changes)
        .execute(conn)
        .db()?;
    Ok(n as u64)
}

fn reset_failed_for_retry(conn: &mut PgConnection, collection_id: CollectionId) -> RepoResult<u64> {
    let n = diesel::update(
        documents::table
            .filter(documents::collection_id.eq(collection_id.0))
            .filter(documents::status.eq(DocumentStatus::Failed.as_str())),
    )
    .set((
        documents::status.eq(DocumentStatus::Pending.as_str()),
        documents::retry_count.eq(documents::retry_count + 1),
        documents::error_message.eq(None::<String>),
        documents::error_category.eq(None::<String>),
        documents::updated_at.eq(now()),
    ))
    .execute(conn)
    .db()?;
    Ok(n as u64)
}

fn mark_seen(conn: &mut PgConnection, ids: &[DocumentId], at: Timestamp) -> RepoResult<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let ids: Vec<uuid::Uuid> = ids.iter().map(|d| d.0).collect();
    let n = diesel::update(documents::table.filter(documents::id.eq_any(ids)))
        .set((
            documents::last_seen_at.eq(repo_core::time::truncate_micros(at)),
            documents::is_stale.eq(false),
        ))
        .execute(conn)
        .db()?;
    Ok(n as u64)
}

fn mark_unseen_stale(
    conn: &mut PgConnection,
    collection_id: CollectionId,
    seen_before: Timestamp,
) -> RepoResult<u64> {
    let before = repo_core::time::truncate_micros(seen_before);
    let n = diesel::update(
        documents::table
            .filter(documents::collection_id.eq(collection_id.0))
            .filter(documents::is_stale.eq(false))
            .filter(
                documents::last_seen_at
                    .is_null()
                    .or(documents::last_seen_at.lt(before)),
            ),
    )
    .set(documents::is_stale.eq(true))
    .execute(conn)
    .db()?;
    Ok(n as u64)
}

#[derive(QueryableByName)]
struct StatusCount {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    documents: i64,
    #[diesel(sql_type = BigInt)]
    bytes: i64,
    #[diesel(sql_type = BigInt)]
    chunks: i64,
}

fn stats(conn: &mut PgConnection, collection_id: CollectionId) -> RepoResult<DocumentStats> {
    collection_repo::require(conn, collection_id)?;
    let rows: Vec<StatusCount> = diesel::sql_query(
        "SELECT status, count(*)::bigint AS documents, \
                coalesce(sum(file_size), 0)::bigint AS bytes, \
                coalesce(sum(chunk_count), 0)::bigint AS chunks \
         FROM documents WHERE collection_id = $1 GROUP BY status",
    )
    .bind::<diesel::sql_types::Uuid, _>(collection_id.0)
    .load(conn)
    .db()?;
    let mut stats = DocumentStats::default();
    for r in rows {
        let count = u64::try_from(r.documents).unwrap_or(0);
        stats.total += count;
        stats.total_bytes += r.bytes;
        stats.total_chunks += r.chunks;
        stats.by_status.insert(r.status, count);
    }
    Ok(stats)
}

fn delete(conn: &mut PgConnection, id: DocumentId) -> RepoResult<()> {
    // Its chunks go by the (collection_id, document_id) foreign-key cascade.
    let n = diesel::delete(documents::table.find(id.0))
        .execute(conn)
        .db()?;
    if n == 0 {
        return Err(RepoError::not_found(Entity::Document, id));
    }
    Ok(())
}

/// Documents over a [`ConnectionSource`].
pub(crate) struct PgDocuments<S> {
    pub(crate) src: S,
}

impl<S: ConnectionSource> DocumentRepository for PgDocuments<S> {
    fn register(&self, new: &NewDocument) -> RepoResult<Registered> {
        self.src.write(|c| register(c, new))
    }

    fn register_many(&self, batch: &[NewDocument]) -> RepoResult<Vec<Registered>> {
        self.src
            .write(|c| register_many_with(c, batch, REGISTER_STRATEGY))
    }

    fn get(&self, id: DocumentId) -> RepoResult<Document> {
        self.src.read(|c| get(c, id))
    }

    fn get_by_hash(&self, collection_id: CollectionId, content_hash: &str) -> RepoResult<Document> {
        self.src
            .read(|c| get_by_hash(c, collection_id, content_hash))
    }

    fn get_by_uri(&self, collection_id: CollectionId, uri: &str) -> RepoResult<Document> {
        self.src.read(|c| get_by_uri(c, collection_id, uri))
    }

    fn list_by_collection(
        &self,
        collection_id: CollectionId,
        filter: &DocumentFilter,
        page: PageRequest,
    ) -> RepoResult<Page<Document>> {
        self.src
            .read(|c| list_by_collection(c, collection_id, filter, page))
    }

    fn find_by_meta(
        &self,
        collection_id: CollectionId,
        filter: &Value,
        page: PageRequest,
    ) -> RepoResult<Page<Document>> {
        self.src
            .read(|c| find_by_meta(c, collection_id, filter, page))
    }

    fn update_status(&self, id: DocumentId, update: &DocumentStatusUpdate) -> RepoResult<Document> {
        self.src.run(|c| update_status(c, id, update))
    }

    fn update_status_many(
        &self,
        ids: &[DocumentId],
        update: &DocumentStatusUpdate,
    ) -> RepoResult<u64> {
        self.src.run(|c| update_status_many(c, ids, update))
    }

    fn reset_failed_for_retry(&self, collection_id: CollectionId) -> RepoResult<u64> {
        self.src.run(|c| reset_failed_for_retry(c, collection_id))
    }

    fn mark_seen(&self, ids: &[DocumentId], at: Timestamp) -> RepoResult<u64> {
        self.src.run(|c| mark_seen(c, ids, at))
    }

    fn mark_unseen_stale(
        &self,
        collection_id: CollectionId,
        seen_before: Timestamp,
    ) -> RepoResult<u64> {
        self.src
            .run(|c| mark_unseen_stale(c, collection_id, seen_before))
    }

    fn stats(&self, collection_id: CollectionId) -> RepoResult<DocumentStats> {
        self.src.read(|c| stats(c, collection_id))
    }

    fn delete(&self, id: DocumentId) -> RepoResult<()> {
        self.src.run(|c| delete(c, id))
    }
}
