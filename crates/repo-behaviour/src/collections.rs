//! Collections: defaults, validation, lookups, patches, status machine, stats,
//! deletion, and continuous sync scheduling.

use crate::expect;
use crate::seed;
use crate::Harness;
use chrono::Duration;
use repo_core::{
    AccessLevel, Attempt, CollectionId, CollectionPatch, CollectionStats, CollectionStatus, Entity,
    Field, NewCollection, OperationKind, Quantization, SyncMode, SyncRun, SyncRunStatus, UserId,
    DEFAULT_EMBEDDING_MODEL,
};
use serde_json::json;

/// This module's behaviours, one a line: [`behaviour_tests!`](crate::behaviour_tests)
/// runs each on every topology. A `pub fn` of this module missing here fails
/// `every_behaviour_is_listed`.
#[doc(hidden)]
#[macro_export]
macro_rules! __collections_behaviours {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            collections::collection_create_applies_defaults,
            collections::collection_reads_back_equal,
            collections::collection_name_is_unique,
            collections::collection_name_is_validated,
            collections::collection_chunk_size_must_be_positive,
            collections::collection_chunk_overlap_must_be_below_chunk_size,
            collections::collection_sync_interval_is_at_least_15,
            collections::collection_continuous_requires_interval,
            collections::collection_meta_and_text_are_validated,
            collections::collection_create_for_unknown_owner_is_not_found,
            collections::collection_lookup_of_unknown_is_not_found,
            collections::collection_update_applies_patch,
            collections::collection_update_is_validated,
            collections::collection_rename,
            collections::collection_update_stats,
            collections::collection_status_allowed_transitions,
            collections::collection_status_forbidden_transitions_are_invalid_state,
            collections::collection_delete_by_owner_cascades,
            collections::collection_delete_by_admin_grant_or_superuser,
            collections::collection_delete_without_admin_is_access_denied,
            collections::collection_delete_unknown_is_not_found,
            collections::collection_due_for_sync,
            collections::collection_pause_and_resume_sync,
            collections::collection_record_sync_run_schedules_next_run,
            collections::collection_racing_status_updates_exactly_one_wins,
            collections::collection_racing_creators_exactly_one_wins,
            collections::collection_due_for_sync_ties_break_by_id,
            collections::collection_timestamps_round_trip_exactly,
            collections::collection_json_round_trips_exactly,
            collections::collection_lookup_with_nul_is_validation,
            collections::collection_writes_refuse_nul_and_overlong_text,
        }
    };
}

/// A new collection has the defaults of docs/domain.md: model, float16, 1000/200, pending, private, `{}` meta, zero counts, one-time sync, `vector_store_name = col_<id with _>`.
pub fn collection_create_applies_defaults(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "alice");
    let before = repo_core::now();
    let c = expect::ok(
        s.collections()
            .create(&NewCollection::new("  Docs  ", owner.id)),
        "create",
    );
    let after = repo_core::now();
    assert_eq!(c.name, "Docs", "name is trimmed");
    assert_eq!(c.owner_id, owner.id);
    assert_eq!(c.embedding_model, DEFAULT_EMBEDDING_MODEL);
    assert_eq!(c.embedding_model, "Qwen/Qwen3-Embedding-0.6B");
    assert_eq!(c.quantization, Quantization::Float16);
    assert_eq!((c.chunk_size, c.chunk_overlap), (1000, 200));
    assert_eq!(c.status, CollectionStatus::Pending);
    assert_eq!(c.status_message, None);
    assert!(!c.is_public);
    assert_eq!(c.meta, json!({}));
    assert_eq!(
        (c.document_count, c.vector_count, c.total_size_bytes),
        (0, 0, 0)
    );
    assert_eq!(c.sync_mode, SyncMode::OneTime);
    assert_eq!(c.sync_interval_minutes, None);
    assert_eq!(c.sync_next_run_at, None);
    assert_eq!(c.sync_paused_at, None);
    assert_eq!(c.sync_last_run_status, None);
    assert_eq!(c.description, None);
    assert_eq!(c.chunking_strategy, None);
    assert_eq!(c.chunking_config, None);
    let expected_vs = format!("col_{}", c.id.0.hyphenated().to_string().replace('-', "_"));
    assert_eq!(c.vector_store_name, expected_vs);
    assert!(!c.vector_store_name.contains('-'));
    assert_eq!(c.created_at, c.updated_at);
    assert!(before <= c.created_at && c.created_at <= after);
}

/// A collection with every field set reads back equal, to the microsecond, by id and by name.
pub fn collection_reads_back_equal(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "bob");
    let mut new = NewCollection::new("Research Papers", owner.id);
    new.description = Some("PDFs – ünïcode ✓".into());
    new.embedding_model = "BAAI/bge-small-en".into();
    new.quantization = Quantization::Int8;
    new.chunk_size = 512;
    new.chunk_overlap = 64;
    new.chunking_strategy = Some("recursive".into());
    new.chunking_config = Some(json!({"separators": ["\n\n", "\n"], "keep": true}));
    new.is_public = true;
    new.meta = json!({"team": "search", "nested": {"n": [1, 2.5, null]}});
    new.sync_mode = SyncMode::Continuous;
    new.sync_interval_minutes = Some(30);
    let c = expect::ok(s.collections().create(&new), "create");
    assert_eq!(
        c.sync_next_run_at,
        Some(c.created_at),
        "continuous sync is due at once"
    );
    assert_eq!(expect::ok(s.collections().get(c.id), "get"), c);
    assert_eq!(
        expect::ok(
            s.collections().get_by_name("Research Papers"),
            "get_by_name"
        ),
        c
    );
}

/// Collection names are globally unique after trimming: `AlreadyExists { collection, name }`, also for another owner.
pub fn collection_name_is_unique(h: &dyn Harness) {
    let s = h.store();
    let a = seed::user(&*s, "carol");
    let b = seed::user(&*s, "dan");
    seed::collection(&*s, &a, "shared");
    for (owner, name) in [(&a, "shared"), (&a, "  shared "), (&b, "shared")] {
        expect::already_exists(
            s.collections().create(&NewCollection::new(name, owner.id)),
            Entity::Collection,
            Field::Name,
            &format!("name {name:?}"),
        );
    }
    expect::ok(
        s.collections().create(&NewCollection::new("Shared", b.id)),
        "names are case-sensitive",
    );
}

/// A blank or NUL-containing name is `Validation { name }`.
pub fn collection_name_is_validated(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "eve");
    for bad in ["", "   ", "a\0b"] {
        expect::validation(
            s.collections().create(&NewCollection::new(bad, owner.id)),
            Field::Name,
            &format!("name {bad:?}"),
        );
    }
}

/// `chunk_size` must be positive: 0 and -1 are `Validation { chunk_size }`.
pub fn collection_chunk_size_must_be_positive(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "fred");
    for size in [0, -1] {
        let mut new = NewCollection::new("c", owner.id);
        new.chunk_size = size;
        new.chunk_overlap = 0;
        expect::validation(
            s.collections().create(&new),
            Field::ChunkSize,
            "bad chunk_size",
        );
    }
}

/// `0 <= chunk_overlap < chunk_size`, else `Validation { chunk_overlap }`.
pub fn collection_chunk_overlap_must_be_below_chunk_size(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "gail");
    for overlap in [100, 101, -1] {
        let mut new = NewCollection::new("c", owner.id);
        new.chunk_size = 100;
        new.chunk_overlap = overlap;
        expect::validation(
            s.collections().create(&new),
            Field::ChunkOverlap,
            &format!("overlap {overlap} with size 100"),
        );
    }
    for (i, overlap) in [0, 99].into_iter().enumerate() {
        let mut new = NewCollection::new(format!("ok{i}"), owner.id);
        new.chunk_size = 100;
        new.chunk_overlap = overlap;
        expect::ok(s.collections().create(&new), "valid overlap");
    }
}

/// A sync interval below 15 minutes is `Validation { sync_interval_minutes }`; 15 is accepted.
pub fn collection_sync_interval_is_at_least_15(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "hal");
    let with = |name: &str, mode, minutes| {
        let mut new = NewCollection::new(name, owner.id);
        new.sync_mode = mode;
        new.sync_interval_minutes = minutes;
        s.collections().create(&new)
    };
    expect::validation(
        with("a", SyncMode::Continuous, Some(14)),
        Field::SyncIntervalMinutes,
        "continuous 14",
    );
    expect::validation(
        with("b", SyncMode::OneTime, Some(0)),
        Field::SyncIntervalMinutes,
        "one-time 0",
    );
    let c = expect::ok(with("c", SyncMode::Continuous, Some(15)), "continuous 15");
    assert_eq!(c.sync_interval_minutes, Some(15));
}

/// Continuous sync without an interval is `Validation { sync_interval_minutes }`.
pub fn collection_continuous_requires_interval(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "ian");
    let mut new = NewCollection::new("c", owner.id);
    new.sync_mode = SyncMode::Continuous;
    expect::validation(
        s.collections().create(&new),
        Field::SyncIntervalMinutes,
        "continuous without interval",
    );
}

/// `meta` must be a JSON object, and no text or JSON may hold NUL: `Validation` naming the field.
pub fn collection_meta_and_text_are_validated(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "jill");
    let mut new = NewCollection::new("c", owner.id);
    new.meta = json!([1, 2]);
    expect::validation(s.collections().create(&new), Field::Meta, "array meta");
    new.meta = json!({"k": "a\u{0}b"});
    expect::validation(s.collections().create(&new), Field::Meta, "NUL in meta");
    let mut new = NewCollection::new("c", owner.id);
    new.description = Some("a\0b".into());
    expect::validation(
        s.collections().create(&new),
        Field::Description,
        "NUL in description",
    );
    let mut new = NewCollection::new("c", owner.id);
    new.chunking_config = Some(json!({"sep": "\u{0}"}));
    expect::validation(
        s.collections().create(&new),
        Field::ChunkingConfig,
        "NUL in chunking_config",
    );
    let mut new = NewCollection::new("c", owner.id);
    new.embedding_model = "  ".into();
    expect::validation(
        s.collections().create(&new),
        Field::EmbeddingModel,
        "blank model",
    );
    expect::not_found(
        s.collections().get_by_name("c"),
        Entity::Collection,
        "nothing created",
    );
}

/// A collection for an unknown owner is `NotFound { user }`.
pub fn collection_create_for_unknown_owner_is_not_found(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "kurt");
    expect::not_found(
        s.collections()
            .create(&NewCollection::new("c", UserId(u.id.0 + 1000))),
        Entity::User,
        "unknown owner",
    );
}

/// Looking up an unknown collection by id or name is `NotFound { collection }`; names are exact.
pub fn collection_lookup_of_unknown_is_not_found(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "lara");
    seed::collection(&*s, &owner, "Exact");
    expect::not_found(
        s.collections().get(CollectionId::new()),
        Entity::Collection,
        "id",
    );
    expect::not_found(
        s.collections().get_by_name("nope"),
        Entity::Collection,
        "name",
    );
    expect::not_found(
        s.collections().get_by_name("exact"),
        Entity::Collection,
        "other case",
    );
}

/// An update changes only the patched fields (`Some(None)` clears), sets `updated_at`, and reads back equal.
pub fn collection_update_applies_patch(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "mona");
    let mut new = NewCollection::new("c", owner.id);
    new.description = Some("old".into());
    new.chunking_strategy = Some("fixed".into());
    let c = seed::create_collection(&*s, &new);
    let patch = CollectionPatch {
        description: Some(None),
        is_public: Some(true),
        meta: Some(json!({"v": 2})),
        quantization: Some(Quantization::Float32),
        chunk_size: Some(800),
        chunk_overlap: Some(100),
        ..CollectionPatch::default()
    };
    let u = expect::ok(s.collections().update(c.id, &patch), "update");
    assert_eq!(u.description, None, "Some(None) clears");
    assert!(u.is_public);
    assert_eq!(u.meta, json!({"v": 2}));
    assert_eq!(u.quantization, Quantization::Float32);
    assert_eq!((u.chunk_size, u.chunk_overlap), (800, 100));
    assert_eq!(
        u.chunking_strategy.as_deref(),
        Some("fixed"),
        "untouched field kept"
    );
    assert_eq!(u.name, c.name);
    assert_eq!(u.status, c.status);
    assert_eq!(u.created_at, c.created_at);
    assert!(u.updated_at > c.updated_at, "updated_at must move forward");
    assert_eq!(expect::ok(s.collections().get(c.id), "get"), u);

    let to_continuous = CollectionPatch {
        sync_mode: Some(SyncMode::Continuous),
        sync_interval_minutes: Some(Some(60)),
        ..CollectionPatch::default()
    };
    let u = expect::ok(
        s.collections().update(c.id, &to_continuous),
        "to continuous",
    );
    assert_eq!(u.sync_mode, SyncMode::Continuous);
    assert!(
        u.sync_next_run_at.is_some(),
        "switching to continuous schedules a run"
    );
    assert_eq!(expect::ok(s.collections().get(c.id), "get"), u);

    let to_one_time = CollectionPatch {
        sync_mode: Some(SyncMode::OneTime),
        sync_interval_minutes: Some(None),
        ..CollectionPatch::default()
    };
    let u = expect::ok(s.collections().update(c.id, &to_one_time), "to one-time");
    assert_eq!(
        u.sync_next_run_at, None,
        "one-time collections have no next run"
    );
    assert_eq!(u.sync_interval_minutes, None);
    assert_eq!(expect::ok(s.collections().get(c.id), "get"), u);
}

/// A patch whose result breaks a rule is `Validation` and changes nothing; an unknown id is `NotFound`.
pub fn collection_update_is_validated(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "ned");
    let c = seed::collection(&*s, &owner, "c");
    let cases = [
        (
            Field::ChunkOverlap,
            CollectionPatch {
                chunk_size: Some(150),
                ..CollectionPatch::default()
            },
        ),
        (
            Field::ChunkSize,
            CollectionPatch {
                chunk_size: Some(0),
                ..CollectionPatch::default()
            },
        ),
        (
            Field::SyncIntervalMinutes,
            CollectionPatch {
                sync_mode: Some(SyncMode::Continuous),
                ..CollectionPatch::default()
            },
        ),
        (
            Field::Meta,
            CollectionPatch {
                meta: Some(json!("text")),
                ..CollectionPatch::default()
            },
        ),
        (
            Field::Description,
            CollectionPatch {
                description: Some(Some("\0".into())),
                ..CollectionPatch::default()
            },
        ),
    ];
    for (field, patch) in &cases {
        expect::validation(s.collections().update(c.id, patch), *field, field.as_str());
    }
    assert_eq!(expect::ok(s.collections().get(c.id), "unchanged"), c);
    expect::not_found(
        s.collections()
            .update(CollectionId::new(), &CollectionPatch::default()),
        Entity::Collection,
        "unknown id",
    );
}

/// Rename trims the new name; onto a taken name it is `AlreadyExists { collection, name }`; blank is `Validation`.
pub fn collection_rename(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "olive");
    let a = seed::collection(&*s, &owner, "alpha");
    let b = seed::collection(&*s, &owner, "beta");
    let renamed = expect::ok(s.collections().rename(a.id, "  gamma "), "rename");
    assert_eq!(renamed.name, "gamma");
    assert_eq!(
        expect::ok(s.collections().get_by_name("gamma"), "new name"),
        renamed
    );
    expect::not_found(
        s.collections().get_by_name("alpha"),
        Entity::Collection,
        "old name",
    );
    expect::already_exists(
        s.collections().rename(b.id, "gamma"),
        Entity::Collection,
        Field::Name,
        "rename onto taken name",
    );
    expect::validation(
        s.collections().rename(b.id, "   "),
        Field::Name,
        "blank name",
    );
    assert_eq!(expect::ok(s.collections().get(b.id), "unchanged"), b);
    let same = expect::ok(
        s.collections().rename(b.id, "beta"),
        "rename onto its own name",
    );
    assert_eq!(same.name, "beta");
    expect::not_found(
        s.collections().rename(CollectionId::new(), "delta"),
        Entity::Collection,
        "rename unknown",
    );
}

/// `update_stats` sets the three counters; a negative one is `Validation` naming it.
pub fn collection_update_stats(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "pam");
    let c = seed::collection(&*s, &owner, "c");
    let stats = CollectionStats {
        document_count: 12,
        vector_count: 3400,
        total_size_bytes: 5_000_000_000,
    };
    let u = expect::ok(s.collections().update_stats(c.id, stats), "update_stats");
    assert_eq!(
        (u.document_count, u.vector_count, u.total_size_bytes),
        (12, 3400, 5_000_000_000)
    );
    assert_eq!(expect::ok(s.collections().get(c.id), "get"), u);
    for (field, bad) in [
        (
            Field::DocumentCount,
            CollectionStats {
                document_count: -1,
                ..stats
            },
        ),
        (
            Field::VectorCount,
            CollectionStats {
                vector_count: -1,
                ..stats
            },
        ),
        (
            Field::TotalSizeBytes,
            CollectionStats {
                total_size_bytes: -1,
                ..stats
            },
        ),
    ] {
        expect::validation(
            s.collections().update_stats(c.id, bad),
            field,
            field.as_str(),
        );
    }
    assert_eq!(expect::ok(s.collections().get(c.id), "unchanged"), u);
    expect::not_found(
        s.collections().update_stats(CollectionId::new(), stats),
        Entity::Collection,
        "unknown",
    );
}

/// Status moves pending → processing → ready | error and ready/error → processing, storing the message.
pub fn collection_status_allowed_transitions(h: &dyn Harness) {
    use CollectionStatus::*;
    let s = h.store();
    let owner = seed::user(&*s, "quincy");
    let c = seed::collection(&*s, &owner, "c");
    for (to, msg) in [
        (Processing, Some("indexing")),
        (Ready, None),
        (Processing, Some("re-indexing")),
        (Error, Some("embedding service down")),
        (Processing, None),
        (Ready, Some("done")),
    ] {
        let u = expect::ok(
            s.collections().update_status(c.id, to, msg),
            &format!("move to {to}"),
        );
        assert_eq!(u.status, to);
        assert_eq!(
            u.status_message.as_deref(),
            msg,
            "status_message after {to}"
        );
        assert_eq!(expect::ok(s.collections().get(c.id), "get"), u);
    }
}

/// Every transition the status machine forbids is `InvalidState { current, attempted }` and changes nothing.
pub fn collection_status_forbidden_transitions_are_invalid_state(h: &dyn Harness) {
    use CollectionStatus::*;
    let s = h.store();
    let owner = seed::user(&*s, "rick");
    let c = seed::collection(&*s, &owner, "c");
    let forbid = |from: CollectionStatus, targets: &[CollectionStatus]| {
        let before = expect::ok(s.collections().get(c.id), "get");
        assert_eq!(before.status, from);
        for to in targets {
            expect::invalid_state(
                s.collections().update_status(c.id, *to, Some("x")),
                from,
                *to,
                &format!("{from} -> {to}"),
            );
        }
        assert_eq!(
            expect::ok(s.collections().get(c.id), "get"),
            before,
            "changed"
        );
    };
    let go = |to| {
        expect::ok(
            s.collections().update_status(c.id, to, None),
            "allowed move",
        );
    };
    forbid(Pending, &[Pending, Ready, Error]);
    go(Processing);
    forbid(Processing, &[Pending, Processing]);
    go(Ready);
    forbid(Ready, &[Pending, Ready, Error]);
    go(Processing);
    go(Error);
    forbid(Error, &[Pending, Ready, Error]);
    expect::not_found(
        s.collections()
            .update_status(CollectionId::new(), Processing, None),
        Entity::Collection,
        "unknown collection",
    );
}

/// Deleting by the owner removes the collection with its operations and grants.
pub fn collection_delete_by_owner_cascades(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "sue");
    let guest = seed::user(&*s, "ted");
    let c = seed::collection(&*s, &owner, "c");
    let other = seed::collection(&*s, &owner, "other");
    seed::grant(&*s, &c, &guest, AccessLevel::Write);
    let op = seed::operation(&*s, &c, &guest, OperationKind::Index);
    let kept_op = seed::operation(&*s, &other, &guest, OperationKind::Index);
    expect::ok(
        s.collections().delete(c.id, owner.id.into()),
        "delete by owner",
    );
    expect::not_found(s.collections().get(c.id), Entity::Collection, "deleted");
    expect::not_found(
        s.operations().get(op.uuid),
        Entity::Operation,
        "its operation",
    );
    let left = expect::ok(
        s.operations()
            .list_for_user(guest.id, &Default::default(), Default::default()),
        "guest's operations",
    );
    assert_eq!(
        left.items,
        vec![kept_op],
        "only the other collection's operation stays"
    );
    expect::ok(s.collections().get(other.id), "other collection stays");
    // The grant went with the collection: the guest sees nothing of it any more.
    let visible = expect::ok(
        s.collections()
            .list_visible(guest.id.into(), Default::default()),
        "vis",
    );
    assert_eq!(visible.total, 0);
}

/// An admin grant or superuser may delete a collection.
pub fn collection_delete_by_admin_grant_or_superuser(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "uma");
    let admin = seed::user(&*s, "vic");
    let root = seed::superuser(&*s, "root");
    let a = seed::collection(&*s, &owner, "a");
    let b = seed::collection(&*s, &owner, "b");
    seed::grant(&*s, &a, &admin, AccessLevel::Admin);
    expect::ok(
        s.collections().delete(a.id, admin.id.into()),
        "delete by admin grant",
    );
    expect::not_found(
        s.collections().get(a.id),
        Entity::Collection,
        "deleted by admin",
    );
    expect::ok(
        s.collections().delete(b.id, root.id.into()),
        "delete by superuser",
    );
    expect::not_found(
        s.collections().get(b.id),
        Entity::Collection,
        "deleted by superuser",
    );
}

/// Read or write grants, public visibility and strangers may not delete: `AccessDenied`, nothing removed.
pub fn collection_delete_without_admin_is_access_denied(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "walt");
    let reader = seed::user(&*s, "xena");
    let writer = seed::user(&*s, "yuri");
    let stranger = seed::user(&*s, "zoe");
    let c = seed::public_collection(&*s, &owner, "c");
    seed::grant(&*s, &c, &reader, AccessLevel::Read);
    seed::grant(&*s, &c, &writer, AccessLevel::Write);
    for (who, name) in [
        (&reader, "read grant"),
        (&writer, "write grant"),
        (&stranger, "stranger"),
    ] {
        expect::access_denied(s.collections().delete(c.id, who.id.into()), name);
    }
    assert_eq!(expect::ok(s.collections().get(c.id), "still there"), c);
    assert_eq!(
        expect::ok(s.collections().list_grants(c.id), "grants").len(),
        2
    );
}

/// Deleting an unknown collection is `NotFound { collection }`, not `AccessDenied`.
pub fn collection_delete_unknown_is_not_found(h: &dyn Harness) {
    let s = h.store();
    let u = seed::user(&*s, "amy");
    expect::not_found(
        s.collections().delete(CollectionId::new(), u.id.into()),
        Entity::Collection,
        "unknown collection",
    );
}

/// `due_for_sync` returns continuous, unpaused, ready collections due by `now`, oldest due first, up to `limit`.
pub fn collection_due_for_sync(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "bea");
    let now = repo_core::now();
    let due = |name: &str, hours_ago: i64| {
        let c = seed::continuous_collection(&*s, &owner, name, 15);
        seed::make_ready(&*s, &c);
        expect::ok(s.collections().pause_sync(c.id), "pause");
        expect::ok(
            s.collections()
                .resume_sync(c.id, now - Duration::hours(hours_ago)),
            "resume",
        )
    };
    due("oldest", 3);
    due("newest", 1);
    due("middle", 2);
    due("at-now", 0);
    due("future", -1);
    let paused = due("paused", 5);
    expect::ok(s.collections().pause_sync(paused.id), "pause");
    let busy = due("busy", 4);
    expect::ok(
        s.collections()
            .update_status(busy.id, CollectionStatus::Processing, None),
        "processing",
    );
    // Due, continuous and unpaused, but still pending.
    let pending = seed::continuous_collection(&*s, &owner, "pending", 15);
    expect::ok(s.collections().pause_sync(pending.id), "pause pending");
    expect::ok(
        s.collections()
            .resume_sync(pending.id, now - Duration::hours(6)),
        "resume pending",
    );
    let one_time = seed::collection(&*s, &owner, "one-time");
    seed::make_ready(&*s, &one_time);

    let names = |limit| {
        expect::ok(s.collections().due_for_sync(now, limit), "due_for_sync")
            .into_iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(10), vec!["oldest", "middle", "newest", "at-now"]);
    assert_eq!(names(2), vec!["oldest", "middle"]);
}

/// Pausing sets `sync_paused_at` (twice keeps the first), resuming clears it and sets the next run; one-time collections are `InvalidState`.
pub fn collection_pause_and_resume_sync(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "cleo");
    let c = seed::continuous_collection(&*s, &owner, "c", 20);
    let before = repo_core::now();
    let p1 = expect::ok(s.collections().pause_sync(c.id), "pause");
    let at = p1.sync_paused_at.expect("paused_at set");
    assert!(at >= before);
    let p2 = expect::ok(s.collections().pause_sync(c.id), "pause again");
    assert_eq!(
        p2.sync_paused_at,
        Some(at),
        "pausing twice keeps the first time"
    );
    let next = repo_core::now() + Duration::minutes(42);
    let r = expect::ok(s.collections().resume_sync(c.id, next), "resume");
    assert_eq!(r.sync_paused_at, None);
    assert_eq!(r.sync_next_run_at, Some(next));
    assert_eq!(expect::ok(s.collections().get(c.id), "get"), r);

    let once = seed::collection(&*s, &owner, "once");
    expect::invalid_state(
        s.collections().pause_sync(once.id),
        SyncMode::OneTime,
        Attempt::PauseSync,
        "pause one-time",
    );
    expect::invalid_state(
        s.collections().resume_sync(once.id, next),
        SyncMode::OneTime,
        Attempt::ResumeSync,
        "resume one-time",
    );
    expect::not_found(
        s.collections().pause_sync(CollectionId::new()),
        Entity::Collection,
        "pause unknown",
    );
}

/// `record_sync_run` stores the run; a completed run of a continuous collection schedules the next run `interval` after completion.
pub fn collection_record_sync_run_schedules_next_run(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "dora");
    let c = seed::continuous_collection(&*s, &owner, "c", 30);
    let started = repo_core::now() - Duration::minutes(10);
    let running = SyncRun {
        started_at: started,
        completed_at: None,
        status: SyncRunStatus::Running,
        error: None,
    };
    let r = expect::ok(s.collections().record_sync_run(c.id, &running), "running");
    assert_eq!(r.sync_last_run_started_at, Some(started));
    assert_eq!(r.sync_last_run_status, Some(SyncRunStatus::Running));
    assert_eq!(
        r.sync_next_run_at, c.sync_next_run_at,
        "a running run schedules nothing"
    );

    let completed = started + Duration::minutes(5);
    let done = SyncRun {
        started_at: started,
        completed_at: Some(completed),
        status: SyncRunStatus::Partial,
        error: Some("2 sources unreachable".into()),
    };
    let r = expect::ok(s.collections().record_sync_run(c.id, &done), "completed");
    assert_eq!(r.sync_last_run_started_at, Some(started));
    assert_eq!(r.sync_last_run_completed_at, Some(completed));
    assert_eq!(r.sync_last_run_status, Some(SyncRunStatus::Partial));
    assert_eq!(r.sync_last_error.as_deref(), Some("2 sources unreachable"));
    assert_eq!(r.sync_next_run_at, Some(completed + Duration::minutes(30)));
    assert_eq!(expect::ok(s.collections().get(c.id), "get"), r);

    let once = seed::collection(&*s, &owner, "once");
    let r = expect::ok(
        s.collections().record_sync_run(once.id, &done),
        "one-time run",
    );
    assert_eq!(r.sync_last_run_completed_at, Some(completed));
    assert_eq!(
        r.sync_next_run_at, None,
        "one-time collections are never scheduled"
    );
}

/// Of 10 threads moving one collection pending → processing at once, exactly one wins; the rest get `InvalidState { processing, processing }`.
pub fn collection_racing_status_updates_exactly_one_wins(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "eli");
    let c = seed::collection(&*s, &owner, "c");
    let store = std::sync::Arc::clone(&s);
    let id = c.id;
    let results = crate::race::race(10, move |_| {
        store
            .collections()
            .update_status(id, CollectionStatus::Processing, None)
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "exactly one status update must win: {results:?}"
    );
    for r in results.into_iter().filter(|r| r.is_err()) {
        expect::invalid_state(
            r,
            CollectionStatus::Processing,
            CollectionStatus::Processing,
            "losing update",
        );
    }
}

/// Of 8 threads creating the same collection name at once, exactly one succeeds and the rest get `AlreadyExists { collection, name }`.
pub fn collection_racing_creators_exactly_one_wins(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "fin");
    let store = std::sync::Arc::clone(&s);
    let oid = owner.id;
    let results = crate::race::race(8, move |_| {
        store
            .collections()
            .create(&NewCollection::new("contested", oid))
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "exactly one creator must win: {results:?}"
    );
    for r in results.into_iter().filter(|r| r.is_err()) {
        expect::already_exists(r, Entity::Collection, Field::Name, "losing creator");
    }
}

/// Collections due at the same instant come out of `due_for_sync` ordered by id.
pub fn collection_due_for_sync_ties_break_by_id(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "gia");
    let at = repo_core::now() - Duration::minutes(5);
    let mut ids: Vec<CollectionId> = (0..5)
        .map(|i| {
            let c = seed::continuous_collection(&*s, &owner, &format!("tie{i}"), 15);
            seed::make_ready(&*s, &c);
            expect::ok(s.collections().pause_sync(c.id), "pause");
            expect::ok(s.collections().resume_sync(c.id, at), "resume").id
        })
        .collect();
    ids.sort();
    let due: Vec<CollectionId> =
        expect::ok(s.collections().due_for_sync(repo_core::now(), 10), "due")
            .into_iter()
            .map(|c| c.id)
            .collect();
    assert_eq!(due, ids, "equal due times are ordered by id");
}

/// Timestamps read back exactly, from 1970 to 9999 and to the microsecond; finer input is truncated (not rounded) to microseconds.
pub fn collection_timestamps_round_trip_exactly(h: &dyn Harness) {
    use chrono::{TimeZone, Utc};
    let s = h.store();
    let owner = seed::user(&*s, "hex");
    let c = seed::continuous_collection(&*s, &owner, "c", 15);
    let exact = [
        Utc.timestamp_opt(0, 0).single(),
        Utc.with_ymd_and_hms(2000, 2, 29, 12, 34, 56).single(),
        Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
            .single()
            .map(|t| t + Duration::microseconds(999_999)),
        Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0)
            .single()
            .map(|t| t + Duration::microseconds(1)),
    ];
    for t in exact.into_iter().flatten() {
        let r = expect::ok(s.collections().resume_sync(c.id, t), "resume");
        assert_eq!(r.sync_next_run_at, Some(t), "returned");
        assert_eq!(
            expect::ok(s.collections().get(c.id), "get").sync_next_run_at,
            Some(t)
        );
    }
    let base = repo_core::now();
    let fine = base + Duration::nanoseconds(999_999_999);
    let truncated = repo_core::time::truncate_micros(fine);
    let r = expect::ok(s.collections().resume_sync(c.id, fine), "nanoseconds");
    assert_eq!(
        r.sync_next_run_at,
        Some(truncated),
        "returned value is truncated"
    );
    assert_eq!(
        expect::ok(s.collections().get(c.id), "get").sync_next_run_at,
        Some(truncated),
        "stored value is truncated, not rounded"
    );
    let run = SyncRun {
        started_at: fine,
        completed_at: Some(fine),
        status: SyncRunStatus::Success,
        error: None,
    };
    let r = expect::ok(s.collections().record_sync_run(c.id, &run), "record");
    assert_eq!(r.sync_last_run_started_at, Some(truncated));
    assert_eq!(expect::ok(s.collections().get(c.id), "get"), r);
}

/// JSON documents (meta, chunking config, operation config) read back equal: big integers, floats, Unicode, escapes, empty and nested values.
pub fn collection_json_round_trips_exactly(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "ivo");
    let doc = json!({
        "beyond_2_53": 9_007_199_254_740_993_u64,
        "u64_max": u64::MAX,
        "i64_min": i64::MIN,
        "tenth": 0.1,
        "huge": 1.5e300,
        "one_point_zero": 1.0,
        "unicode": "Grüße 📚 ✓",
        "escapes": "quote \" backslash \\ newline \n tab \t",
        "empty_object": {},
        "empty_array": [],
        "nested": [[[{"deep": true}]]],
        "null": null,
        "": "empty key"
    });
    let mut new = NewCollection::new("json", owner.id);
    new.meta = doc.clone();
    new.chunking_config = Some(json!([doc.clone(), 1, "two"]));
    let c = expect::ok(s.collections().create(&new), "create");
    assert_eq!(c.meta, doc);
    let got = expect::ok(s.collections().get(c.id), "get");
    assert_eq!(got.meta, doc, "meta read back");
    assert_eq!(
        got.chunking_config, new.chunking_config,
        "chunking_config read back"
    );
    let op = expect::ok(
        s.operations().create(&repo_core::NewOperation::new(
            c.id,
            owner.id,
            OperationKind::Index,
            doc.clone(),
        )),
        "operation",
    );
    assert_eq!(
        expect::ok(s.operations().get(op.uuid), "get op").config,
        doc
    );
}

/// Looking a collection up by a name holding NUL is `Validation { name }`, not a backend error.
pub fn collection_lookup_with_nul_is_validation(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "jo");
    seed::collection(&*s, &owner, "c");
    expect::validation(
        s.collections().get_by_name("c\0"),
        Field::Name,
        "get_by_name",
    );
}

/// Every collection write refuses NUL (rename, status message, sync error) and over-long text with `Validation`, changing nothing.
pub fn collection_writes_refuse_nul_and_overlong_text(h: &dyn Harness) {
    let s = h.store();
    let owner = seed::user(&*s, "kai");
    let c = seed::continuous_collection(&*s, &owner, "c", 15);
    expect::validation(s.collections().rename(c.id, "c\0d"), Field::Name, "rename");
    expect::any_validation(
        s.collections()
            .update_status(c.id, CollectionStatus::Processing, Some("a\0b")),
        "status message",
    );
    let run = SyncRun {
        started_at: repo_core::now(),
        completed_at: None,
        status: SyncRunStatus::Failed,
        error: Some("x\0y".into()),
    };
    expect::any_validation(s.collections().record_sync_run(c.id, &run), "sync error");
    let long = CollectionPatch {
        description: Some(Some("d".repeat(1_000_001))),
        ..CollectionPatch::default()
    };
    expect::validation(
        s.collections().update(c.id, &long),
        Field::Description,
        "1,000,001 chars",
    );
    assert_eq!(expect::ok(s.collections().get(c.id), "unchanged"), c);
    let max = CollectionPatch {
        description: Some(Some("d".repeat(1_000_000))),
        ..CollectionPatch::default()
    };
    let u = expect::ok(s.collections().update(c.id, &max), "1,000,000 chars");
    assert_eq!(u.description.map(|d| d.len()), Some(1_000_000));
}
