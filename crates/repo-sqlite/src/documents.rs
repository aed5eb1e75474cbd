//! Documents: registration deduplicated by content hash (one or thousands per call),
//! processing state, sync bookkeeping and metadata filters.

use crate::bulk::{in_list_len, rows_per_statement};
use crate::codec::{uuid, SqliteColumns};
use crate::collections;
use crate::error::map_diesel_error;
use crate::schema::documents;
use crate::unit_of_work::{read_tx, write_tx, ConnectionSource, SqliteRepos};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Text};
use diesel::sqlite::Sqlite;
use repo_core::document::{
    batch_lookups, meta_filter, prepare_batch, InsertedDocuments, RegistrationPlan,
    StoredDocuments,
};
use repo_core::{
    CollectionId, Document, DocumentFilter, DocumentId, DocumentRepository, DocumentStats,
    DocumentStatusUpdate, Entity, Field, NewDocument, Page, PageRequest, Registered, RepoError,
    RepoResult, Timestamp,
};
use repo_diesel::documents::{document_stats, StatusTotals};
use serde_json::Value;
use std::collections::HashSet;

repo_diesel::document_row!(
    backend: Sqlite,
    codec: SqliteColumns,
    uuid: String,
    timestamp: String,
    json: String,
);

repo_diesel::insert_document!(
    /// A row for `documents`.
    InsertDocument,
    table: documents,
    codec: SqliteColumns,
    uuid: String,
    timestamp: String,
);

/// Bound columns of [`InsertDocument`], for sizing multi-row inserts.
const INSERT_COLUMNS: usize = 18;

repo_diesel::document_statements!(
    backend: Sqlite,
    conn: SqliteConnection,
    codec: SqliteColumns,
    uuid: String,
    timestamp: String,
    map_err: map_diesel_error,
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
        for row in rows {
            stored.add(row.into_domain()?);
        }
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

/// `register_many`: the facts the core plans on are read, then the plan's new rows
/// written, all in one write transaction, so nothing is written unless every item
/// passes.
fn register_many(
    conn: &mut SqliteConnection,
    batch: &[NewDocument],
) -> RepoResult<Vec<Registered>> {
    let docs = prepare_batch(batch)?;
    if docs.is_empty() {
        return Ok(Vec::new());
    }
    write_tx(conn, |c| {
        let mut stored = StoredDocuments::default();
        for lookup in batch_lookups(&docs) {
            collections::ensure_exists(c, lookup.collection_id)
                .map_err(|e| e.for_item(lookup.first_item))?;
            read_by_hash(c, lookup.collection_id, &lookup.hashes, &mut stored)?;
            read_uri_owners(c, lookup.collection_id, &lookup.uris, &mut stored)?;
        }
        let plan = RegistrationPlan::new(&docs, &stored)?;

        let new_docs: Vec<&Document> = plan.to_insert(&docs).collect();
        let rows = new_docs
            .iter()
            .map(|d| InsertDocument::from_domain(d))
            .collect::<RepoResult<Vec<_>>>()?;
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
        drop(rows);
        let mut inserted = InsertedDocuments::default();
        for d in new_docs {
            if created.contains(&uuid(d.id.0)) {
                inserted.add_as_prepared(d);
            }
        }
        // Not reachable while the write transaction excludes other writers; kept so
        // that a lost race still answers like `register`.
        for (collection_id, hashes) in plan.lost(&docs, &inserted) {
            read_by_hash(c, collection_id, &hashes, &mut stored)?;
        }
        plan.registered(docs, &stored, inserted).or_else(|vanished| {
            let uri_taken = match vanished.uri.as_deref() {
                Some(uri) => uri_is_taken(c, vanished.collection_id, uri)?,
                None => false,
            };
            Err(vanished.into_error(uri_taken))
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
    let query = || -> RepoResult<documents::BoxedQuery<'static, Sqlite>> {
        let mut query = documents::table
            .filter(documents::collection_id.eq(id.clone()))
            .into_boxed();
        for condition in meta_conditions(filter) {
            query = query.filter(meta_predicate(condition)?);
        }
        Ok(query)
    };
    read_tx(conn, |c| newest_page(c, query, page))
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
        Ok(document_stats(rows))
    })
}

impl<S: ConnectionSource> DocumentRepository for SqliteRepos<S> {
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
        self.run(|c| read_tx(c, |c| list_by_collection(c, collection_id, filter, page)))
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
        let per_statement = in_list_len(StatusChanges::BINDS);
        self.run(|c| write_tx(c, |c| update_status_many(c, ids, update, per_statement)))
    }

    fn reset_failed_for_retry(&self, collection_id: CollectionId) -> RepoResult<u64> {
        self.run(|c| reset_failed_for_retry(c, collection_id))
    }

    fn mark_seen(&self, ids: &[DocumentId], at: Timestamp) -> RepoResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.run(|c| write_tx(c, |c| mark_seen(c, ids, at, in_list_len(2))))
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
