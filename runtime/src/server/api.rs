//! The HTTP surface: routes of the v2 REST API, health, metrics, and JSON errors.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use tokio::sync::oneshot;

use super::infer::{InferReply, Job, Refused, LOGITS, PROBABILITIES};
use super::AppState;
use crate::v2::{self, ModelMetadata, ServerMetadata, TensorMetadata};

/// An error reply: `{"error": message}` with a status (and `Retry-After` when busy).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    fn busy(message: impl Into<String>, retry_after_secs: u64) -> Self {
        ApiError {
            retry_after_secs: Some(retry_after_secs),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            axum::Json(v2::ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if let Some(s) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        })
        .with_state(state)
}

async fn server_metadata() -> Response {
    axum::Json(ServerMetadata {
        name: "triage".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: vec!["binary_tensor_data".into()],
    })
    .into_response()
}

async fn live() -> Response {
    axum::Json(json!({"live": true})).into_response()
}

/// 200 once every served model is loaded; 400 before (the protocol's "4xx means false").
async fn ready(State(st): State<Arc<AppState>>) -> Response {
    let ready = st.all_loaded();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, axum::Json(json!({"ready": ready}))).into_response()
}

fn unknown_model(st: &AppState, name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("unknown model '{name}' (served: {})", st.models.join(", ")),
    )
}

async fn model_metadata(State(st): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    if !st.serves(&name) {
        return unknown_model(&st, &name).into_response();
    }
    let Ok(v) = st.zoo.variant(&name) else {
        return unknown_model(&st, &name).into_response();
    };
    let s = i64::from(v.input_size());
    let out = |n: &str| TensorMetadata {
        name: n.into(),
        datatype: "FP32".into(),
        shape: vec![1, triage_zoo::NUM_CLASSES as i64],
    };
    axum::Json(ModelMetadata {
        name,
        versions: vec!["1".into()],
        platform: "tract_onnx".into(),
        inputs: vec![TensorMetadata {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 3, s, s],
        }],
        outputs: vec![out(LOGITS), out(PROBABILITIES)],
    })
    .into_response()
}

async fn model_ready(State(st): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    if !st.serves(&name) {
        return unknown_model(&st, &name).into_response();
    }
    let ready = st.is_loaded(&name);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, axum::Json(json!({"name": name, "ready": ready}))).into_response()
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    match st.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn infer(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    let result = infer_inner(&st, &name, &headers, body).await;
    let label = if st.serves(&name) {
        name.as_str()
    } else {
        "unknown"
    };
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status,
    };
    st.metrics
        .requests
        .with_label_values(&[label, status.as_str()])
        .inc();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    match result {
        Ok(reply) => {
            tracing::debug!(
                model = label,
                status = 200,
                ms,
                bytes = reply.body.len(),
                "infer"
            );
            let mut resp = Response::new(Body::from(reply.body));
            let h = resp.headers_mut();
            match reply.header_len {
                Some(n) => {
                    h.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    h.insert(v2::HEADER_CONTENT_LENGTH, HeaderValue::from(n));
                }
                None => {
                    h.insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                }
            }
            resp
        }
        Err(e) => {
            if e.status.is_server_error() && e.status != StatusCode::SERVICE_UNAVAILABLE {
                tracing::warn!(model = label, status = e.status.as_u16(), ms, error = %e.message, "infer");
            } else {
                tracing::debug!(model = label, status = e.status.as_u16(), ms, error = %e.message, "infer");
            }
            e.into_response()
        }
    }
}

async fn infer_inner(
    st: &AppState,
    name: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<InferReply, ApiError> {
    let limit = st.config.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over the {limit}-byte limit"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // The body is read before any other refusal: an HTTP/1.1 client writes its whole
    // request before reading the reply, and a server that replies and closes early would
    // reset the connection under it instead of delivering the status.
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if is_length_limit(&e) {
            too_large()
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            )
        }
    })?;
    if !st.serves(name) {
        return Err(unknown_model(st, name));
    }
    if !st.is_loaded(name) {
        return Err(ApiError::busy(
            format!("model '{name}' is still loading"),
            st.config.retry_after.as_secs().max(1),
        ));
    }
    let header_len = match headers.get(v2::HEADER_CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "Inference-Header-Content-Length is not ASCII",
                    )
                })?
                .to_string(),
        ),
    };
    let (tx, rx) = oneshot::channel();
    let job = Job {
        model: name.to_string(),
        body: bytes,
        header_len,
        admitted: Instant::now(),
        reply: tx,
    };
    let retry = st.config.retry_after.as_secs().max(1);
    match st.pool.submit(job) {
        Ok(()) => {}
        Err(Refused::Full) => {
            return Err(ApiError::busy(
                format!(
                    "server busy: {} workers and a queue of {} are full",
                    st.config.workers, st.config.queue
                ),
                retry,
            ))
        }
        Err(Refused::Closed) => return Err(ApiError::busy("server shutting down", retry)),
    }
    rx.await.unwrap_or_else(|_| {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the inference worker stopped without answering",
        ))
    })
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}
