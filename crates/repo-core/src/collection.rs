//! Collections and the grants that share them.

use crate::access::{require_access, Ownership, Principal};
use crate::enums::{AccessLevel, CollectionStatus, Quantization, SyncMode, SyncRunStatus};
use crate::error::{Attempt, Field, RepoError, RepoResult};
use crate::ids::{ApiKeyId, CollectionId, UserId};
use crate::page::{Cursor, CursorPage, CursorRequest, Page, PageRequest};
use crate::time::{self, Timestamp};
use crate::validate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Default embedding model of a new collection.
pub const DEFAULT_EMBEDDING_MODEL: &str = "Qwen/Qwen3-Embedding-0.6B";
/// Shortest interval between continuous syncs.
pub const MIN_SYNC_INTERVAL_MINUTES: i32 = 15;

/// A named set of documents, owned by a user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Collection {
    /// Id.
    pub id: CollectionId,
    /// Globally unique, trimmed, non-empty.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Owner.
    pub owner_id: UserId,
    /// `col_` + id with `-` → `_`; unique.
    pub vector_store_name: String,
    /// Embedding model name.
    pub embedding_model: String,
    /// Vector quantization.
    pub quantization: Quantization,
    /// Characters per chunk (> 0).
    pub chunk_size: i32,
    /// Overlap between chunks (0 ≤ overlap < chunk_size).
    pub chunk_overlap: i32,
    /// Chunking strategy name.
    pub chunking_strategy: Option<String>,
    /// Chunking strategy settings.
    pub chunking_config: Option<Value>,
    /// Readable by everyone.
    pub is_public: bool,
    /// Free-form metadata object.
    pub meta: Value,
    /// Lifecycle state.
    pub status: CollectionStatus,
    /// Detail for the state.
    pub status_message: Option<String>,
    /// Number of documents (≥ 0).
    pub document_count: i64,
    /// Number of vectors (≥ 0).
    pub vector_count: i64,
    /// Bytes of source data (≥ 0).
    pub total_size_bytes: i64,
    /// One-time or continuous sync.
    pub sync_mode: SyncMode,
    /// Minutes between continuous syncs (≥ 15).
    pub sync_interval_minutes: Option<i32>,
    /// When sync was paused (`None`: not paused).
    pub sync_paused_at: Option<Timestamp>,
    /// When the next continuous sync is due.
    pub sync_next_run_at: Option<Timestamp>,
    /// Start of the last sync run.
    pub sync_last_run_started_at: Option<Timestamp>,
    /// End of the last sync run.
    pub sync_last_run_completed_at: Option<Timestamp>,
    /// Outcome of the last sync run.
    pub sync_last_run_status: Option<SyncRunStatus>,
    /// Error of the last sync run.
    pub sync_last_error: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

impl Collection {
    /// Who owns the collection and whether it is public: what the access rule
    /// ([`crate::access`]) needs of it.
    pub fn ownership(&self) -> Ownership {
        Ownership {
            owner_id: self.owner_id,
            is_public: self.is_public,
        }
    }

    /// This collection's position in a newest-first cursor listing.
    pub fn cursor(&self) -> Cursor {
        Cursor::after_uuid(self.created_at, self.id.0)
    }

    /// The rule of [`CollectionRepository::update_status`] as the condition of one
    /// atomic update: the stored spellings of the states from which `status` may be
    /// entered (empty: none may), after checking `message`. When the conditional
    /// update changes no row, the refusal is `InvalidState { current, attempted }`.
    pub fn status_sources(
        status: CollectionStatus,
        message: Option<&str>,
    ) -> RepoResult<Vec<&'static str>> {
        validate::opt_text(Field::StatusMessage, message)?;
        Ok(CollectionStatus::predecessors(status)
            .into_iter()
            .map(CollectionStatus::as_str)
            .collect())
    }

    /// The row after [`CollectionRepository::pause_sync`] at `at`: `None` when sync is
    /// already paused (pausing twice keeps the first pause time); `InvalidState` for a
    /// one-time collection.
    pub fn paused(&self, at: Timestamp) -> RepoResult<Option<Collection>> {
        if self.sync_mode == SyncMode::OneTime {
            return Err(RepoError::invalid_state(
                SyncMode::OneTime,
                Attempt::PauseSync,
            ));
        }
        if self.sync_paused_at.is_some() {
            return Ok(None);
        }
        Ok(Some(Collection {
            sync_paused_at: Some(at),
            updated_at: at,
            ..self.clone()
        }))
    }

    /// The row after [`CollectionRepository::resume_sync`] at `at`, due again at
    /// `next_run_at`; `InvalidState` for a one-time collection.
    pub fn resumed(&self, next_run_at: Timestamp, at: Timestamp) -> RepoResult<Collection> {
        if self.sync_mode == SyncMode::OneTime {
            return Err(RepoError::invalid_state(
                SyncMode::OneTime,
                Attempt::ResumeSync,
            ));
        }
        Ok(Collection {
            sync_paused_at: None,
            sync_next_run_at: Some(time::truncate_micros(next_run_at)),
            updated_at: at,
            ..self.clone()
        })
    }

    /// The row after [`CollectionRepository::record_sync_run`] at `at`: a completed
    /// run of a continuous collection schedules the next run `sync_interval_minutes`
    /// after its completion; otherwise the next run stays as it was.
    pub fn with_sync_run(&self, run: &SyncRun, at: Timestamp) -> RepoResult<Collection> {
        validate::opt_text(Field::SyncLastError, run.error.as_deref())?;
        let completed_at = run.completed_at.map(time::truncate_micros);
        let next_run = match (completed_at, self.sync_mode, self.sync_interval_minutes) {
            (Some(done), SyncMode::Continuous, Some(minutes)) => {
                Some(done + chrono::Duration::minutes(i64::from(minutes)))
            }
            _ => self.sync_next_run_at,
        };
        Ok(Collection {
            sync_last_run_started_at: Some(time::truncate_micros(run.started_at)),
            sync_last_run_completed_at: completed_at,
            sync_last_run_status: Some(run.status),
            sync_last_error: run.error.clone(),
            sync_next_run_at: next_run,
            updated_at: at,
            ..self.clone()
        })
    }

    /// The rule of [`CollectionRepository::delete`]: only a principal holding admin
    /// on the collection (`have`, from [`crate::Actor::level`]) may delete it.
    pub fn require_delete_rights(&self, have: Option<AccessLevel>) -> RepoResult<()> {
        require_access(self.id, have, AccessLevel::Admin)
    }
}

/// Merges the newest-first branches of a listing (owned, public, granted: each read
/// from its own index, each holding at least `skip + take` rows or all of its rows)
/// into rows `skip..skip + take` of their union, newest first (`created_at DESC,
/// id DESC`, the order of both databases), each collection once.
pub fn merge_newest_first(
    branches: impl IntoIterator<Item = Vec<Collection>>,
    skip: usize,
    take: usize,
) -> Vec<Collection> {
    let mut all: Vec<Collection> = branches.into_iter().flatten().collect();
    all.sort_by_key(|c| std::cmp::Reverse((c.created_at, c.id.0)));
    all.dedup_by_key(|c| c.id);
    all.into_iter().skip(skip).take(take).collect()
}

/// Input for [`CollectionRepository::create`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCollection {
    /// Name; surrounding whitespace is trimmed.
    pub name: String,
    /// Owner.
    pub owner_id: UserId,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Defaults to [`DEFAULT_EMBEDDING_MODEL`].
    #[serde(default = "default_embedding_model")]
    pub embedding_model: String,
    /// Defaults to `float16`.
    #[serde(default = "default_quantization")]
    pub quantization: Quantization,
    /// Defaults to 1000.
    #[serde(default = "default_chunk_size")]
    pub chunk_size: i32,
    /// Defaults to 200.
    #[serde(default = "default_chunk_overlap")]
    pub chunk_overlap: i32,
    /// Optional strategy name.
    #[serde(default)]
    pub chunking_strategy: Option<String>,
    /// Optional strategy settings.
    #[serde(default)]
    pub chunking_config: Option<Value>,
    /// Defaults to `false`.
    #[serde(default)]
    pub is_public: bool,
    /// Defaults to `{}`.
    #[serde(default = "crate::serde_fields::empty_object")]
    pub meta: Value,
    /// Defaults to `one_time`.
    #[serde(default = "default_sync_mode")]
    pub sync_mode: SyncMode,
    /// Required (≥ 15) for `continuous`.
    #[serde(default)]
    pub sync_interval_minutes: Option<i32>,
}

fn default_embedding_model() -> String {
    DEFAULT_EMBEDDING_MODEL.to_owned()
}

fn default_quantization() -> Quantization {
    Quantization::Float16
}

fn default_chunk_size() -> i32 {
    1000
}

fn default_chunk_overlap() -> i32 {
    200
}

fn default_sync_mode() -> SyncMode {
    SyncMode::OneTime
}

impl NewCollection {
    /// A collection with every default of docs/domain.md.
    pub fn new(name: impl Into<String>, owner_id: UserId) -> Self {
        Self {
            name: name.into(),
            owner_id,
            description: None,
            embedding_model: default_embedding_model(),
            quantization: default_quantization(),
            chunk_size: default_chunk_size(),
            chunk_overlap: default_chunk_overlap(),
            chunking_strategy: None,
            chunking_config: None,
            is_public: false,
            meta: crate::serde_fields::empty_object(),
            sync_mode: default_sync_mode(),
            sync_interval_minutes: None,
        }
    }

    /// Validates the input and builds the row to insert (status `pending`, zero counts).
    pub fn prepare(&self) -> RepoResult<Collection> {
        let name = validate::collection_name(&self.name)?;
        validate::opt_text(Field::Description, self.description.as_deref())?;
        validate::required_text(Field::EmbeddingModel, &self.embedding_model, 255)?;
        validate::chunking(self.chunk_size, self.chunk_overlap)?;
        validate::opt_text(Field::ChunkingStrategy, self.chunking_strategy.as_deref())?;
        if let Some(c) = &self.chunking_config {
            validate::json(Field::ChunkingConfig, c)?;
        }
        validate::json_object(Field::Meta, &self.meta)?;
        validate_sync(self.sync_mode, self.sync_interval_minutes)?;
        let id = CollectionId::new();
        let now = time::now();
        let next_run = (self.sync_mode == SyncMode::Continuous).then_some(now);
        Ok(Collection {
            id,
            name,
            description: self.description.clone(),
            owner_id: self.owner_id,
            vector_store_name: id.vector_store_name(),
            embedding_model: self.embedding_model.clone(),
            quantization: self.quantization,
            chunk_size: self.chunk_size,
            chunk_overlap: self.chunk_overlap,
            chunking_strategy: self.chunking_strategy.clone(),
            chunking_config: self.chunking_config.clone(),
            is_public: self.is_public,
            meta: self.meta.clone(),
            status: CollectionStatus::Pending,
            status_message: None,
            document_count: 0,
            vector_count: 0,
            total_size_bytes: 0,
            sync_mode: self.sync_mode,
            sync_interval_minutes: self.sync_interval_minutes,
            sync_paused_at: None,
            sync_next_run_at: next_run,
            sync_last_run_started_at: None,
            sync_last_run_completed_at: None,
            sync_last_run_status: None,
            sync_last_error: None,
            created_at: now,
            updated_at: now,
        })
    }
}

fn validate_sync(mode: SyncMode, interval: Option<i32>) -> RepoResult<()> {
    match (mode, interval) {
        (_, Some(m)) if m < MIN_SYNC_INTERVAL_MINUTES => Err(RepoError::validation(
            Field::SyncIntervalMinutes,
            format!("must be at least {MIN_SYNC_INTERVAL_MINUTES}"),
        )),
        (SyncMode::Continuous, None) => Err(RepoError::validation(
            Field::SyncIntervalMinutes,
            "is required for continuous sync",
        )),
        _ => Ok(()),
    }
}

/// Changes for [`CollectionRepository::update`]; `None` leaves a field as it is.
/// Renames go through [`CollectionRepository::rename`], states through
/// [`CollectionRepository::update_status`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectionPatch {
    /// `Some(None)` clears it.
    #[serde(deserialize_with = "crate::serde_fields::clearable")]
    pub description: Option<Option<String>>,
    /// New model.
    pub embedding_model: Option<String>,
    /// New quantization.
    pub quantization: Option<Quantization>,
    /// New chunk size.
    pub chunk_size: Option<i32>,
    /// New overlap.
    pub chunk_overlap: Option<i32>,
    /// `Some(None)` clears it.
    #[serde(deserialize_with = "crate::serde_fields::clearable")]
    pub chunking_strategy: Option<Option<String>>,
    /// `Some(None)` clears it.
    #[serde(deserialize_with = "crate::serde_fields::clearable")]
    pub chunking_config: Option<Option<Value>>,
    /// Public or private.
    pub is_public: Option<bool>,
    /// Replaces the metadata object.
    pub meta: Option<Value>,
    /// New sync mode.
    pub sync_mode: Option<SyncMode>,
    /// `Some(None)` clears it.
    #[serde(deserialize_with = "crate::serde_fields::clearable")]
    pub sync_interval_minutes: Option<Option<i32>>,
}

impl CollectionPatch {
    /// Applies the patch to `current` (validating the result) and returns the new row.
    pub fn apply_to(&self, current: &Collection) -> RepoResult<Collection> {
        let mut next = current.clone();
        if let Some(d) = &self.description {
            validate::opt_text(Field::Description, d.as_deref())?;
            next.description = d.clone();
        }
        if let Some(m) = &self.embedding_model {
            validate::required_text(Field::EmbeddingModel, m, 255)?;
            next.embedding_model = m.clone();
        }
        if let Some(q) = self.quantization {
            next.quantization = q;
        }
        if let Some(s) = self.chunk_size {
            next.chunk_size = s;
        }
        if let Some(o) = self.chunk_overlap {
            next.chunk_overlap = o;
        }
        validate::chunking(next.chunk_size, next.chunk_overlap)?;
        if let Some(s) = &self.chunking_strategy {
            validate::opt_text(Field::ChunkingStrategy, s.as_deref())?;
            next.chunking_strategy = s.clone();
        }
        if let Some(c) = &self.chunking_config {
            if let Some(v) = c {
                validate::json(Field::ChunkingConfig, v)?;
            }
            next.chunking_config = c.clone();
        }
        if let Some(p) = self.is_public {
            next.is_public = p;
        }
        if let Some(m) = &self.meta {
            validate::json_object(Field::Meta, m)?;
            next.meta = m.clone();
        }
        if let Some(mode) = self.sync_mode {
            next.sync_mode = mode;
        }
        if let Some(i) = self.sync_interval_minutes {
            next.sync_interval_minutes = i;
        }
        validate_sync(next.sync_mode, next.sync_interval_minutes)?;
        if next.sync_mode == SyncMode::OneTime {
            next.sync_next_run_at = None;
        } else if current.sync_mode == SyncMode::OneTime {
            next.sync_next_run_at = Some(time::now());
        }
        next.updated_at = time::now();
        Ok(next)
    }
}

/// Absolute values for [`CollectionRepository::update_stats`] (all ≥ 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionStats {
    /// Documents.
    pub document_count: i64,
    /// Vectors.
    pub vector_count: i64,
    /// Bytes.
    pub total_size_bytes: i64,
}

impl CollectionStats {
    /// Checks that every count is non-negative.
    pub fn validate(&self) -> RepoResult<()> {
        validate::non_negative(Field::DocumentCount, self.document_count)?;
        validate::non_negative(Field::VectorCount, self.vector_count)?;
        validate::non_negative(Field::TotalSizeBytes, self.total_size_bytes)
    }
}

/// What [`CollectionRepository::record_sync_run`] stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRun {
    /// Start of the run.
    pub started_at: Timestamp,
    /// End of the run (`None` while running).
    #[serde(default)]
    pub completed_at: Option<Timestamp>,
    /// Outcome.
    pub status: SyncRunStatus,
    /// Error text for failed or partial runs.
    pub error: Option<String>,
}

/// Who a grant is for: exactly one of a user or an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Grantee {
    /// A user.
    User(UserId),
    /// An API key.
    ApiKey(ApiKeyId),
}

/// A grant of access to a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CollectionPermission {
    /// Collection.
    pub collection_id: CollectionId,
    /// Who holds it.
    pub grantee: Grantee,
    /// Level.
    pub permission: AccessLevel,
    /// Creation (or last change) time.
    pub created_at: Timestamp,
}

/// Collections, their grants and access checks.
pub trait CollectionRepository: Send + Sync {
    /// Creates a collection. A taken name is `AlreadyExists { field: Field::Name }`.
    fn create(&self, new: &NewCollection) -> RepoResult<Collection>;
    /// By id, or `NotFound`.
    fn get(&self, id: CollectionId) -> RepoResult<Collection>;
    /// By exact name, or `NotFound`.
    fn get_by_name(&self, name: &str) -> RepoResult<Collection>;
    /// By id if `principal` holds at least `needed` (the rule of [`crate::access`]):
    /// `NotFound` for a missing collection (then a missing user or API key),
    /// `AccessDenied` otherwise.
    fn get_with_access(
        &self,
        id: CollectionId,
        principal: Principal,
        needed: AccessLevel,
    ) -> RepoResult<Collection>;
    /// The level `principal` holds on the collection (`None`: no access, also for a
    /// revoked or expired key).
    fn access_level(
        &self,
        id: CollectionId,
        principal: Principal,
    ) -> RepoResult<Option<AccessLevel>>;
    /// Collections a user owns, can read because public, or holds a grant on; for a
    /// scoped API key, those it holds a grant on and its user can read (and public
    /// ones if its permissions say `"read_public": true`); newest first. A revoked or
    /// expired key, or a key of an inactive user, is `AccessDenied`.
    fn list_visible(&self, principal: Principal, page: PageRequest)
        -> RepoResult<Page<Collection>>;
    /// [`list_visible`](Self::list_visible) by cursor: stable while collections are
    /// created between pages.
    fn list_visible_by_cursor(
        &self,
        principal: Principal,
        page: &CursorRequest,
    ) -> RepoResult<CursorPage<Collection>>;
    /// Applies the patch.
    fn update(&self, id: CollectionId, patch: &CollectionPatch) -> RepoResult<Collection>;
    /// Renames; a taken name is `AlreadyExists { field: Field::Name }`.
    fn rename(&self, id: CollectionId, new_name: &str) -> RepoResult<Collection>;
    /// Moves to `status` if the state machine allows it (atomically), else `InvalidState`.
    fn update_status(
        &self,
        id: CollectionId,
        status: CollectionStatus,
        message: Option<&str>,
    ) -> RepoResult<Collection>;
    /// Sets the counters.
    fn update_stats(&self, id: CollectionId, stats: CollectionStats) -> RepoResult<Collection>;
    /// Deletes the collection and everything in it, if `actor` holds admin on it
    /// (owner, admin grant or superuser; for a scoped key, an admin grant its user
    /// can match).
    fn delete(&self, id: CollectionId, actor: Principal) -> RepoResult<()>;
    /// Continuous, unpaused, `ready` collections whose next run is due at `now`,
    /// oldest due first.
    fn due_for_sync(&self, now: Timestamp, limit: u32) -> RepoResult<Vec<Collection>>;
    /// Pauses continuous sync.
    fn pause_sync(&self, id: CollectionId) -> RepoResult<Collection>;
    /// Resumes sync; the next run is due at `next_run_at`.
    fn resume_sync(&self, id: CollectionId, next_run_at: Timestamp) -> RepoResult<Collection>;
    /// Records a sync run; when it has completed and the collection is continuous, the
    /// next run is scheduled `sync_interval_minutes` after its completion.
    fn record_sync_run(&self, id: CollectionId, run: &SyncRun) -> RepoResult<Collection>;
    /// Grants (or changes) access; unique per (collection, grantee). A grant to an API
    /// key also marks the key scoped (`"scoped": true` in its `permissions`, which
    /// must then be absent or a JSON object, else `Validation`).
    fn grant(
        &self,
        id: CollectionId,
        grantee: Grantee,
        level: AccessLevel,
    ) -> RepoResult<CollectionPermission>;
    /// Removes a grant; `true` if one existed.
    fn revoke_grant(&self, id: CollectionId, grantee: Grantee) -> RepoResult<bool>;
    /// Every grant on the collection.
    fn list_grants(&self, id: CollectionId) -> RepoResult<Vec<CollectionPermission>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::effective_access;
    use crate::enums::AccessLevel::{Admin, Read, Write};

    fn field_of(e: RepoError) -> &'static str {
        match e {
            RepoError::Validation { field, .. } => field.as_str(),
            other => panic!("expected Validation, got {other:?}"),
        }
    }

    #[test]
    fn new_and_deserialized_inputs_carry_the_domain_defaults() {
        let built = NewCollection::new("c", UserId(1));
        let read: NewCollection =
            serde_json::from_value(serde_json::json!({"name": "c", "owner_id": 1})).unwrap();
        for n in [built, read] {
            assert_eq!(n.embedding_model, "Qwen/Qwen3-Embedding-0.6B");
            assert_eq!(n.quantization, Quantization::Float16);
            assert_eq!((n.chunk_size, n.chunk_overlap), (1000, 200));
            assert_eq!(n.sync_mode, SyncMode::OneTime);
            assert!(!n.is_public);
        }
    }

    #[test]
    fn prepare_builds_a_pending_row_and_schedules_only_continuous_sync() {
        let c = NewCollection::new("  c ", UserId(1)).prepare().unwrap();
        assert_eq!(c.name, "c");
        assert_eq!(c.status, CollectionStatus::Pending);
        assert_eq!(c.vector_store_name, c.id.vector_store_name());
        assert_eq!(c.sync_next_run_at, None);
        let mut n = NewCollection::new("c", UserId(1));
        n.sync_mode = SyncMode::Continuous;
        n.sync_interval_minutes = Some(15);
        let c = n.prepare().unwrap();
        assert_eq!(c.sync_next_run_at, Some(c.created_at));
    }

    #[test]
    fn sync_interval_is_at_least_15_and_required_for_continuous() {
        assert_eq!(
            field_of(validate_sync(SyncMode::OneTime, Some(14)).unwrap_err()),
            "sync_interval_minutes"
        );
        assert!(validate_sync(SyncMode::OneTime, Some(15)).is_ok());
        assert!(validate_sync(SyncMode::Continuous, Some(16)).is_ok());
        assert!(validate_sync(SyncMode::OneTime, None).is_ok());
        assert_eq!(
            field_of(validate_sync(SyncMode::Continuous, None).unwrap_err()),
            "sync_interval_minutes"
        );
    }

    #[test]
    fn patch_applies_fields_validates_and_reschedules_sync() {
        let current = NewCollection::new("c", UserId(1)).prepare().unwrap();
        let next = CollectionPatch {
            chunk_size: Some(500),
            chunk_overlap: Some(100),
            is_public: Some(true),
            ..Default::default()
        }
        .apply_to(&current)
        .unwrap();
        assert_eq!(
            (next.chunk_size, next.chunk_overlap, next.is_public),
            (500, 100, true)
        );
        let too_big_overlap = CollectionPatch {
            chunk_overlap: Some(1000),
            ..Default::default()
        };
        assert!(too_big_overlap.apply_to(&current).is_err());
        // one_time → continuous: the next run is due now; continuous → continuous: kept;
        // → one_time: cleared.
        let continuous = CollectionPatch {
            sync_mode: Some(SyncMode::Continuous),
            sync_interval_minutes: Some(Some(30)),
            ..Default::default()
        };
        let mut cont = continuous.apply_to(&current).unwrap();
        assert!(cont.sync_next_run_at.is_some());
        let due = current.created_at;
        cont.sync_next_run_at = Some(due);
        assert_eq!(
            continuous.apply_to(&cont).unwrap().sync_next_run_at,
            Some(due)
        );
        let one_time = CollectionPatch {
            sync_mode: Some(SyncMode::OneTime),
            ..Default::default()
        };
        assert_eq!(one_time.apply_to(&cont).unwrap().sync_next_run_at, None);
    }

    #[test]
    fn sync_pause_resume_and_runs_follow_the_mode() {
        let one_time = NewCollection::new("c", UserId(1)).prepare().unwrap();
        let at = one_time.created_at;
        assert!(matches!(
            one_time.paused(at),
            Err(RepoError::InvalidState { .. })
        ));
        assert!(matches!(
            one_time.resumed(at, at),
            Err(RepoError::InvalidState { .. })
        ));
        let mut n = NewCollection::new("c", UserId(1));
        n.sync_mode = SyncMode::Continuous;
        n.sync_interval_minutes = Some(30);
        let cont = n.prepare().unwrap();
        let paused = cont.paused(at).unwrap().unwrap();
        assert_eq!(paused.sync_paused_at, Some(at));
        assert_eq!(
            paused.paused(at).unwrap(),
            None,
            "pausing twice keeps the first"
        );
        let resumed = paused.resumed(at, at).unwrap();
        assert_eq!(
            (resumed.sync_paused_at, resumed.sync_next_run_at),
            (None, Some(at))
        );
        let run = SyncRun {
            started_at: at,
            completed_at: Some(at),
            status: SyncRunStatus::Success,
            error: None,
        };
        let after = cont.with_sync_run(&run, at).unwrap();
        assert_eq!(
            after.sync_next_run_at,
            Some(at + chrono::Duration::minutes(30))
        );
        let running = SyncRun {
            completed_at: None,
            ..run
        };
        assert_eq!(
            cont.with_sync_run(&running, at).unwrap().sync_next_run_at,
            cont.sync_next_run_at
        );
    }

    #[test]
    fn sync_changes_stamp_updated_at_and_record_the_run() {
        let mut n = NewCollection::new("c", UserId(1));
        n.sync_mode = SyncMode::Continuous;
        n.sync_interval_minutes = Some(30);
        let cont = n.prepare().unwrap();
        let later = cont.created_at + chrono::Duration::seconds(5);
        let paused = cont.paused(later).unwrap().unwrap();
        assert_eq!(paused.updated_at, later);
        let resumed = paused.resumed(later, later + chrono::Duration::seconds(1));
        assert_eq!(
            resumed.unwrap().updated_at,
            later + chrono::Duration::seconds(1)
        );
        let run = SyncRun {
            started_at: later,
            completed_at: Some(later + chrono::Duration::seconds(2)),
            status: SyncRunStatus::Failed,
            error: Some("source unreachable".into()),
        };
        let after = cont
            .with_sync_run(&run, later + chrono::Duration::seconds(3))
            .unwrap();
        assert_eq!(
            (
                after.sync_last_run_started_at,
                after.sync_last_run_completed_at,
                after.sync_last_run_status,
                after.sync_last_error.as_deref(),
                after.updated_at,
            ),
            (
                Some(later),
                Some(later + chrono::Duration::seconds(2)),
                Some(SyncRunStatus::Failed),
                Some("source unreachable"),
                later + chrono::Duration::seconds(3),
            )
        );
    }

    #[test]
    fn merging_listing_branches_keeps_each_collection_once_newest_first() {
        let base = NewCollection::new("c", UserId(1)).prepare().unwrap();
        let created_after = |s: i64, c: Collection| Collection {
            created_at: base.created_at + chrono::Duration::seconds(s),
            ..c
        };
        let [a, b, c] = [1, 2, 3]
            .map(|s| created_after(s, NewCollection::new("c", UserId(1)).prepare().unwrap()));
        let owned = vec![c.clone(), a.clone()];
        let public = vec![c.clone(), b.clone()];
        let ids = |v: Vec<Collection>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(
            ids(merge_newest_first([owned.clone(), public.clone()], 0, 10)),
            vec![c.id, b.id, a.id]
        );
        assert_eq!(ids(merge_newest_first([owned, public], 1, 1)), vec![b.id]);
    }

    #[test]
    fn status_sources_list_the_predecessors() {
        assert_eq!(
            Collection::status_sources(CollectionStatus::Processing, None).unwrap(),
            vec!["pending", "ready", "error"]
        );
        assert!(Collection::status_sources(CollectionStatus::Pending, None)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn stats_are_non_negative() {
        assert!(CollectionStats::default().validate().is_ok());
        for stats in [
            CollectionStats {
                document_count: -1,
                ..Default::default()
            },
            CollectionStats {
                vector_count: -1,
                ..Default::default()
            },
            CollectionStats {
                total_size_bytes: -1,
                ..Default::default()
            },
        ] {
            assert!(stats.validate().is_err(), "{stats:?}");
        }
    }

    #[test]
    fn access_rule_and_its_check() {
        assert_eq!(effective_access(true, false, false, None), Some(Admin));
        assert_eq!(effective_access(false, true, false, None), Some(Admin));
        assert_eq!(effective_access(false, false, false, None), None);
        assert_eq!(effective_access(false, false, true, None), Some(Read));
        assert_eq!(
            effective_access(false, false, true, Some(Write)),
            Some(Write)
        );
        assert_eq!(
            effective_access(false, false, false, Some(Read)),
            Some(Read)
        );
        let c = NewCollection::new("c", UserId(1)).prepare().unwrap();
        assert!(require_access(c.id, Some(Write), Read).is_ok());
        assert!(require_access(c.id, Some(Write), Write).is_ok());
        assert!(matches!(
            require_access(c.id, Some(Read), Write),
            Err(RepoError::AccessDenied { .. })
        ));
        assert!(require_access(c.id, None, Read).is_err());
    }
}
