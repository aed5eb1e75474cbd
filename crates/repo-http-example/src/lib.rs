//! An HTTP service on the data layer, as an application team would write it: axum on
//! the async handle ([`AsyncStore`]), API keys verified on every request, and the
//! same JSON on SQLite and PostgreSQL.
//!
//! | method and path | what | access |
//! |---|---|---|
//! | `GET /healthz` | `{"status":"ok"}`, or 503 with the error | none |
//! | `GET /metrics` | Prometheus text: the library's `db.client.*` metrics | none |
//! | `POST /v1/api-keys` | `{"name"}` → a new key of the caller's user, its secret shown once | any key |
//! | `POST /v1/collections` | a `NewCollection` without `owner_id` (the caller's user owns it) | any key |
//! | `GET /v1/collections?limit=&after=` | collections the caller sees, newest first, cursor pages | any key |
//! | `GET /v1/collections/{id}` | one collection | read |
//! | `POST /v1/collections/{id}/grants` | `{"grantee": {"User": 2} or {"ApiKey": "…"}, "level"}` | admin |
//! | `GET /v1/collections/{id}/grants` | the collection's grants | admin |
//! | `POST /v1/collections/{id}/documents` | `[NewDocument without collection_id, …]`, bulk, idempotent per content hash | write |
//! | `POST /v1/collections/{id}/chunks` | `[NewChunk, …]`, bulk → `{"inserted": n}` | write |
//! | `GET /v1/collections/{id}/search?q=&limit=&offset=` | full-text search, best first | read |
//! | `POST /v1/collections/{id}/operations` | `{"kind", "config", "idempotency_key"?}`: starts an operation and marks the collection processing, in one unit of work | write |
//! | `GET /v1/operations/{uuid}` | one operation | read |
//! | `POST /v1/operations/{uuid}/transition` | `{"status", "error_message"?}`: walks the operation; a terminal status sets the collection ready (or error), in one unit of work | write |
//!
//! Clients authenticate with `Authorization: Bearer smtk_…`. Errors are
//! `{"error": {"code", "message", "retryable"}}` with the status of
//! [`error::error_body`]. Run it with `cargo run -p repo-http-example` (see the
//! README of the repository, "HTTP service example").

#![forbid(unsafe_code)]

pub mod error;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use error::{ApiError, ApiResult};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use serde_json::{json, Value};
use smtk_repo::{
    AccessLevel, AsyncStore, Collection, CollectionId, CollectionStatus, Cursor, CursorRequest,
    Grantee, NewApiKey, NewChunk, NewCollection, NewDocument, NewOperation, OperationKind,
    OperationStatus, OperationUuid, PageRequest, Principal, SearchQuery, UserId,
};
use std::sync::OnceLock;
use tracing::Instrument;

/// What every handler shares: the async store and the metrics exporter's handle.
#[derive(Clone)]
pub struct AppState {
    /// The data layer.
    pub db: AsyncStore,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
}

impl AppState {
    /// The state for `db`, with the process's Prometheus recorder
    /// ([`install_metrics`]).
    pub fn new(db: AsyncStore) -> Self {
        Self {
            db,
            metrics: install_metrics(),
        }
    }
}

/// Installs the Prometheus recorder as the process's `metrics` recorder, once, and
/// returns its handle (later calls return the same one).
///
/// Call it before opening the store: the connection gauges count from the pool's
/// first connection on.
pub fn install_metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Seconds: a repository call takes from tens of microseconds to seconds.
            let buckets = [
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets(&buckets)
                .expect("the bucket list is not empty");
            match builder.install_recorder() {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot install the Prometheus recorder: /metrics stays empty");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// Who made the request: the verified API key, acting for its user.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The key, for access checks (a key never exceeds its user, and a scoped key
    /// only reaches its granted collections).
    pub principal: Principal,
    /// The key's user: owner of what the caller creates.
    pub user_id: UserId,
}

/// The service's routes on `state`.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/api-keys", post(create_api_key))
        .route(
            "/v1/collections",
            post(create_collection).get(list_collections),
        )
        .route("/v1/collections/{id}", get(get_collection))
        .route("/v1/collections/{id}/grants", post(grant).get(list_grants))
        .route("/v1/collections/{id}/documents", post(register_documents))
        .route("/v1/collections/{id}/chunks", post(insert_chunks))
        .route("/v1/collections/{id}/search", get(search))
        .route("/v1/collections/{id}/operations", post(start_operation))
        .route("/v1/operations/{uuid}", get(get_operation))
        .route("/v1/operations/{uuid}/transition", post(transition))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .merge(api)
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Verifies the bearer key of every request under `/v1` and hands the handlers a
/// [`Caller`]; the request runs in a span that the store's own spans nest under.
async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
    );
    async move {
        let secret = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|s| s.trim().to_owned())
            .ok_or(ApiError::Unauthenticated)?;
        let verified = match state.db.api_keys(move |keys| keys.verify(&secret)).await {
            Ok(Some(verified)) => verified,
            // A malformed key is refused before any query; to the client it is just
            // not a valid key.
            Ok(None) | Err(smtk_repo::RepoError::Validation { .. }) => {
                return Err(ApiError::Unauthenticated)
            }
            Err(e) => return Err(e.into()),
        };
        request.extensions_mut().insert(Caller {
            principal: Principal::from(&verified),
            user_id: verified.user.id,
        });
        Ok(next.run(request).await)
    }
    .instrument(span)
    .await
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.db.health().await {
        Ok(()) => Json(json!({ "status": "ok" })).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The JSON body, or `400 bad_request` with serde's reason.
fn body<T>(json: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    json.map(|Json(v)| v)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

/// A path parameter, or `400 bad_request`.
fn path<T>(path: Result<Path<T>, PathRejection>) -> ApiResult<T> {
    path.map(|Path(v)| v)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

/// The query string, or `400 bad_request`.
fn query<T>(query: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    query
        .map(|Query(v)| v)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

/// Adds `field: value` to a JSON object body, refusing a body that sets it itself.
fn with_field(mut object: Value, field: &str, value: Value) -> ApiResult<Value> {
    let map = object
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("expected a JSON object".into()))?;
    if map.contains_key(field) {
        return Err(ApiError::BadRequest(format!(
            "`{field}` comes from the request path or the API key, not the body"
        )));
    }
    map.insert(field.to_owned(), value);
    Ok(object)
}

/// A domain input from a JSON value, or `400 bad_request`.
fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> ApiResult<T> {
    serde_json::from_value(value).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Fails unless `caller` holds `needed` on collection `id`.
async fn require(
    db: &AsyncStore,
    caller: Caller,
    id: CollectionId,
    needed: AccessLevel,
) -> ApiResult<Collection> {
    Ok(db
        .collections(move |c| c.get_with_access(id, caller.principal, needed))
        .await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKeyBody {
    name: String,
}

async fn create_api_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    json: Result<Json<NewKeyBody>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let new = NewApiKey::new(caller.user_id, body(json)?.name);
    let created = state.db.api_keys(move |keys| keys.create(&new)).await?;
    // The secret leaves the service once, in this response; it is never logged.
    Ok((
        StatusCode::CREATED,
        Json(json!({ "key": created.key, "secret": created.secret.expose() })),
    ))
}

async fn create_collection(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    json: Result<Json<Value>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let input = with_field(body(json)?, "owner_id", json!(caller.user_id))?;
    let new: NewCollection = from_value(input)?;
    let created = state.db.collections(move |c| c.create(&new)).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorQuery {
    limit: Option<u32>,
    after: Option<String>,
}

async fn list_collections(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<CursorQuery>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    let params = query(params)?;
    let page = CursorRequest {
        after: params.after.as_deref().map(Cursor::decode).transpose()?,
        limit: params.limit.unwrap_or(50),
    };
    let listed = state
        .db
        .collections(move |c| c.list_visible_by_cursor(caller.principal, &page))
        .await?;
    Ok(Json(listed))
}

async fn get_collection(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<CollectionId>, PathRejection>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(
        require(&state.db, caller, path(id)?, AccessLevel::Read).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    grantee: Grantee,
    level: AccessLevel,
}

async fn grant(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<CollectionId>, PathRejection>,
    json: Result<Json<GrantBody>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let (id, input) = (path(id)?, body(json)?);
    require(&state.db, caller, id, AccessLevel::Admin).await?;
    let granted = state
        .db
        .collections(move |c| c.grant(id, input.grantee, input.level))
        .await?;
    Ok((StatusCode::CREATED, Json(granted)))
}

async fn list_grants(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<CollectionId>, PathRejection>,
) -> ApiResult<impl IntoResponse> {
    let id = path(id)?;
    require(&state.db, caller, id, AccessLevel::Admin).await?;
    Ok(Json(
        state.db.collections(move |c| c.list_grants(id)).await?,
    ))
}

async fn register_documents(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<CollectionId>, PathRejection>,
    json: Result<Json<Vec<Value>>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let id = path(id)?;
    let batch = body(json)?
        .into_iter()
        .map(|doc| from_value::<NewDocument>(with_field(doc, "collection_id", json!(id))?))
        .collect::<ApiResult<Vec<_>>>()?;
    require(&state.db, caller, id, AccessLevel::Write).await?;
    let registered = state.db.documents(move |d| d.register_many(&batch)).await?;
    Ok(Json(registered))
}

async fn insert_chunks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<CollectionId>, PathRejection>,
    json: Result<Json<Vec<NewChunk>>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let (id, batch) = (path(id)?, body(json)?);
    require(&state.db, caller, id, AccessLevel::Write).await?;
    let inserted = state.db.chunks(move |c| c.insert_many(id, &batch)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "inserted": inserted }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    q: String,
    #[serde(default)]
    offset: u64,
    limit: Option<u32>,
}

async fn search(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<CollectionId>, PathRejection>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> ApiResult<impl IntoResponse> {
    let (id, params) = (path(id)?, query(params)?);
    require(&state.db, caller, id, AccessLevel::Read).await?;
    let parsed = SearchQuery::parse(&params.q);
    let page = PageRequest::new(params.offset, params.limit.unwrap_or(20));
    let hits = state
        .db
        .chunks(move |c| c.search(id, &parsed, page))
        .await?;
    Ok(Json(hits))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    kind: OperationKind,
    config: Value,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// Starts an operation in one unit of work: lock the collection, check the caller may
/// write it, create the operation (the database refuses a second active one), mark
/// the collection processing. Either all of it happens or none.
async fn start_operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<CollectionId>, PathRejection>,
    json: Result<Json<StartBody>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let (id, input) = (path(id)?, body(json)?);
    let mut new = NewOperation::new(id, caller.user_id, input.kind, input.config);
    new.idempotency_key = input.idempotency_key;
    let operation = state
        .db
        .transaction(move |tx| {
            let collection = tx.lock_collection(id)?;
            tx.collections()
                .get_with_access(id, caller.principal, AccessLevel::Write)?;
            let operation = tx.operations().create(&new)?;
            if collection.status != CollectionStatus::Processing {
                tx.collections()
                    .update_status(id, CollectionStatus::Processing, None)?;
            }
            Ok(operation)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(operation)))
}

async fn get_operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uuid: Result<Path<OperationUuid>, PathRejection>,
) -> ApiResult<impl IntoResponse> {
    let uuid = path(uuid)?;
    Ok(Json(
        state
            .db
            .operations(move |o| o.get_with_access(uuid, caller.principal, AccessLevel::Read))
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionBody {
    status: OperationStatus,
    #[serde(default)]
    error_message: Option<String>,
}

/// Moves an operation to `status` (the state machine refuses a wrong step with
/// `invalid_state`); on a terminal status the collection becomes `ready` (`error`
/// when the operation failed), in the same unit of work.
async fn transition(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uuid: Result<Path<OperationUuid>, PathRejection>,
    json: Result<Json<TransitionBody>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    let (uuid, input) = (path(uuid)?, body(json)?);
    let operation = state
        .db
        .transaction(move |tx| {
            tx.operations()
                .get_with_access(uuid, caller.principal, AccessLevel::Write)?;
            let message = input.error_message.as_deref();
            let operation = tx.operations().transition(uuid, input.status, message)?;
            let collection_status = match input.status {
                OperationStatus::Completed | OperationStatus::Cancelled => {
                    Some(CollectionStatus::Ready)
                }
                OperationStatus::Failed => Some(CollectionStatus::Error),
                OperationStatus::Pending | OperationStatus::Processing => None,
            };
            if let Some(status) = collection_status {
                tx.collections()
                    .update_status(operation.collection_id, status, message)?;
            }
            Ok(operation)
        })
        .await?;
    Ok(Json(operation))
}
