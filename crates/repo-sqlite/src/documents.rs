//! Documents: registration deduplicated by content hash (one or thousands per call),
//! processing state, sync bookkeeping and metadata filters.

use crate::bulk::{in_list_len, rows_per_statement};
use crate::codec::{
    affected, count, json, read_enum, read_json, read_opt_ts, read_ts, read_uuid, ts, uuid,
};
use crate::collections;
use crate::connection::{read_tx, write_tx, ConnectionSource, SqliteDocuments};
use crate::error::map_diesel_error;
use crate::schema::documents;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Text};
use diesel::sqlite::Sqlite;
use repo_core::document::{meta_filter, prepare_batch};
use repo_core::{
    now, validate, CollectionId, Document, DocumentFilter, DocumentId, DocumentRepository,
    DocumentStats, DocumentStatus, DocumentStatusUpdate, Entity, Field, NewDocument, Page,
    PageRequest, Registered, RepoError, RepoResult, Timestamp,
};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

/// A `documents` row as stored.
#[derive(Queryable, Selectable)]
#[diesel(table_name = documents, check_for_backend(Sqlite))]
pub(crate) struct DocumentRow {
    id: String,
    collection_id: String,
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
    meta: String,
    last_seen_at: Option<String>,
    is_stale: bool,
    created_at: String,
    updated_at: String,
}

impl DocumentRow {
    pub(crate) fn into_domain(self) -> RepoResult<Document> {
        const T: &str = "documents";
        Ok(Document {
            id: DocumentId(read_uuid(T, "id", &self.id)?),
            collection_id: CollectionId(read_uuid(T, "collection_id", &self.collection_id)?),
            file_path: self.file_path,
            file_name: self.file_name,
            file_size: self.file_size,
            mime_type: self.mime_type,
            content_hash: self.content_hash,
            uri: self.uri,
            status: read_enum(T, "status", &self.status)?,
            error_message: self.error_message,
            error_category: self
                .error_category
                .as_deref()
                .map(|c| read_enum(T, "error_category", c))
                .transpose()?,
            retry_count: self.retry_count,
            chunk_count: self.chunk_count,
            meta: read_json(T, "meta", &self.meta)?,
            last_seen_at: read_opt_ts(T, "last_seen_at", self.last_seen_at.as_deref())?,
            is_stale: self.is_stale,
            created_at: read_ts(T, "created_at", &self.created_at)?,
            updated_at: read_ts(T, "updated_at", &self.updated_at)?,
        })
    }
}

/// Bound columns of [`InsertDocument`], for sizing multi-row inserts.
const INSERT_COLUMNS: usize = 18;

/// A document to insert. Every column is bound (`treat_none_as_default_value = false`),
/// so a slice of rows becomes one multi-row `INSERT` instead of one per row.
#[derive(Insertable)]
#[diesel(table_name = documents, treat_none_as_default_value = false)]
struct InsertDocument<'a> {
    id: String,
    collection_id: &'a str,
    file_path: &'a str,
    file_name: &'a str,
    file_size: i64,
    mime_type: Option<&'a str>,
    content_hash: &'a str,
    uri: Option<&'a str>,
    status: &'static str,
    error_message: Option<&'a str>,
    error_category: Option<&'static str>,
    retry_count: i32,
    chunk_count: i32,
    meta: String,
    last_seen_at: Option<String>,
    is_stale: bool,
    created_at: String,
    updated_at: String,
}

impl<'a> InsertDocument<'a> {
    /// The row of `d`; `collection_id` is the stored form of `d.collection_id`.
    fn new(d: &'a Document, collection_id: &'a str) -> RepoResult<Self> {
        // A prepared document carries one instant three times: format it once.
        let created_at = ts(d.created_at);
        let same = |t: Timestamp| {
            if t == d.created_at {
                created_at.clone()
            } else {
                ts(t)
            }
        };
        Ok(Self {
            id: uuid(d.id.0),
            collection_id,
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
            meta: json(&d.meta)?,
            last_seen_at: d.last_seen_at.map(same),
            is_stale: d.is_stale,
            updated_at: same(d.updated_at),
            created_at,
        })
    }
}

/// The columns a status change sets; `error_message` and `error_category` are always
/// written (`Some(None)` clears them), `chunk_count` only when given.
#[derive(AsChangeset)]
#[diesel(table_name = documents)]
struct StatusChanges<'a> {
    status: &'static str,
    error_message: Option<Option<&'a str>>,
    error_category: Option<Option<&'static str>>,
    chunk_count: Option<i32>,
    updated_at: String,
}

impl<'a> StatusChanges<'a> {
    /// Bind parameters of the `SET` clause at most.
    const BINDS: usize = 5;

    fn new(update: &'a DocumentStatusUpdate) -> RepoResult<Self> {
        update.validate()?;
        Ok(Self {
            status: update.status.as_str(),
            error_message: Some(update.error_message.as_deref()),
            error_category: Some(update.error_category.map(|c| c.as_str())),
            chunk_count: update.chunk_count,
            updated_at: ts(now()),
        })
    }
}

fn not_found(id: DocumentId) -> RepoError {
    RepoError::not_found(Entity::Document, id)
}

fn one(row: Option<DocumentRow>, id: DocumentId) -> RepoResult<Document> {
    row.ok_or_else(|| not_found(id))?.into_domain()
}

fn many(rows: Vec<DocumentRow>) -> RepoResult<Vec<Document>> {
    rows.into_iter().map(DocumentRow::into_domain).collect()
}

/// The distinct values of `items`, in order of first appearance.
fn distinct<T: Copy + Eq + Hash>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = HashSet::new();
    items.filter(|v| seen.insert(*v)).collect()
}

/// The document with this id, or `NotFound { entity: Entity::Document }`.
pub(crate) fn get(conn: &mut SqliteConnection, id: DocumentId) -> RepoResult<Document> {
    let row = documents::table
        .find(uuid(id.0))
        .select(DocumentRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?;
    one(row, id)
}

/// `NotFound { entity: Entity::Document }` unless the document exists.
pub(crate) fn ensure_exists(conn: &mut SqliteConnection, id: DocumentId) -> RepoResult<()> {
    let exists: bool = diesel::select(diesel::dsl::exists(documents::table.find(uuid(id.0))))
        .get_result(conn)
        .map_err(map_diesel_error)?;
    if exists {
        Ok(())
    } else {
        Err(not_found(id))
    }
}

fn get_by_hash(
    conn: &mut SqliteConnection,
    collection_id: CollectionId,
    content_hash: &str,
) -> RepoResult<Document> {
    validate::text(Field::ContentHash, content_hash)?;
    documents::table
        .filter(documents::collection_id.eq(uuid(collection_id.0)))
        .filter(documents::content_hash.eq(content_hash))
        .select(DocumentRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?
        .ok_or_else(|| RepoError::not_found(Entity::Document, content_hash))?
        .into_domain()
}

fn get_by_uri(
    conn: &mut SqliteConnection,
    collection_id: CollectionId,
    uri: &str,
) -> RepoResult<Document> {
    validate::text(Field::Uri, uri)?;
    documents::table
        .filter(documents::collection_id.eq(uuid(collection_id.0)))
        .filter(documents::uri.eq(uri))
        .select(DocumentRow::as_select())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?
        .ok_or_else(|| RepoError::not_found(Entity::Document, uri))?
        .into_domain()
}

fn register(conn: &mut SqliteConnection, new: &NewDocument) -> RepoResult<Registered> {
    let doc = new.prepare()?;
    let collection_key = uuid(doc.collection_id.0);
    let row = InsertDocument::new(&doc, &collection_key)?;
    write_tx(conn, |c| {
        collections::ensure_exists(c, doc.collection_id)?;
        // SQLite checks the conflict target first: an existing hash is DO NOTHING even
        // when the URI is taken too; a URI taken by another hash fails on
        // `documents_collection_uri_key` → AlreadyExists { document, uri }.
        let inserted = diesel::insert_into(documents::table)
            .values(&row)
            .on_conflict((documents::collection_id, documents::content_hash))
            .do_nothing()
            .returning(DocumentRow::as_returning())
            .get_result(c)
            .optional()
            .map_err(map_diesel_error)?;
        match inserted {
            Some(row) => Ok(Registered {
                document: row.into_domain()?,
                created: true,
            }),
            None => Ok(Registered {
                document: get_by_hash(c, doc.collection_id, &doc.content_hash)?,
                created: false,
            }),
        }
    })
}

/// What `register_many` does with one item.
enum Plan {
    /// The collection already holds the hash.
    Stored,
    /// First occurrence of a new hash: inserted.
    New,
    /// A later occurrence of the hash of item `n`.
    SameAs(usize),
}

/// Stored documents of one collection whose hash is in `hashes`, by hash.
fn stored_by_hash(
    conn: &mut SqliteConnection,
    collection_id: &str,
    hashes: &[&str],
) -> RepoResult<HashMap<String, Document>> {
    let mut out = HashMap::new();
    for part in hashes.chunks(in_list_len(1)) {
        let rows = documents::table
            .filter(documents::collection_id.eq(collection_id))
            .filter(documents::content_hash.eq_any(part))
            .select(DocumentRow::as_select())
            .load(conn)
            .map_err(map_diesel_error)?;
        for row in rows {
            let doc = row.into_domain()?;
            out.insert(doc.content_hash.clone(), doc);
        }
    }
    Ok(out)
}

/// Content hash of the stored document of one collection holding each URI of `uris`.
fn stored_uri_owners(
    conn: &mut SqliteConnection,
    collection_id: &str,
    uris: &[&str],
) -> RepoResult<HashMap<String, String>> {
    let mut out = HashMap::new();
    for part in uris.chunks(in_list_len(1)) {
        let rows: Vec<(Option<String>, String)> = documents::table
            .filter(documents::collection_id.eq(collection_id))
            .filter(documents::uri.eq_any(part))
            .select((documents::uri, documents::content_hash))
            .load(conn)
            .map_err(map_diesel_error)?;
        out.extend(rows.into_iter().filter_map(|(u, h)| Some((u?, h))));
    }
    Ok(out)
}

fn register_many(
    conn: &mut SqliteConnection,
    batch: &[NewDocument],
) -> RepoResult<Vec<Registered>> {
    let docs = prepare_batch(batch)?;
    if docs.is_empty() {
        return Ok(Vec::new());
    }
    write_tx(conn, |c| {
        // Reads and checks first: nothing is written unless every item passes.
        let mut stored: HashMap<CollectionId, HashMap<String, Document>> = HashMap::new();
        let mut uri_owners: HashMap<CollectionId, HashMap<String, String>> = HashMap::new();
        let mut collection_keys: HashMap<CollectionId, String> = HashMap::new();
        for cid in distinct(docs.iter().map(|d| d.collection_id)) {
            if let Err(e) = collections::ensure_exists(c, cid) {
                // Name the first item of the missing collection, like every other
                // refusal of a batch.
                return Err(match docs.iter().position(|d| d.collection_id == cid) {
                    Some(i) => e.for_item(i),
                    None => e,
                });
            }
            let of_collection = || docs.iter().filter(move |d| d.collection_id == cid);
            let hashes = distinct(of_collection().map(|d| d.content_hash.as_str()));
            let uris = distinct(of_collection().filter_map(|d| d.uri.as_deref()));
            let key = uuid(cid.0);
            stored.insert(cid, stored_by_hash(c, &key, &hashes)?);
            uri_owners.insert(cid, stored_uri_owners(c, &key, &uris)?);
            collection_keys.insert(cid, key);
        }

        let mut plan = Vec::with_capacity(docs.len());
        let mut first_of_hash: HashMap<(CollectionId, &str), usize> = HashMap::new();
        let mut first_of_uri: HashMap<(CollectionId, &str), usize> = HashMap::new();
        for (i, d) in docs.iter().enumerate() {
            let cid = d.collection_id;
            let hash = d.content_hash.as_str();
            if stored.get(&cid).is_some_and(|m| m.contains_key(hash)) {
                plan.push(Plan::Stored);
                continue;
            }
            if let Some(&first) = first_of_hash.get(&(cid, hash)) {
                plan.push(Plan::SameAs(first));
                continue;
            }
            if let Some(uri) = d.uri.as_deref() {
                let owner = uri_owners.get(&cid).and_then(|m| m.get(uri));
                if owner.is_some_and(|h| h != hash) {
                    return Err(RepoError::validation(
                        Field::Uri,
                        "is already used by another document of the collection",
                    )
                    .for_item(i));
                }
                if let Some(other) = first_of_uri.insert((cid, uri), i) {
                    return Err(RepoError::validation(
                        Field::Uri,
                        format!("is also used by item {other}, which has another content hash"),
                    )
                    .for_item(i));
                }
            }
            first_of_hash.insert((cid, hash), i);
            plan.push(Plan::New);
        }

        let mut new_items = Vec::new();
        let mut rows = Vec::new();
        for (i, (d, p)) in docs.iter().zip(&plan).enumerate() {
            if matches!(p, Plan::New) {
                let key = collection_keys
                    .get(&d.collection_id)
                    .ok_or_else(|| RepoError::not_found(Entity::Collection, d.collection_id))?;
                rows.push(InsertDocument::new(d, key)?);
                new_items.push(i);
            }
        }
        let mut created: HashSet<String> = HashSet::with_capacity(rows.len());
        for part in rows.chunks(rows_per_statement(INSERT_COLUMNS)) {
            let ids: Vec<String> = diesel::insert_into(documents::table)
                .values(part)
                .on_conflict((documents::collection_id, documents::content_hash))
                .do_nothing()
                .returning(documents::id)
                .get_results(c)
                .map_err(map_diesel_error)?;
            created.extend(ids);
        }
        let mut inserted = vec![false; docs.len()];
        for (row, &i) in rows.iter().zip(&new_items) {
            inserted[i] = created.contains(&row.id);
        }
        drop(rows);

        let mut out: Vec<Registered> = Vec::with_capacity(docs.len());
        for ((d, p), inserted) in docs.into_iter().zip(plan).zip(inserted) {
            let registered = match p {
                Plan::Stored => Registered {
                    document: stored
                        .get(&d.collection_id)
                        .and_then(|m| m.get(&d.content_hash))
                        .cloned()
                        .ok_or_else(|| RepoError::not_found(Entity::Document, &d.content_hash))?,
                    created: false,
                },
                Plan::New if inserted => Registered {
                    document: d,
                    created: true,
                },
                // Not reachable while the write transaction excludes other writers;
                // kept so that a lost race still answers like `register`.
                Plan::New => Registered {
                    document: get_by_hash(c, d.collection_id, &d.content_hash)?,
                    created: false,
                },
                Plan::SameAs(first) => Registered {
                    document: out
                        .get(first)
                        .map(|r| r.document.clone())
                        .ok_or_else(|| RepoError::not_found(Entity::Document, &d.content_hash))?,
                    created: false,
                },
            };
            out.push(registered);
        }
        Ok(out)
    })
}

fn by_collection(
    collection_id: &str,
    filter: &DocumentFilter,
) -> documents::BoxedQuery<'static, Sqlite> {
    let mut query = documents::table
        .filter(documents::collection_id.eq(collection_id.to_owned()))
        .into_boxed();
    if !filter.statuses.is_empty() {
        let statuses: Vec<&'static str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        query = query.filter(documents::status.eq_any(statuses));
    }
    if let Some(stale) = filter.is_stale {
        query = query.filter(documents::is_stale.eq(stale));
    }
    query
}

/// The documents listing, failed first, then newest: two parts read in order from
/// their indexes (`documents_collection_status_idx` for the failed documents,
/// `documents_collection_created_at_idx` for the others), so a page reads its own
/// rows instead of sorting the collection.
fn list_by_collection(
    conn: &mut SqliteConnection,
    collection_id: CollectionId,
    filter: &DocumentFilter,
    page: PageRequest,
) -> RepoResult<Page<Document>> {
    let id = uuid(collection_id.0);
    let failed = DocumentStatus::Failed.as_str();
    let part = |is_failed: bool| {
        let query = by_collection(&id, filter);
        if is_failed {
            query.filter(documents::status.eq(failed))
        } else {
            query.filter(documents::status.ne(failed))
        }
    };
    read_tx(conn, |c| {
        let failed_total: i64 = part(true).count().get_result(c).map_err(map_diesel_error)?;
        let others_total: i64 = part(false)
            .count()
            .get_result(c)
            .map_err(map_diesel_error)?;
        let (first, second) = page.split(count(failed_total));
        let mut rows = Vec::new();
        for (is_failed, slice) in [(true, first), (false, second)] {
            let Some(slice) = slice else { continue };
            rows.extend(
                part(is_failed)
                    .select(DocumentRow::as_select())
                    .order((documents::created_at.desc(), documents::id.desc()))
                    .limit(slice.limit_i64())
                    .offset(slice.offset_i64())
                    .load(c)
                    .map_err(map_diesel_error)?,
            );
        }
        Ok(Page {
            items: many(rows)?,
            total: count(failed_total) + count(others_total),
        })
    })
}

/// One leaf of a metadata filter: the JSON path (`$."a"."b"`) and the value there.
struct MetaCondition {
    path: String,
    value: Value,
}

/// The leaves of a filter accepted by [`meta_filter`]; a nested empty object is a leaf
/// (it matches any object there).
fn meta_conditions(filter: &Value) -> Vec<MetaCondition> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<MetaCondition>) {
        match value {
            Value::Object(map) if !map.is_empty() || prefix == "$" => {
                for (key, v) in map {
                    // `meta_filter` refused keys holding `"` or `\`, so quoting is exact.
                    walk(&format!("{prefix}.\"{key}\""), v, out);
                }
            }
            leaf => out.push(MetaCondition {
                path: prefix.to_owned(),
                value: leaf.clone(),
            }),
        }
    }
    let mut out = Vec::new();
    walk("$", filter, &mut out);
    out
}

type DocumentPredicate = Box<dyn BoxableExpression<documents::table, Sqlite, SqlType = Bool>>;

/// The SQL test of one leaf. Only bound parameters vary: the path and the value.
/// `json_type` tells JSON `true`/`false`/`null`/objects apart and keeps a string from
/// equalling a number; numbers compare numerically (`1 = 1.0`).
fn meta_predicate(condition: MetaCondition) -> RepoResult<DocumentPredicate> {
    let MetaCondition { path, value } = condition;
    let type_is = |json_type: &'static str| -> DocumentPredicate {
        Box::new(
            sql::<Bool>("json_type(documents.meta, ")
                .bind::<Text, _>(path.clone())
                .sql(json_type),
        )
    };
    Ok(match value {
        Value::Null => type_is(") = 'null'"),
        Value::Bool(true) => type_is(") = 'true'"),
        Value::Bool(false) => type_is(") = 'false'"),
        Value::Object(_) => type_is(") = 'object'"),
        Value::String(s) => Box::new(
            sql::<Bool>("(json_type(documents.meta, ")
                .bind::<Text, _>(path.clone())
                .sql(") = 'text' AND json_extract(documents.meta, ")
                .bind::<Text, _>(path)
                .sql(") = ")
                .bind::<Text, _>(s)
                .sql(")"),
        ),
        Value::Number(n) => {
            let head = sql::<Bool>("(json_type(documents.meta, ")
                .bind::<Text, _>(path.clone())
                .sql(") IN ('integer', 'real') AND json_extract(documents.meta, ")
                .bind::<Text, _>(path)
                .sql(") = ");
            if let Some(i) = n.as_i64() {
                Box::new(head.bind::<BigInt, _>(i).sql(")"))
            } else if let Some(f) = n.as_f64() {
                Box::new(head.bind::<Double, _>(f).sql(")"))
            } else {
                return Err(RepoError::validation(
                    Field::Meta,
                    "unsupported number in filter",
                ));
            }
        }
        Value::Array(_) => {
            return Err(RepoError::validation(
                Field::Meta,
                "filters match objects and scalar values; arrays are not supported",
            ))
        }
    })
}

fn find_by_meta(
    conn: &mut SqliteConnection,
    collection_id: CollectionId,
    filter: &Value,
    page: PageRequest,
) -> RepoResult<Page<Document>> {
    meta_filter(filter)?;
    let id = uuid(collection_id.0);
    let base = || -> RepoResult<documents::BoxedQuery<'static, Sqlite>> {
        let mut query = documents::table
            .filter(documents::collection_id.eq(id.clone()))
            .into_boxed();
        for condition in meta_conditions(filter) {
            query = query.filter(meta_predicate(condition)?);
        }
        Ok(query)
    };
    read_tx(conn, |c| {
        let rows = base()?
            .select(DocumentRow::as_select())
            .order((documents::created_at.desc(), documents::id.desc()))
            .limit(page.limit_i64())
            .offset(page.offset_i64())
            .load(c)
            .map_err(map_diesel_error)?;
        let total: i64 = base()?.count().get_result(c).map_err(map_diesel_error)?;
        Ok(Page {
            items: many(rows)?,
            total: count(total),
        })
    })
}

fn update_status(
    conn: &mut SqliteConnection,
    id: DocumentId,
    update: &DocumentStatusUpdate,
) -> RepoResult<Document> {
    let changes = StatusChanges::new(update)?;
    let row = diesel::update(documents::table.find(uuid(id.0)))
        .set(&changes)
        .returning(DocumentRow::as_returning())
        .get_result(conn)
        .optional()
        .map_err(map_diesel_error)?;
    one(row, id)
}

fn update_status_many(
    conn: &mut SqliteConnection,
    ids: &[DocumentId],
    update: &DocumentStatusUpdate,
) -> RepoResult<u64> {
    let changes = StatusChanges::new(update)?;
    if ids.is_empty() {
        return Ok(0);
    }
    write_tx(conn, |c| {
        let mut changed = 0;
        for part in ids.chunks(in_list_len(StatusChanges::BINDS)) {
            let keys: Vec<String> = part.iter().map(|id| uuid(id.0)).collect();
            let n = diesel::update(documents::table.filter(documents::id.eq_any(&keys)))
                .set(&changes)
                .execute(c)
                .map_err(map_diesel_error)?;
            changed += affected(n);
        }
        Ok(changed)
    })
}

fn reset_failed_for_retry(
    conn: &mut SqliteConnection,
    collection_id: CollectionId,
) -> RepoResult<u64> {
    let n = diesel::update(
        documents::table
            .filter(documents::collection_id.eq(uuid(collection_id.0)))
            .filter(documents::status.eq(DocumentStatus::Failed.as_str())),
    )
    .set((
        documents::status.eq(DocumentStatus::Pending.as_str()),
        documents::retry_count.eq(documents::retry_count + 1),
        documents::error_message.eq(None::<String>),
        documents::error_category.eq(None::<String>),
        documents::updated_at.eq(ts(now())),
    ))
    .execute(conn)
    .map_err(map_diesel_error)?;
    Ok(affected(n))
}

fn mark_seen(conn: &mut SqliteConnection, ids: &[DocumentId], at: Timestamp) -> RepoResult<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let at = ts(at);
    write_tx(conn, |c| {
        let mut changed = 0;
        for part in ids.chunks(in_list_len(2)) {
            let keys: Vec<String> = part.iter().map(|id| uuid(id.0)).collect();
            let n = diesel::update(documents::table.filter(documents::id.eq_any(&keys)))
                .set((
                    documents::last_seen_at.eq(&at),
                    documents::is_stale.eq(false),
                ))
                .execute(c)
                .map_err(map_diesel_error)?;
            changed += affected(n);
        }
        Ok(changed)
    })
}

fn mark_unseen_stale(
    conn: &mut SqliteConnection,
    collection_id: CollectionId,
    seen_before: Timestamp,
) -> RepoResult<u64> {
    // Fixed-width RFC 3339 text: text order is time order.
    let n = diesel::update(
        documents::table
            .filter(documents::collection_id.eq(uuid(collection_id.0)))
            .filter(documents::is_stale.eq(false))
            .filter(
                documents::last_seen_at
                    .is_null()
                    .or(documents::last_seen_at.lt(ts(seen_before))),
            ),
    )
    .set(documents::is_stale.eq(true))
    .execute(conn)
    .map_err(map_diesel_error)?;
    Ok(affected(n))
}

#[derive(QueryableByName)]
struct StatusTotals {
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    documents: i64,
    #[diesel(sql_type = BigInt)]
    bytes: i64,
    #[diesel(sql_type = BigInt)]
    chunks: i64,
}

fn stats(conn: &mut SqliteConnection, collection_id: CollectionId) -> RepoResult<DocumentStats> {
    read_tx(conn, |c| {
        collections::ensure_exists(c, collection_id)?;
        let rows: Vec<StatusTotals> = diesel::sql_query(
            "SELECT status, COUNT(*) AS documents, COALESCE(SUM(file_size), 0) AS bytes, \
             COALESCE(SUM(chunk_count), 0) AS chunks \
             FROM documents WHERE collection_id = ? GROUP BY status",
        )
        .bind::<Text, _>(uuid(collection_id.0))
        .load(c)
        .map_err(map_diesel_error)?;
        let mut stats = DocumentStats::default();
        for row in rows {
            let n = count(row.documents);
            stats.total += n;
            stats.total_bytes += row.bytes;
            stats.total_chunks += row.chunks;
            stats.by_status.insert(row.status, n);
        }
        Ok(stats)
    })
}

fn delete(conn: &mut SqliteConnection, id: DocumentId) -> RepoResult<()> {
    // Chunks (and their FTS rows, by trigger) go by ON DELETE CASCADE.
    let n = diesel::delete(documents::table.find(uuid(id.0)))
        .execute(conn)
        .map_err(map_diesel_error)?;
    if n == 0 {
        Err(not_found(id))
    } else {
        Ok(())
    }
}

impl<S: ConnectionSource> DocumentRepository for SqliteDocuments<S> {
    fn register(&self, new: &NewDocument) -> RepoResult<Registered> {
        self.run(|c| register(c, new))
    }

    fn register_many(&self, batch: &[NewDocument]) -> RepoResult<Vec<Registered>> {
        self.run(|c| register_many(c, batch))
    }

    fn get(&self, id: DocumentId) -> RepoResult<Document> {
        self.run(|c| get(c, id))
    }

    fn get_by_hash(&self, collection_id: CollectionId, content_hash: &str) -> RepoResult<Document> {
        self.run(|c| get_by_hash(c, collection_id, content_hash))
    }

    fn get_by_uri(&self, collection_id: CollectionId, uri: &str) -> RepoResult<Document> {
        self.run(|c| get_by_uri(c, collection_id, uri))
    }

    fn list_by_collection(
        &self,
        collection_id: CollectionId,
        filter: &DocumentFilter,
        page: PageRequest,
    ) -> RepoResult<Page<Document>> {
        self.run(|c| list_by_collection(c, collection_id, filter, page))
    }

    fn find_by_meta(
        &self,
        collection_id: CollectionId,
        filter: &Value,
        page: PageRequest,
    ) -> RepoResult<Page<Document>> {
        self.run(|c| find_by_meta(c, collection_id, filter, page))
    }

    fn update_status(&self, id: DocumentId, update: &DocumentStatusUpdate) -> RepoResult<Document> {
        self.run(|c| update_status(c, id, update))
    }

    fn update_status_many(
        &self,
        ids: &[DocumentId],
        update: &DocumentStatusUpdate,
    ) -> RepoResult<u64> {
        self.run(|c| update_status_many(c, ids, update))
    }

    fn reset_failed_for_retry(&self, collection_id: CollectionId) -> RepoResult<u64> {
        self.run(|c| reset_failed_for_retry(c, collection_id))
    }

    fn mark_seen(&self, ids: &[DocumentId], at: Timestamp) -> RepoResult<u64> {
        self.run(|c| mark_seen(c, ids, at))
    }

    fn mark_unseen_stale(
        &self,
        collection_id: CollectionId,
        seen_before: Timestamp,
    ) -> RepoResult<u64> {
        self.run(|c| mark_unseen_stale(c, collection_id, seen_before))
    }

    fn stats(&self, collection_id: CollectionId) -> RepoResult<DocumentStats> {
        self.run(|c| stats(c, collection_id))
    }

    fn delete(&self, id: DocumentId) -> RepoResult<()> {
        self.run(|c| delete(c, id))
    }
}
