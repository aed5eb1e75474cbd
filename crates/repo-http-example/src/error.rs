//! Errors as JSON: `{"error": {"code": "...", "message": "...", "retryable": bool}}`.
//!
//! Every repository error goes through [`error_body`], the one place that turns a
//! [`RepoError`] into an HTTP status and a body, so the mapping is the library's own
//! (its stable code and status) and the same on SQLite and PostgreSQL.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use smtk_repo::RepoError;

/// What a handler fails with.
#[derive(Debug)]
pub enum ApiError {
    /// A repository call failed.
    Repo(RepoError),
    /// No API key, or one that does not verify (unknown, revoked, expired, malformed,
    /// or its user is inactive): never says which.
    Unauthenticated,
    /// The request itself is unusable: malformed JSON, a bad path or query parameter.
    BadRequest(String),
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        Self::Repo(e)
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;

/// The status and JSON body of a repository error.
///
/// Server-side failures (`config`, `backend`) show a generic message, and are logged
/// with their cause; every other message is the error's own, which never holds a
/// password, an API-key secret or a key hash.
pub fn error_body(e: &RepoError) -> (StatusCode, Json<Value>) {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(error = %e, code = e.code(), "request failed");
        "internal error".to_owned()
    } else {
        e.to_string()
    };
    (
        status,
        Json(json!({
            "error": { "code": e.code(), "message": message, "retryable": e.is_retryable() }
        })),
    )
}

fn plain(status: StatusCode, code: &str, message: &str) -> (StatusCode, Json<Value>) {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message, "retryable": false } })),
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Repo(e) => {
                let mut response = error_body(&e).into_response();
                if let Some(wait) = e.retry_after() {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, wait.as_secs().max(1).into());
                }
                response
            }
            Self::Unauthenticated => (
                [(header::WWW_AUTHENTICATE, "Bearer")],
                plain(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "send a valid API key: Authorization: Bearer smtk_…",
                ),
            )
                .into_response(),
            Self::BadRequest(message) => {
                plain(StatusCode::BAD_REQUEST, "bad_request", &message).into_response()
            }
        }
    }
}
