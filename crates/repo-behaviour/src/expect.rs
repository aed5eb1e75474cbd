//! Assertions on results that say what was expected and what came back.

use repo_core::{Attempt, ConflictReason, Entity, Field, RepoError, RepoResult, State};
use std::fmt::Debug;

/// The value of `result`, or a panic naming `what` and the error.
#[track_caller]
pub(crate) fn ok<T>(result: RepoResult<T>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what}: expected success, got error {e:?} ({e})"),
    }
}

/// The error of `result`, or a panic describing the unexpected success.
#[track_caller]
pub(crate) fn err<T: Debug>(result: RepoResult<T>, what: &str) -> RepoError {
    match result {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => e,
    }
}

/// `NotFound { entity, .. }`.
#[track_caller]
pub(crate) fn not_found<T: Debug>(result: RepoResult<T>, entity: Entity, what: &str) {
    match err(result, what) {
        RepoError::NotFound { entity: e, .. } if e == entity => {}
        other => panic!("{what}: expected NotFound {{ entity: {entity:?} }}, got {other:?}"),
    }
}

/// `AlreadyExists { entity, field }`.
#[track_caller]
pub(crate) fn already_exists<T: Debug>(
    result: RepoResult<T>,
    entity: Entity,
    field: Field,
    what: &str,
) {
    match err(result, what) {
        RepoError::AlreadyExists {
            entity: e,
            field: f,
        } if e == entity && f == field => {}
        other => panic!(
            "{what}: expected AlreadyExists {{ entity: {entity:?}, field: {field:?} }}, \
             got {other:?}"
        ),
    }
}

/// `Validation { field, .. }`; returns the error for further checks.
#[track_caller]
pub(crate) fn validation<T: Debug>(result: RepoResult<T>, field: Field, what: &str) -> RepoError {
    match err(result, what) {
        e @ RepoError::Validation { field: f, .. } if f == field => e,
        other => panic!("{what}: expected Validation {{ field: {field:?} }}, got {other:?}"),
    }
}

/// `Validation` naming any field.
#[track_caller]
pub(crate) fn any_validation<T: Debug>(result: RepoResult<T>, what: &str) -> RepoError {
    match err(result, what) {
        e @ RepoError::Validation { .. } => e,
        other => panic!("{what}: expected Validation, got {other:?}"),
    }
}

/// `InvalidState { current, attempted }`.
#[track_caller]
pub(crate) fn invalid_state<T: Debug>(
    result: RepoResult<T>,
    current: impl Into<State>,
    attempted: impl Into<Attempt>,
    what: &str,
) {
    let (current, attempted) = (current.into(), attempted.into());
    match err(result, what) {
        RepoError::InvalidState {
            current: c,
            attempted: a,
        } if c == current && a == attempted => {}
        other => panic!(
            "{what}: expected InvalidState {{ current: {current:?}, attempted: {attempted:?} }}, \
             got {other:?}"
        ),
    }
}

/// `AccessDenied`.
#[track_caller]
pub(crate) fn access_denied<T: Debug>(result: RepoResult<T>, what: &str) {
    match err(result, what) {
        RepoError::AccessDenied { .. } => {}
        other => panic!("{what}: expected AccessDenied, got {other:?}"),
    }
}

/// `Conflict { reason }`.
#[track_caller]
pub(crate) fn conflict<T: Debug>(result: RepoResult<T>, reason: ConflictReason, what: &str) {
    match err(result, what) {
        RepoError::Conflict { reason: r, .. } if r == reason => {}
        other => panic!("{what}: expected Conflict {{ reason: {reason:?} }}, got {other:?}"),
    }
}

/// Whether `error` is `Conflict { reason }`.
pub(crate) fn is_conflict(error: &RepoError, reason: ConflictReason) -> bool {
    matches!(error, RepoError::Conflict { reason: r, .. } if *r == reason)
}

/// `Validation { field, item: Some(index), .. }` whose message also names the item
/// (`item N: …`).
#[track_caller]
pub(crate) fn item_validation<T: Debug>(
    result: RepoResult<T>,
    field: Field,
    index: usize,
    what: &str,
) -> RepoError {
    let e = validation(result, field, what);
    assert_eq!(
        e.item(),
        Some(index),
        "{what}: the error's item must be {index}: {e:?}"
    );
    let wanted = format!("item {index}: ");
    assert!(
        e.to_string().contains(&wanted),
        "{what}: the error must name {wanted:?}, got {e:?}"
    );
    e
}
