//! The HTTP API: routes, handlers and JSON errors. Handlers never block the runtime:
//! adding and stopping a stream (file checks, pipeline builds, state changes, waiting
//! for EOS) run in `spawn_blocking`; the rest reads the statuses the streams' watcher
//! threads keep.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::metrics;
use super::spec::StreamSpec;
use super::streams::{Registry, Status};
use crate::common;

type Reg = State<Arc<Registry>>;

/// The service's routes (see README's "Service").
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(prometheus))
        .route("/streams", get(list).post(create))
        .route("/streams/{id}", get(show).delete(remove))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(registry)
}

/// An error answer: a status and `{"error": "..."}`.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl ApiError {
    fn bad(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }

    fn no_stream(id: &str) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, format!("no stream {id}"))
    }

    fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

async fn health(State(reg): Reg) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "streams": reg.list().len(),
        "uptime_s": reg.started.elapsed().as_secs_f64(),
    }))
}

async fn prometheus(State(reg): Reg) -> Response {
    let body = metrics::render(&reg.list(), &reg.settings.engine_id);
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response()
}

async fn list(State(reg): Reg) -> Json<Vec<Status>> {
    Json(reg.list())
}

/// `POST /streams`: the body is a [`StreamSpec`]; 201, the new stream's status (its
/// `id` first) and its Location.
async fn create(State(reg): Reg, body: Bytes) -> Result<impl IntoResponse, ApiError> {
    let spec = parse_spec(&body)?;
    let status = tokio::task::spawn_blocking(move || reg.add(spec))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e.bad_request {
            true => ApiError::bad(common::error_line(&e.error)),
            false => ApiError::internal(common::error_line(&e.error)),
        })?;
    let location = format!("/streams/{}", status.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(status)))
}

/// A request body as a [`StreamSpec`], or a 400 that says what is wrong with it.
fn parse_spec(body: &[u8]) -> Result<StreamSpec, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad(
            "the body is empty: give a JSON object such as {\"uri\": \"clip.mp4\", \"output\": \"out.mp4\"}",
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("bad JSON body: {e}")))
}

async fn show(State(reg): Reg, Path(id): Path<String>) -> Result<Json<Status>, ApiError> {
    reg.get(&id)
        .map(|s| Json(s.status()))
        .ok_or_else(|| ApiError::no_stream(&id))
}

/// `DELETE /streams/{id}`: stops the stream (EOS through its muxers, bounded by
/// --stop-timeout, then NULL), removes it from the list and answers its last status.
async fn remove(State(reg): Reg, Path(id): Path<String>) -> Result<Json<Status>, ApiError> {
    let stream = reg.remove(&id).ok_or_else(|| ApiError::no_stream(&id))?;
    let status = tokio::task::spawn_blocking(move || stream.stop_and_join())
        .await
        .map_err(ApiError::internal)?;
    eprintln!("stream {id}: removed");
    Ok(Json(status))
}

async fn unknown_route() -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "no such endpoint: see /health, /metrics, /streams, /streams/{id}".into(),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint".into(),
    )
}
