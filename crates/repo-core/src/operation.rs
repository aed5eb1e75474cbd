//! Background operations on collections, and their rules in one place:
//!
//! - the status machine ([`OperationStatus::can_transition_to`]): `pending` →
//!   `processing` | `failed` | `cancelled`; `processing` → `completed` | `failed` |
//!   `cancelled`; terminal states never change;
//! - what a transition writes ([`TransitionPlan`]): `started_at` on entering
//!   `processing`, `completed_at` on entering a terminal state, the error message when
//!   given. A backend turns the plan into one conditional `UPDATE … WHERE status IN
//!   (plan.from)`, and a refused plan into [`TransitionPlan::refused`];
//! - who may cancel ([`Operation::check_cancel`]);
//! - how `meta` is merged ([`merge_meta`]).
//!
//! The repository trait is [`OperationRepository`]; both backends implement it in their
//! `operations.rs` (the Diesel code they share is in `repo-diesel`'s `operations.rs`),
//! and the behaviour suite tests it in `repo-behaviour`'s `operations.rs`.

use crate::access::require_access;
use crate::access::{Actor, Principal};
use crate::collection::Collection;
use crate::enums::{AccessLevel, OperationKind, OperationStatus};
use crate::error::{Field, RepoError, RepoResult};
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

    /// The cancel-rights rule: `actor` may cancel this operation if it created it (a
    /// user, or an unscoped key of that user: [`Actor::is_creator_of`]), or holds write
    /// on its collection (`level`, the actor's level on `collection`: owner, write
    /// grant, superuser; for a scoped key, its capped grant). Else `AccessDenied`.
    pub fn check_cancel(
        &self,
        actor: &Actor,
        collection: &Collection,
        level: Option<AccessLevel>,
    ) -> RepoResult<()> {
        if actor.is_creator_of(self.user_id) {
            return Ok(());
        }
        require_access(collection.id, level, AccessLevel::Write)
    }
}

impl OperationStatus {
    /// Whether no transition leaves this state.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// Whether the operation counts as active (at most one per collection).
    pub fn is_active(self) -> bool {
        matches!(self, Self::Pending | Self::Processing)
    }

    /// The active states (see [`is_active`](Self::is_active)), in declaration order.
    pub fn active() -> Vec<OperationStatus> {
        Self::ALL
            .iter()
            .copied()
            .filter(|s| s.is_active())
            .collect()
    }

    /// Whether `self → next` is an allowed transition.
    pub fn can_transition_to(self, next: OperationStatus) -> bool {
        use OperationStatus::*;
        matches!(
            (self, next),
            (Pending, Processing | Failed | Cancelled)
                | (Processing, Completed | Failed | Cancelled)
        )
    }

    /// The states from which `next` may be entered.
    pub fn predecessors(next: OperationStatus) -> Vec<OperationStatus> {
        Self::ALL
            .iter()
            .copied()
            .filter(|s| s.can_transition_to(next))
            .collect()
    }
}

/// What a transition to [`to`](Self::to) writes, decided here for both backends: a
/// backend runs it as one atomic conditional update, `SET status = to, started_at =
/// …, completed_at = …, error_message = … WHERE uuid = ? AND status IN (from)`, where a
/// `None` column is left as it is. When no row changes, a re-read tells `NotFound`
/// from [`refused`](Self::refused).
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionPlan<'a> {
    /// The state entered.
    pub to: OperationStatus,
    /// The states it may be entered from ([`OperationStatus::predecessors`]); empty
    /// when no transition enters `to` (then no update runs).
    pub from: Vec<OperationStatus>,
    /// `Some(at)` on entering `processing`.
    pub started_at: Option<Timestamp>,
    /// `Some(at)` on entering a terminal state.
    pub completed_at: Option<Timestamp>,
    /// The error message to store, when given.
    pub error_message: Option<&'a str>,
}

impl<'a> TransitionPlan<'a> {
    /// The plan of a transition to `to` at `at`; an `error_message` with a NUL or too
    /// long is `Validation { error_message }`.
    pub fn new(
        to: OperationStatus,
        error_message: Option<&'a str>,
        at: Timestamp,
    ) -> RepoResult<Self> {
        validate::opt_text(Field::ErrorMessage, error_message)?;
        Ok(Self {
            to,
            from: OperationStatus::predecessors(to),
            started_at: (to == OperationStatus::Processing).then_some(at),
            completed_at: to.is_terminal().then_some(at),
            error_message,
        })
    }

    /// Whether any state may enter `to` (else the update is skipped).
    pub fn is_possible(&self) -> bool {
        !self.from.is_empty()
    }

    /// The names of [`from`](Self::from), as stored in the `status` column.
    pub fn from_names(&self) -> Vec<&'static str> {
        self.from.iter().map(|s| s.as_str()).collect()
    }

    /// The error of a plan the row's `current` state refused.
    pub fn refused(&self, current: OperationStatus) -> RepoError {
        RepoError::invalid_state(current, self.to)
    }
}

/// `current` with the top-level keys of `patch` (a JSON object) set; a `current` that
/// is not an object counts as `{}`.
pub fn merge_meta(current: Value, patch: &Value) -> Value {
    let mut meta = match current {
        Value::Object(map) => map,
        _ => Default::default(),
    };
    if let Value::Object(extra) = patch {
        for (key, value) in extra {
            meta.insert(key.clone(), value.clone());
        }
    }
    Value::Object(meta)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::NewCollection;
    use serde_json::json;
    use OperationStatus::*;

    #[test]
    fn operation_machine() {
        let predecessors = OperationStatus::predecessors;
        assert_eq!(predecessors(Processing), vec![Pending]);
        assert_eq!(predecessors(Completed), vec![Processing]);
        assert_eq!(predecessors(Cancelled), vec![Pending, Processing]);
        assert!(predecessors(Pending).is_empty());
        assert_eq!(OperationStatus::active(), vec![Pending, Processing]);
    }

    #[test]
    fn operation_terminal_and_active_states() {
        for s in OperationStatus::ALL {
            let terminal = matches!(s, Completed | Failed | Cancelled);
            assert_eq!(s.is_terminal(), terminal, "{s} terminal");
            assert_eq!(s.is_active(), !terminal, "{s} active");
            if terminal {
                assert!(OperationStatus::ALL
                    .iter()
                    .all(|n| !s.can_transition_to(*n)));
            }
        }
    }

    #[test]
    fn transition_plan_sets_the_timestamps_of_the_state_entered() {
        let at = crate::now();
        for to in OperationStatus::ALL {
            let plan = TransitionPlan::new(*to, Some("why"), at).unwrap();
            assert_eq!(plan.from, OperationStatus::predecessors(*to));
            assert_eq!(plan.is_possible(), *to != Pending);
            assert_eq!(plan.started_at, (*to == Processing).then_some(at));
            assert_eq!(plan.completed_at, to.is_terminal().then_some(at));
            assert_eq!(plan.error_message, Some("why"));
            let names: Vec<&str> = plan.from.iter().map(|s| s.as_str()).collect();
            assert_eq!(plan.from_names(), names);
        }
        let cancel = TransitionPlan::new(Cancelled, None, at).unwrap();
        assert_eq!(cancel.from_names(), vec!["pending", "processing"]);
        assert!(TransitionPlan::new(Failed, Some("a\0b"), at).is_err());
        let refused = TransitionPlan::new(Processing, None, at)
            .unwrap()
            .refused(Completed);
        assert!(
            matches!(refused, RepoError::InvalidState { .. }),
            "{refused:?}"
        );
    }

    #[test]
    fn cancel_rights() {
        let op = NewOperation::new(
            CollectionId::new(),
            UserId(1),
            OperationKind::Index,
            json!({"a": 1}),
        )
        .prepare()
        .unwrap();
        let c = NewCollection::new("c", UserId(2)).prepare().unwrap();
        let user = |id| Actor::User {
            user: UserId(id),
            is_superuser: false,
        };
        assert!(op.check_cancel(&user(1), &c, None).is_ok(), "creator");
        assert!(
            op.check_cancel(&user(3), &c, Some(AccessLevel::Write))
                .is_ok(),
            "writer"
        );
        assert!(
            op.check_cancel(&user(3), &c, Some(AccessLevel::Read))
                .is_err(),
            "reader"
        );
        let scoped = Actor::Scoped {
            user: UserId(1),
            is_superuser: false,
            read_public: false,
        };
        assert!(
            op.check_cancel(&scoped, &c, Some(AccessLevel::Read))
                .is_err(),
            "scoped creator key"
        );
        assert!(
            op.check_cancel(&scoped, &c, Some(AccessLevel::Write))
                .is_ok(),
            "scoped writer key"
        );
        assert!(op.check_cancel(&Actor::Denied, &c, None).is_err(), "denied");
    }

    #[test]
    fn meta_merges_top_level_keys() {
        assert_eq!(
            merge_meta(json!({"a": 1, "b": {"x": 1}}), &json!({"b": 2, "c": 3})),
            json!({"a": 1, "b": 2, "c": 3})
        );
        assert_eq!(merge_meta(json!([1]), &json!({"c": 3})), json!({"c": 3}));
    }
}
