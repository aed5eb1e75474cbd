//! Background operations on collections.

use crate::access::Principal;
use crate::enums::{AccessLevel, OperationKind, OperationStatus};
use crate::error::{Field, RepoResult};
use crate::ids::{CollectionId, OperationUuid, UserId};
use crate::page::{Cursor, CursorPage, CursorRequest, Page, PageRequest};
use crate::time::{self, Timestamp};
use crate::validate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A unit of background work on a collection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Operation {
    /// Internal id.
    pub id: i64,
    /// External id.
    pub uuid: OperationUuid,
    /// Collection it works on.
    pub collection_id: CollectionId,
    /// Who created it.
    pub user_id: UserId,
    /// What it does.
    pub kind: OperationKind,
    /// Where it is.
    pub status: OperationStatus,
    /// Task-queue id.
    pub task_id: Option<String>,
    /// Client token that made its creation idempotent (unique per collection).
    pub idempotency_key: Option<String>,
    /// Non-empty configuration object.
    pub config: Value,
    /// Error of a failed operation.
    pub error_message: Option<String>,
    /// Free-form metadata object.
    pub meta: Value,
    /// Creation time.
    pub created_at: Timestamp,
    /// Entered `processing`.
    pub started_at: Option<Timestamp>,
    /// Entered a terminal state.
    pub completed_at: Option<Timestamp>,
}

/// Input for [`OperationRepository::create`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOperation {
    /// Collection.
    pub collection_id: CollectionId,
    /// Creator.
    pub user_id: UserId,
    /// Kind.
    pub kind: OperationKind,
    /// Non-empty JSON object.
    pub config: Value,
    /// Defaults to `{}`.
    #[serde(default = "crate::serde_fields::empty_object")]
    pub meta: Value,
    /// Optional task-queue id.
    pub task_id: Option<String>,
    /// Optional client token, unique per collection
    /// ([`validate::idempotency_key`]): a create that finds an operation with the same
    /// key in the collection returns that operation instead of inserting.
    pub idempotency_key: Option<String>,
}

impl NewOperation {
    /// A pending operation with empty metadata.
    pub fn new(
        collection_id: CollectionId,
        user_id: UserId,
        kind: OperationKind,
        config: Value,
    ) -> Self {
        Self {
            collection_id,
            user_id,
            kind,
            config,
            meta: Value::Object(Default::default()),
            task_id: None,
            idempotency_key: None,
        }
    }

    /// The same input with an idempotency key (see [`OperationRepository::create`]).
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Validates the input and builds the row to insert (`id` is 0 until stored).
    pub fn prepare(&self) -> RepoResult<Operation> {
        validate::non_empty_json_object(Field::Config, &self.config)?;
        validate::json_object(Field::Meta, &self.meta)?;
        validate::opt_text(Field::TaskId, self.task_id.as_deref())?;
        if let Some(key) = &self.idempotency_key {
            validate::idempotency_key(key)?;
        }
        Ok(Operation {
            id: 0,
            uuid: OperationUuid::new(),
            collection_id: self.collection_id,
            user_id: self.user_id,
            kind: self.kind,
            status: OperationStatus::Pending,
            task_id: self.task_id.clone(),
            idempotency_key: self.idempotency_key.clone(),
            config: self.config.clone(),
            error_message: None,
            meta: self.meta.clone(),
            created_at: time::now(),
            started_at: None,
            completed_at: None,
        })
    }
}

impl Operation {
    /// This operation's position in a newest-first cursor listing.
    pub fn cursor(&self) -> Cursor {
        Cursor::after_int(self.created_at, self.id)
    }
}

/// Filters for operation listings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OperationFilter {
    /// Only these states (empty: all).
    pub statuses: Vec<OperationStatus>,
    /// Only this kind.
    pub kind: Option<OperationKind>,
}

/// Operations and their state machine.
pub trait OperationRepository: Send + Sync {
    /// Creates a pending operation. While the collection has an active operation this
    /// is `Conflict { reason: ActiveOperation }` (enforced by a partial unique index).
    ///
    /// With an [`idempotency_key`](NewOperation::idempotency_key) that an operation of
    /// the same collection already carries, nothing is inserted and that operation is
    /// returned as it is now, whatever its state (even terminal, and even while it is
    /// the collection's active operation: no `Conflict`); the other fields of `new` are
    /// not compared. Two creators racing with the same key get the same operation, so a
    /// create whose outcome is unknown (a lost connection) can be retried safely.
    fn create(&self, new: &NewOperation) -> RepoResult<Operation>;
    /// The newest operation whose task-queue id is `task_id`, or `NotFound`.
    fn get_by_task_id(&self, task_id: &str) -> RepoResult<Operation>;
    /// By external id, or `NotFound`.
    fn get(&self, uuid: OperationUuid) -> RepoResult<Operation>;
    /// By external id if `principal` holds at least `needed` on its collection.
    fn get_with_access(
        &self,
        uuid: OperationUuid,
        principal: Principal,
        needed: AccessLevel,
    ) -> RepoResult<Operation>;
    /// One atomic conditional update to `to`; from a state that does not allow it,
    /// `InvalidState { current, attempted }`. Sets `started_at` on entering
    /// `processing` and `completed_at` on entering a terminal state; `error_message`
    /// is stored when given.
    fn transition(
        &self,
        uuid: OperationUuid,
        to: OperationStatus,
        error_message: Option<&str>,
    ) -> RepoResult<Operation>;
    /// Cancels, if `actor` created it (a user, or an unscoped key of that user), or
    /// holds write on its collection (owner, write grant, superuser; for a scoped
    /// key, its capped grant).
    fn cancel(&self, uuid: OperationUuid, actor: Principal) -> RepoResult<Operation>;
    /// Sets the task-queue id.
    fn set_task_id(&self, uuid: OperationUuid, task_id: &str) -> RepoResult<Operation>;
    /// Operations of a collection, newest first.
    fn list_for_collection(
        &self,
        collection_id: CollectionId,
        filter: &OperationFilter,
        page: PageRequest,
    ) -> RepoResult<Page<Operation>>;
    /// Operations created by a user, newest first.
    fn list_for_user(
        &self,
        user_id: UserId,
        filter: &OperationFilter,
        page: PageRequest,
    ) -> RepoResult<Page<Operation>>;
    /// [`list_for_collection`](Self::list_for_collection) by cursor: stable while
    /// operations are created between pages.
    fn list_for_collection_by_cursor(
        &self,
        collection_id: CollectionId,
        filter: &OperationFilter,
        page: &CursorRequest,
    ) -> RepoResult<CursorPage<Operation>>;
    /// [`list_for_user`](Self::list_for_user) by cursor: stable while operations are
    /// created between pages.
    fn list_for_user_by_cursor(
        &self,
        user_id: UserId,
        filter: &OperationFilter,
        page: &CursorRequest,
    ) -> RepoResult<CursorPage<Operation>>;
    /// Pending or processing operations of a collection.
    fn active_for_collection(&self, collection_id: CollectionId) -> RepoResult<Vec<Operation>>;
    /// Active operations created before `older_than`, oldest first.
    fn stuck(&self, older_than: Timestamp) -> RepoResult<Vec<Operation>>;
    /// Moves every listed operation that is still active to `failed` with `message`;
    /// returns how many moved.
    fn mark_failed_many(&self, uuids: &[OperationUuid], message: &str) -> RepoResult<u64>;
    /// Merges the keys of `patch` (a JSON object) into `meta`, top level.
    fn merge_meta(&self, uuid: OperationUuid, patch: &Value) -> RepoResult<Operation>;
}
