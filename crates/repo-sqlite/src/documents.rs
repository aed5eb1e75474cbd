//! Documents: registration deduplicated by content hash (one or thousands per call),
//! processing state, sync bookkeeping and metadata filters.
//!
//! The row types, the statements both backends run alike and the
//! [`DocumentRepository`](repo_core::DocumentRepository) forwarding are expanded from
//! `repo_diesel`'s macros; the core plans `register_many`. What stays here is SQLite's
//! own: the conflict target of `register`, IN-lists sized under the bind limit, the
//! JSON1 metadata filter, and which calls run in a read or write transaction.

use crate::bulk::{in_list_len, rows_per_statement};
use crate::codec::{uuid, SqliteCodec};
use crate::collections;
use crate::connection::{write_tx, ConnectionSource, SqliteDocuments};
use crate::error::map_diesel_error;
use crate::schema::documents;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Text};
use diesel::sqlite::Sqlite;
use repo_core::document::{InsertedDocuments, StoredDocuments};
use repo_core::{
    CollectionId, Document, DocumentId, Entity, Field, NewDocument, Registered, RepoError,
    RepoResult,
};
use repo_diesel::documents::register_batch;
use serde_json::Value;
use std::collections::HashSet;

repo_diesel::document_row!(
    backend: Sqlite,
    codec: SqliteCodec,
    uuid: String,
    timestamp: String,
    json: String,
);

repo_diesel::insert_document!(
    /// A row for `documents`.
    InsertDocument,
    table: documents,
    codec: SqliteCodec,
    uuid: String,
    timestamp: String,
);

/// Bound columns of [`InsertDocument`], for sizing multi-row inserts.
const INSERT_COLUMNS: usize = 18;

repo_diesel::document_statements!(
    backend: Sqlite,
    conn: SqliteConnection,
    codec: SqliteCodec,
    uuid: String,
    timestamp: String,
    map_err: map_diesel_error,
    ids_per_statement: in_list_len(StatusChanges::BINDS),
    ids_transaction: write_tx,
    uuid_sql: Text,
    require_collection: collections::ensure_exists,
    stats_sql: "SELECT status, COUNT(*) AS documents, COALESCE(SUM(file_size), 0) AS bytes, \
                COALESCE(SUM(chunk_count), 0) AS chunks \
                FROM documents WHERE collection_id = ? GROUP BY status",
);

/// `NotFound { entity: Entity::Document }` unless the document exists.
pub(crate) fn ensure_exists(conn: &mut SqliteConnection, id: DocumentId) -> RepoResult<()> {
    let exists: bool = diesel::select(diesel::dsl::exists(documents::table.find(uuid(id.0))))
        .get_result(conn)
        .map_err(map_diesel_error)?;
    if exists {
        Ok(())
    } else {
        Err(RepoError::not_found(Entity::Document, id))
    }
}

fn register(conn: &mut SqliteConnection, new: &NewDocument) -> RepoResult<Registered> {
    let doc = new.prepare()?;
    let row = InsertDocument::from_domain(&doc)?;
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
                document: one(
                    find_by_hash(c, doc.collection_id, &doc.content_hash)?,
                    &doc.content_hash,
                )?,
                created: false,
            }),
        }
    })
}

/// Reads into `stored` the documents of one collection whose hash is in `hashes`.
fn read_by_hash(
    conn: &mut SqliteConnection,
    collection_id: CollectionId,
    hashes: &[&str],
    stored: &mut StoredDocuments,
) -> RepoResult<()> {
    let key = uuid(collection_id.0);
    for part in hashes.chunks(in_list_len(1)) {
        let rows = documents::table
            .filter(documents::collection_id.eq(&key))
            .filter(documents::content_hash.eq_any(part))
            .select(DocumentRow::as_select())
            .load(conn)
            .map_err(map_diesel_error)?;
        stored.extend(many(rows)?);
    }
    Ok(())
}

/// Reads into `stored` the hash of the document of one collection holding each URI
/// of `uris`.
fn read_uri_owners(
    conn: &mut SqliteConnection,
    collection_id: CollectionId,
    uris: &[&str],
    stored: &mut StoredDocuments,
) -> RepoResult<()> {
    let key = uuid(collection_id.0);
    for part in uris.chunks(in_list_len(1)) {
        let rows: Vec<(Option<String>, String)> = documents::table
            .filter(documents::collection_id.eq(&key))
            .filter(documents::uri.eq_any(part))
            .select((documents::uri, documents::content_hash))
            .load(conn)
            .map_err(map_diesel_error)?;
        for (uri, hash) in rows {
            if let Some(uri) = uri {
                stored.add_uri_owner(collection_id, uri, hash);
            }
        }
    }
    Ok(())
}

/// Writes the new documents of a batch as multi-row inserts that skip a hash stored
/// meanwhile; the rows written are exactly the prepared documents.
fn insert_new(conn: &mut SqliteConnection, docs: &[&Document]) -> RepoResult<InsertedDocuments> {
    let rows = InsertDocument::from_domain_all(docs)?;
    let mut created: HashSet<String> = HashSet::with_capacity(rows.len());
    for part in rows.chunks(rows_per_statement(INSERT_COLUMNS)) {
        let ids: Vec<String> = diesel::insert_into(documents::table)
            .values(part)
            .on_conflict((documents::collection_id, documents::content_hash))
            .do_nothing()
            .returning(documents::id)
            .get_results(conn)
            .map_err(map_diesel_error)?;
        created.extend(ids);
    }
    let mut inserted = InsertedDocuments::default();
    for d in docs.iter().filter(|d| created.contains(&uuid(d.id.0))) {
        inserted.add_as_prepared(d);
    }
    Ok(inserted)
}

/// `register_many`, in a write transaction, which excludes other writers: no row is
/// inserted meanwhile, so none is read back.
fn register_many(
    conn: &mut SqliteConnection,
    batch: &[NewDocument],
) -> RepoResult<Vec<Registered>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    write_tx(conn, |c| {
        register_batch(
            c,
            batch,
            collections::ensure_exists,
            |c, collection_id, hashes, uris, stored| {
                read_by_hash(c, collection_id, hashes, stored)?;
                read_uri_owners(c, collection_id, uris, stored)
            },
            insert_new,
            uri_is_taken,
        )
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

/// The collection's documents matching a checked metadata filter.
fn meta_query(
    collection_id: CollectionId,
    filter: &Value,
) -> RepoResult<documents::BoxedQuery<'static, Sqlite>> {
    let mut query = documents::table
        .filter(documents::collection_id.eq(uuid(collection_id.0)))
        .into_boxed();
    for condition in meta_conditions(filter) {
        query = query.filter(meta_predicate(condition)?);
    }
    Ok(query)
}

repo_diesel::document_repository!(
    impl<S: ConnectionSource> for SqliteDocuments<S>, source: src;
    register: run,
    register_many: run,
    get: run,
    get_by_hash: run,
    get_by_uri: run,
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
