//! Documents: source files of a collection, deduplicated by content hash.

use crate::error::{Field, RepoError, RepoResult};
use crate::ids::{CollectionId, DocumentId};
use crate::page::{Page, PageRequest};
use crate::time::{self, Timestamp};
use crate::validate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Largest batch accepted by [`DocumentRepository::register_many`].
pub const MAX_DOCUMENT_BATCH: usize = 50_000;

string_enum!(
    /// Processing state of a document.
    DocumentStatus, Status {
        /// Registered, not processed.
        Pending => "pending",
        /// Being chunked and embedded.
        Processing => "processing",
        /// Chunked and embedded.
        Completed => "completed",
        /// Processing failed.
        Failed => "failed",
        /// Removed from its source.
        Deleted => "deleted",
    }
);

string_enum!(
    /// Kind of failure of a document.
    ErrorCategory, ErrorCategory {
        /// Worth retrying.
        Transient => "transient",
        /// Will fail again.
        Permanent => "permanent",
        /// Not classified.
        Unknown => "unknown",
    }
);

/// A source document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document {
    /// Id.
    pub id: DocumentId,
    /// Collection.
    pub collection_id: CollectionId,
    /// Path of the source file.
    pub file_path: String,
    /// File name.
    pub file_name: String,
    /// Bytes (≥ 0).
    pub file_size: i64,
    /// MIME type.
    pub mime_type: Option<String>,
    /// SHA-256 of the content, 64 lowercase hex; unique per collection.
    pub content_hash: String,
    /// Source URI; unique per collection when present.
    pub uri: Option<String>,
    /// Processing state.
    pub status: DocumentStatus,
    /// Error of a failed document.
    pub error_message: Option<String>,
    /// Kind of failure.
    pub error_category: Option<ErrorCategory>,
    /// How often processing was retried.
    pub retry_count: i32,
    /// Chunks produced.
    pub chunk_count: i32,
    /// Free-form metadata object.
    pub meta: Value,
    /// Last time a sync saw the source.
    pub last_seen_at: Option<Timestamp>,
    /// The source was not seen by the last sync.
    pub is_stale: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Input for [`DocumentRepository::register`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDocument {
    /// Collection.
    pub collection_id: CollectionId,
    /// Path of the source file.
    pub file_path: String,
    /// File name.
    pub file_name: String,
    /// Bytes (≥ 0).
    pub file_size: i64,
    /// MIME type.
    #[serde(default)]
    pub mime_type: Option<String>,
    /// SHA-256 hex of the content.
    pub content_hash: String,
    /// Source URI.
    #[serde(default)]
    pub uri: Option<String>,
    /// Defaults to `{}`.
    #[serde(default = "crate::serde_fields::empty_object")]
    pub meta: Value,
}

impl NewDocument {
    /// A named-field form of [`NewDocument::new`], which takes two adjacent strings
    /// that are easy to swap:
    ///
    /// ```
    /// # use repo_core::{CollectionId, NewDocument};
    /// # let collection = CollectionId(uuid::Uuid::nil());
    /// let doc = NewDocument::builder(collection)
    ///     .file_path("/docs/guide.md")
    ///     .file_size(1024)
    ///     .content_hash("ab".repeat(32))
    ///     .mime_type("text/markdown")
    ///     .build();
    /// assert_eq!(doc.file_name, "guide.md"); // from the path unless set
    /// assert_eq!(doc, NewDocument {
    ///     mime_type: Some("text/markdown".into()),
    ///     ..NewDocument::new(collection, "/docs/guide.md", "guide.md", 1024, "ab".repeat(32))
    /// });
    /// ```
    pub fn builder(collection_id: CollectionId) -> NewDocumentBuilder {
        NewDocumentBuilder {
            document: Self::new(collection_id, "", "", 0, ""),
        }
    }

    /// A document with no MIME type, URI or metadata.
    pub fn new(
        collection_id: CollectionId,
        file_path: impl Into<String>,
        file_name: impl Into<String>,
        file_size: i64,
        content_hash: impl Into<String>,
    ) -> Self {
        Self {
            collection_id,
            file_path: file_path.into(),
            file_name: file_name.into(),
            file_size,
            mime_type: None,
            content_hash: content_hash.into(),
            uri: None,
            meta: Value::Object(Default::default()),
        }
    }

    /// Validates the input and builds the row to insert (status `pending`).
    pub fn prepare(&self) -> RepoResult<Document> {
        validate::required_text(Field::FilePath, &self.file_path, 4096)?;
        validate::required_text(Field::FileName, &self.file_name, 1024)?;
        validate::non_negative(Field::FileSize, self.file_size)?;
        validate::opt_text(Field::MimeType, self.mime_type.as_deref())?;
        content_hash(&self.content_hash)?;
        if let Some(uri) = &self.uri {
            validate::required_text(Field::Uri, uri, 4096)?;
        }
        validate::json_object(Field::Meta, &self.meta)?;
        let now = time::now();
        Ok(Document {
            id: DocumentId::new(),
            collection_id: self.collection_id,
            file_path: self.file_path.clone(),
            file_name: self.file_name.clone(),
            file_size: self.file_size,
            mime_type: self.mime_type.clone(),
            content_hash: self.content_hash.clone(),
            uri: self.uri.clone(),
            status: DocumentStatus::Pending,
            error_message: None,
            error_category: None,
            retry_count: 0,
            chunk_count: 0,
            meta: self.meta.clone(),
            last_seen_at: Some(now),
            is_stale: false,
            created_at: now,
            updated_at: now,
        })
    }
}

/// Builds a [`NewDocument`] by field name; see [`NewDocument::builder`]. A required
/// field left unset (path, hash) is refused with `Validation` naming it when the
/// document is registered.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct NewDocumentBuilder {
    document: NewDocument,
}

impl NewDocumentBuilder {
    /// Path of the source file.
    pub fn file_path(mut self, file_path: impl Into<String>) -> Self {
        self.document.file_path = file_path.into();
        self
    }

    /// File name (default: the last component of the path).
    pub fn file_name(mut self, file_name: impl Into<String>) -> Self {
        self.document.file_name = file_name.into();
        self
    }

    /// Size in bytes.
    pub fn file_size(mut self, file_size: i64) -> Self {
        self.document.file_size = file_size;
        self
    }

    /// SHA-256 hex of the content.
    pub fn content_hash(mut self, content_hash: impl Into<String>) -> Self {
        self.document.content_hash = content_hash.into();
        self
    }

    /// MIME type.
    pub fn mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.document.mime_type = Some(mime_type.into());
        self
    }

    /// Source URI.
    pub fn uri(mut self, uri: impl Into<String>) -> Self {
        self.document.uri = Some(uri.into());
        self
    }

    /// Metadata object.
    pub fn meta(mut self, meta: Value) -> Self {
        self.document.meta = meta;
        self
    }

    /// The document; its file name is the path's last component unless set.
    pub fn build(mut self) -> NewDocument {
        if self.document.file_name.is_empty() {
            let path = self.document.file_path.trim_end_matches(['/', '\\']);
            let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
            self.document.file_name = name.to_owned();
        }
        self.document
    }
}

/// 64 lowercase hexadecimal characters.
pub fn content_hash(value: &str) -> RepoResult<()> {
    if value.len() != 64
        || !value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(RepoError::validation(
            Field::ContentHash,
            "must be 64 lowercase hexadecimal characters (SHA-256)",
        ));
    }
    Ok(())
}

/// Validates a batch and builds its rows; the error names the first offending item
/// (`item N: …`, 0-based) and the batch is refused as a whole.
pub fn prepare_batch(batch: &[NewDocument]) -> RepoResult<Vec<Document>> {
    if batch.len() > MAX_DOCUMENT_BATCH {
        return Err(RepoError::validation(
            Field::Documents,
            format!("a batch holds at most {MAX_DOCUMENT_BATCH} documents"),
        ));
    }
    batch
        .iter()
        .enumerate()
        .map(|(i, d)| d.prepare().map_err(|e| e.for_item(i)))
        .collect()
}

/// One document of a registration and whether this call created it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Registered {
    /// The stored document (the existing one when it was already registered).
    pub document: Document,
    /// `true` if this call inserted it.
    pub created: bool,
}

/// Changes of a document's processing state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentStatusUpdate {
    /// New state.
    pub status: DocumentStatus,
    /// Error text (for `failed`); cleared when `None`.
    pub error_message: Option<String>,
    /// Kind of failure; cleared when `None`.
    pub error_category: Option<ErrorCategory>,
    /// New chunk count, when known.
    pub chunk_count: Option<i32>,
}

impl DocumentStatusUpdate {
    /// A plain state change that clears any error.
    pub fn to(status: DocumentStatus) -> Self {
        Self {
            status,
            error_message: None,
            error_category: None,
            chunk_count: None,
        }
    }

    /// A failure with its message and category.
    pub fn failed(message: impl Into<String>, category: ErrorCategory) -> Self {
        Self {
            status: DocumentStatus::Failed,
            error_message: Some(message.into()),
            error_category: Some(category),
            chunk_count: None,
        }
    }

    /// Checks the texts.
    pub fn validate(&self) -> RepoResult<()> {
        validate::opt_text(Field::ErrorMessage, self.error_message.as_deref())?;
        if let Some(c) = self.chunk_count {
            validate::non_negative(Field::ChunkCount, i64::from(c))?;
        }
        Ok(())
    }
}

/// Filters for [`DocumentRepository::list_by_collection`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DocumentFilter {
    /// Only these states (empty: all).
    pub statuses: Vec<DocumentStatus>,
    /// Only stale (`Some(true)`) or fresh (`Some(false)`) documents.
    pub is_stale: Option<bool>,
}

/// Per-collection document statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DocumentStats {
    /// Documents in all.
    pub total: u64,
    /// Documents per state (states with none are absent).
    pub by_status: BTreeMap<String, u64>,
    /// Sum of `file_size`.
    pub total_bytes: i64,
    /// Sum of `chunk_count`.
    pub total_chunks: i64,
}

/// Checks a metadata filter: a JSON object whose leaves are strings, numbers, booleans
/// or null (nested objects allowed; arrays, empty keys and keys holding `"` or `\`
/// refused so that both backends agree).
///
/// A document matches when, for every leaf of the filter, its `meta` has the same
/// value at the same path: strings equal exactly, numbers numerically, `true`,
/// `false` and `null` by type. A nested empty object matches any object there.
pub fn meta_filter(filter: &Value) -> RepoResult<()> {
    fn leaves(v: &Value) -> RepoResult<()> {
        match v {
            Value::Array(_) => Err(RepoError::validation(
                Field::Meta,
                "filters match objects and scalar values; arrays are not supported",
            )),
            Value::Object(map) => map.iter().try_for_each(|(k, v)| {
                if k.is_empty() || k.contains(['"', '\\']) {
                    return Err(RepoError::validation(
                        Field::Meta,
                        "filter keys must be non-empty and contain no '\"' or '\\'",
                    ));
                }
                leaves(v)
            }),
            _ => Ok(()),
        }
    }
    validate::json_object(Field::Meta, filter)?;
    leaves(filter)
}

/// Where one collection of a batch registration must be looked up, in the order of
/// the batch: the collection (which must exist; a missing one is reported at
/// `first_item`), and the distinct hashes and URIs its items carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionLookup<'a> {
    /// The collection.
    pub collection_id: CollectionId,
    /// Index of the batch's first item in this collection.
    pub first_item: usize,
    /// Distinct content hashes of its items, in order of first appearance.
    pub hashes: Vec<&'a str>,
    /// Distinct URIs of its items, in order of first appearance.
    pub uris: Vec<&'a str>,
}

/// What a backend must read before planning a batch: one [`CollectionLookup`] per
/// collection, in the order of each collection's first item.
pub fn batch_lookups(docs: &[Document]) -> Vec<CollectionLookup<'_>> {
    let mut out: Vec<CollectionLookup<'_>> = Vec::new();
    let mut position: HashMap<CollectionId, usize> = HashMap::new();
    let mut seen: HashSet<(CollectionId, bool, &str)> = HashSet::new();
    for (i, d) in docs.iter().enumerate() {
        let at = *position.entry(d.collection_id).or_insert_with(|| {
            out.push(CollectionLookup {
                collection_id: d.collection_id,
                first_item: i,
                hashes: Vec::new(),
                uris: Vec::new(),
            });
            out.len() - 1
        });
        let Some(lookup) = out.get_mut(at) else {
            continue;
        };
        if seen.insert((d.collection_id, false, &d.content_hash)) {
            lookup.hashes.push(&d.content_hash);
        }
        if let Some(uri) = d.uri.as_deref() {
            if seen.insert((d.collection_id, true, uri)) {
                lookup.uris.push(uri);
            }
        }
    }
    out
}

/// The stored documents a batch registration is planned on: those with a hash of the
/// batch, and the hash stored behind every URI of the batch.
#[derive(Debug, Clone, Default)]
pub struct StoredDocuments {
    by_hash: HashMap<(CollectionId, String), Document>,
    hash_of_uri: HashMap<(CollectionId, String), String>,
}

impl StoredDocuments {
    /// Adds a stored document (by its hash, and as the owner of its URI).
    pub fn add(&mut self, doc: Document) {
        if let Some(uri) = &doc.uri {
            self.hash_of_uri
                .insert((doc.collection_id, uri.clone()), doc.content_hash.clone());
        }
        self.by_hash
            .insert((doc.collection_id, doc.content_hash.clone()), doc);
    }

    /// Adds the hash of the stored document that holds `uri` in the collection.
    pub fn add_uri_owner(
        &mut self,
        collection_id: CollectionId,
        uri: String,
        content_hash: String,
    ) {
        self.hash_of_uri.insert((collection_id, uri), content_hash);
    }

    fn get(&self, collection_id: CollectionId, content_hash: &str) -> Option<&Document> {
        // One allocation per lookup, as the map is keyed by owned text.
        self.by_hash.get(&(collection_id, content_hash.to_owned()))
    }

    fn uri_owner(&self, collection_id: CollectionId, uri: &str) -> Option<&str> {
        self.hash_of_uri
            .get(&(collection_id, uri.to_owned()))
            .map(String::as_str)
    }
}

impl Extend<Document> for StoredDocuments {
    fn extend<I: IntoIterator<Item = Document>>(&mut self, docs: I) {
        docs.into_iter().for_each(|d| self.add(d));
    }
}

/// The rows a backend's insert wrote, by (collection, content hash).
#[derive(Debug, Clone, Default)]
pub struct InsertedDocuments {
    by_hash: HashMap<(CollectionId, String), Option<Document>>,
}

impl InsertedDocuments {
    /// A row written as the prepared document (nothing the database changed).
    pub fn add_as_prepared(&mut self, doc: &Document) {
        self.by_hash
            .insert((doc.collection_id, doc.content_hash.clone()), None);
    }

    /// A row written, as the database returned it.
    pub fn add(&mut self, doc: Document) {
        self.by_hash
            .insert((doc.collection_id, doc.content_hash.clone()), Some(doc));
    }

    fn take(&mut self, doc: &Document) -> Option<Option<Document>> {
        self.by_hash
            .remove(&(doc.collection_id, doc.content_hash.clone()))
    }

    fn contains(&self, doc: &Document) -> bool {
        self.by_hash
            .contains_key(&(doc.collection_id, doc.content_hash.clone()))
    }
}

impl FromIterator<Document> for InsertedDocuments {
    fn from_iter<I: IntoIterator<Item = Document>>(docs: I) -> Self {
        let mut inserted = Self::default();
        docs.into_iter().for_each(|d| inserted.add(d));
        inserted
    }
}

/// What a batch registration does with one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemPlan {
    /// The collection already holds the hash: that document, unchanged.
    Stored,
    /// The first occurrence of a new hash: inserted.
    New,
    /// A later occurrence of the hash of item `n`: its outcome.
    SameAs(usize),
}

/// The plan of [`DocumentRepository::register_many`], decided on the batch and the
/// [`StoredDocuments`] before anything is written.
///
/// Every rule is checked in input order, so the error names the first offending item.
/// A hash already stored, or repeated from an earlier item, returns that document
/// unchanged: its other values, the URI included, play no part. Each other item is
/// new, and its URI must be neither stored for another hash nor carried by an earlier
/// new item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationPlan {
    items: Vec<ItemPlan>,
}

/// A new item whose row is neither inserted nor stored once the batch is written:
/// another transaction deleted it, or stored another hash with its URI, in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vanished {
    /// The item.
    pub item: usize,
    /// Its collection.
    pub collection_id: CollectionId,
    /// Its URI, which the backend checks ([`Vanished::into_error`]).
    pub uri: Option<String>,
}

impl Vanished {
    /// The error of the batch, given whether the item's URI is now taken in its
    /// collection: the refusal of a URI taken by another hash (as when that row came
    /// first), or a concurrent-update conflict.
    pub fn into_error(self, uri_taken: bool) -> RepoError {
        if uri_taken {
            uri_taken_error().for_item(self.item)
        } else {
            RepoError::conflict(
                crate::error::ConflictReason::ConcurrentUpdate,
                format!(
                    "item {}: the document was deleted while it was being registered",
                    self.item
                ),
            )
        }
    }
}

fn uri_taken_error() -> RepoError {
    RepoError::validation(
        Field::Uri,
        "is already used by another document of the collection",
    )
}

impl RegistrationPlan {
    /// Plans the batch `docs` (from [`prepare_batch`]) on what is stored.
    pub fn new(docs: &[Document], stored: &StoredDocuments) -> RepoResult<Self> {
        let mut items = Vec::with_capacity(docs.len());
        let mut first_of_hash: HashMap<(CollectionId, &str), usize> =
            HashMap::with_capacity(docs.len());
        let mut first_of_uri: HashMap<(CollectionId, &str), usize> = HashMap::new();
        for (i, d) in docs.iter().enumerate() {
            let cid = d.collection_id;
            let hash = d.content_hash.as_str();
            if stored.get(cid, hash).is_some() {
                items.push(ItemPlan::Stored);
                continue;
            }
            if let Some(&first) = first_of_hash.get(&(cid, hash)) {
                items.push(ItemPlan::SameAs(first));
                continue;
            }
            if let Some(uri) = d.uri.as_deref() {
                if stored.uri_owner(cid, uri).is_some_and(|h| h != hash) {
                    return Err(uri_taken_error().for_item(i));
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
            items.push(ItemPlan::New);
        }
        Ok(Self { items })
    }

    /// The documents to insert, in input order.
    pub fn to_insert<'a>(&'a self, docs: &'a [Document]) -> impl Iterator<Item = &'a Document> {
        docs.iter()
            .zip(&self.items)
            .filter(|(_, p)| **p == ItemPlan::New)
            .map(|(d, _)| d)
    }

    /// The hashes of new documents that `inserted` lacks (another transaction stored
    /// them first), per collection: the backend reads them into the stored documents.
    pub fn lost<'a>(
        &self,
        docs: &'a [Document],
        inserted: &InsertedDocuments,
    ) -> Vec<(CollectionId, Vec<&'a str>)> {
        let mut out: Vec<(CollectionId, Vec<&'a str>)> = Vec::new();
        let new_items = docs
            .iter()
            .zip(&self.items)
            .filter(|(_, p)| **p == ItemPlan::New);
        for (d, _) in new_items.filter(|(d, _)| !inserted.contains(d)) {
            match out.iter_mut().find(|(c, _)| *c == d.collection_id) {
                Some((_, hashes)) => hashes.push(&d.content_hash),
                None => out.push((d.collection_id, vec![&d.content_hash])),
            }
        }
        out
    }

    /// One result per item, in input order: a stored document with `created: false`,
    /// an inserted one with `created: true` (the first item of its hash only).
    pub fn registered(
        self,
        docs: Vec<Document>,
        stored: &StoredDocuments,
        mut inserted: InsertedDocuments,
    ) -> Result<Vec<Registered>, Vanished> {
        let mut out: Vec<Registered> = Vec::with_capacity(docs.len());
        for (i, (d, plan)) in docs.into_iter().zip(self.items).enumerate() {
            let written = match plan {
                ItemPlan::New => inserted.take(&d),
                ItemPlan::Stored | ItemPlan::SameAs(_) => None,
            };
            let found = match (plan, written) {
                (_, Some(row)) => Ok((row.unwrap_or(d), true)),
                (ItemPlan::SameAs(first), None) => {
                    out.get(first).map(|r| (r.document.clone(), false)).ok_or(d)
                }
                (_, None) => stored
                    .get(d.collection_id, &d.content_hash)
                    .map(|doc| (doc.clone(), false))
                    .ok_or(d),
            };
            match found {
                Ok((document, created)) => out.push(Registered { document, created }),
                Err(d) => {
                    return Err(Vanished {
                        item: i,
                        collection_id: d.collection_id,
                        uri: d.uri,
                    })
                }
            }
        }
        Ok(out)
    }
}

/// Documents of collections.
pub trait DocumentRepository: Send + Sync {
    /// Registers a document, idempotent on (collection, content_hash): an existing
    /// document comes back with `created: false`, also when callers race. A URI used
    /// by another document of the collection is `AlreadyExists { field: Field::Uri }`.
    fn register(&self, new: &NewDocument) -> RepoResult<Registered>;
    /// Registers many documents in one transaction, deduplicated within the batch and
    /// against stored rows; one result per input item, in input order. A rule broken by
    /// any item fails the whole batch, naming the first offending item, and writes nothing.
    fn register_many(&self, batch: &[NewDocument]) -> RepoResult<Vec<Registered>>;
    /// By id, or `NotFound`.
    fn get(&self, id: DocumentId) -> RepoResult<Document>;
    /// By content hash within a collection, or `NotFound`.
    fn get_by_hash(&self, collection_id: CollectionId, content_hash: &str) -> RepoResult<Document>;
    /// By URI within a collection, or `NotFound`.
    fn get_by_uri(&self, collection_id: CollectionId, uri: &str) -> RepoResult<Document>;
    /// Documents of a collection: failed first, then newest.
    fn list_by_collection(
        &self,
        collection_id: CollectionId,
        filter: &DocumentFilter,
        page: PageRequest,
    ) -> RepoResult<Page<Document>>;
    /// Documents whose `meta` contains `filter` (see [`meta_filter`]), newest first.
    fn find_by_meta(
        &self,
        collection_id: CollectionId,
        filter: &Value,
        page: PageRequest,
    ) -> RepoResult<Page<Document>>;
    /// Changes one document's state.
    fn update_status(&self, id: DocumentId, update: &DocumentStatusUpdate) -> RepoResult<Document>;
    /// Changes many documents' state; returns how many rows changed.
    fn update_status_many(
        &self,
        ids: &[DocumentId],
        update: &DocumentStatusUpdate,
    ) -> RepoResult<u64>;
    /// Moves the collection's failed documents back to `pending`, incrementing
    /// `retry_count` and clearing the error; returns how many.
    fn reset_failed_for_retry(&self, collection_id: CollectionId) -> RepoResult<u64>;
    /// Sets `last_seen_at = at` and `is_stale = false` on the listed documents.
    fn mark_seen(&self, ids: &[DocumentId], at: Timestamp) -> RepoResult<u64>;
    /// Marks stale every document of the collection not seen since `seen_before`;
    /// returns how many became stale.
    fn mark_unseen_stale(
        &self,
        collection_id: CollectionId,
        seen_before: Timestamp,
    ) -> RepoResult<u64>;
    /// Counts by state, bytes and chunks of a collection.
    fn stats(&self, collection_id: CollectionId) -> RepoResult<DocumentStats>;
    /// Deletes a document and its chunks.
    fn delete(&self, id: DocumentId) -> RepoResult<()>;
}

#[cfg(test)]
mod registration_plan_tests {
    use super::*;

    fn doc(collection: CollectionId, hash: char, uri: Option<&str>) -> Document {
        let mut new = NewDocument::new(collection, "/f", "f", 1, hash.to_string().repeat(64));
        new.uri = uri.map(str::to_owned);
        new.prepare().expect("valid document")
    }

    #[test]
    fn lookups_name_each_collection_once_with_distinct_hashes_and_uris() {
        let (a, b) = (CollectionId::new(), CollectionId::new());
        let docs = [
            doc(a, 'a', Some("u")),
            doc(b, 'a', None),
            doc(a, 'a', Some("u")),
            doc(a, 'b', Some("v")),
        ];
        let lookups = batch_lookups(&docs);
        assert_eq!(lookups.len(), 2);
        assert_eq!((lookups[0].collection_id, lookups[0].first_item), (a, 0));
        assert_eq!(lookups[0].hashes.len(), 2);
        assert_eq!(lookups[0].uris, vec!["u", "v"]);
        assert_eq!((lookups[1].collection_id, lookups[1].first_item), (b, 1));
    }

    #[test]
    fn stored_repeated_and_new_items() {
        let c = CollectionId::new();
        let stored_doc = doc(c, 'a', None);
        let mut stored = StoredDocuments::default();
        stored.add(stored_doc.clone());
        let docs = vec![doc(c, 'a', None), doc(c, 'b', None), doc(c, 'b', None)];
        let plan = RegistrationPlan::new(&docs, &stored).expect("plan");
        let new: Vec<_> = plan.to_insert(&docs).map(|d| d.id).collect();
        assert_eq!(new, vec![docs[1].id]);
        let mut inserted = InsertedDocuments::default();
        inserted.add_as_prepared(&docs[1]);
        assert!(plan.lost(&docs, &inserted).is_empty());
        let out = plan
            .registered(docs.clone(), &stored, inserted)
            .expect("registered");
        assert_eq!(out[0].document, stored_doc);
        assert!(!out[0].created);
        assert_eq!(out[1].document, docs[1]);
        assert!(out[1].created);
        assert_eq!(out[2].document, docs[1]);
        assert!(!out[2].created);
    }

    /// The stored documents and the inserted rows a backend collects are found again
    /// by (collection, hash), whichever way they were added; only the new hashes that
    /// no row was returned for are lost, grouped by collection.
    #[test]
    fn collected_rows_are_found_by_collection_and_hash() {
        let (a, b) = (CollectionId::new(), CollectionId::new());
        let docs = vec![
            doc(a, 'a', None),
            doc(b, 'a', None),
            doc(a, 'b', None),
            doc(a, 'c', None),
        ];
        let mut stored = StoredDocuments::default();
        stored.extend([docs[0].clone()]);
        assert_eq!(stored.get(a, &docs[0].content_hash), Some(&docs[0]));
        assert_eq!(stored.get(b, &docs[0].content_hash), None);
        let plan = RegistrationPlan::new(&docs, &stored).expect("plan");
        let new: Vec<_> = plan.to_insert(&docs).map(|d| d.id).collect();
        assert_eq!(new, vec![docs[1].id, docs[2].id, docs[3].id]);

        let mut inserted: InsertedDocuments = [docs[1].clone()].into_iter().collect();
        assert!(inserted.contains(&docs[1]) && !inserted.contains(&docs[2]));
        assert_eq!(
            plan.lost(&docs, &inserted),
            vec![(
                a,
                vec![docs[2].content_hash.as_str(), docs[3].content_hash.as_str()]
            )]
        );
        inserted.add(docs[2].clone());
        inserted.add_as_prepared(&docs[3]);
        assert!(plan.lost(&docs, &inserted).is_empty());
        let out = plan
            .registered(docs.clone(), &stored, inserted)
            .expect("registered");
        let created: Vec<_> = out.iter().map(|r| (r.document.id, r.created)).collect();
        assert_eq!(
            created,
            vec![
                (docs[0].id, false),
                (docs[1].id, true),
                (docs[2].id, true),
                (docs[3].id, true)
            ]
        );
    }

    #[test]
    fn uri_rules_name_the_item() {
        let c = CollectionId::new();
        let mut stored = StoredDocuments::default();
        stored.add_uri_owner(c, "taken".into(), "f".repeat(64));
        let docs = vec![doc(c, 'a', Some("taken"))];
        let err = RegistrationPlan::new(&docs, &stored).unwrap_err();
        assert!(err.to_string().contains("item 0"), "{err}");
        let docs = vec![doc(c, 'a', Some("u")), doc(c, 'b', Some("u"))];
        let err = RegistrationPlan::new(&docs, &StoredDocuments::default()).unwrap_err();
        assert!(err.to_string().contains("also used by item 0"), "{err}");
    }

    #[test]
    fn a_lost_race_is_read_back_or_reported() {
        let c = CollectionId::new();
        let docs = vec![doc(c, 'a', Some("u"))];
        let mut stored = StoredDocuments::default();
        let plan = RegistrationPlan::new(&docs, &stored).expect("plan");
        let inserted = InsertedDocuments::default();
        assert_eq!(
            plan.lost(&docs, &inserted),
            vec![(c, vec![docs[0].content_hash.as_str()])]
        );
        let vanished = plan
            .clone()
            .registered(docs.clone(), &stored, InsertedDocuments::default())
            .unwrap_err();
        assert_eq!((vanished.item, vanished.uri.as_deref()), (0, Some("u")));
        assert!(matches!(
            vanished.into_error(true),
            RepoError::Validation {
                field: Field::Uri,
                ..
            }
        ));
        let winner = doc(c, 'a', None);
        stored.add(winner.clone());
        let out = plan
            .registered(docs, &stored, InsertedDocuments::default())
            .expect("read back");
        assert_eq!((out[0].document.id, out[0].created), (winner.id, false));
    }
}

#[cfg(test)]
mod validation_tests {
    use super::*;

    #[test]
    fn a_content_hash_is_64_lowercase_hex_characters() {
        assert!(content_hash(&"a0".repeat(32)).is_ok());
        for bad in [
            "a".repeat(63),
            "a".repeat(65),
            "A".repeat(64),
            "g".repeat(64),
            String::new(),
        ] {
            assert!(content_hash(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_batch_holds_at_most_max_document_batch_documents() {
        let collection = CollectionId::new();
        let hash = "a".repeat(64);
        let batch: Vec<NewDocument> = (0..MAX_DOCUMENT_BATCH)
            .map(|i| NewDocument::new(collection, format!("/f{i}"), "f", 1, hash.clone()))
            .collect();
        assert_eq!(prepare_batch(&batch).unwrap().len(), MAX_DOCUMENT_BATCH);
        let mut over = batch;
        over.push(NewDocument::new(collection, "/over", "f", 1, hash));
        assert!(matches!(
            prepare_batch(&over),
            Err(RepoError::Validation {
                field: Field::Documents,
                ..
            })
        ));
    }

    #[test]
    fn filter_keys_are_non_empty_without_quotes_or_backslashes() {
        assert!(meta_filter(&serde_json::json!({"a": {"b": 1}})).is_ok());
        for bad in [
            serde_json::json!({"": 1}),
            serde_json::json!({"a\"b": 1}),
            serde_json::json!({"a": {"b\\c": 1}}),
            serde_json::json!({"a": [1]}),
        ] {
            assert!(meta_filter(&bad).is_err(), "{bad}");
        }
    }
}
