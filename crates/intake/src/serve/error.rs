//! The API's error answer: a status and `{"error": CODE, "message": TEXT}`. Messages never hold
//! secrets: store and configuration errors are already redacted where they are made.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for `Retry-After` (rate limit).
    pub retry_after: Option<u64>,
}

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code: `unauthorized`, `csrf`, `not_found`, `invalid`, `conflict`, `read_only`,
    /// `rate_limited`, `internal`.
    pub error: String,
    /// What went wrong, in words an administrator can act on.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<intake_store::StoreError> for ApiError {
    fn from(e: intake_store::StoreError) -> Self {
        if let intake_store::StoreError::Invalid(m) = e {
            return Self::invalid(m);
        }
        tracing::error!(error = %e, "store error answering an API request");
        Self::internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_string(),
            message: self.message,
        };
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

/// Answers axum's own rejections (a request body that is not JSON or lacks a field, a bad
/// query or path parameter: plain text) like every other error of the API, as
/// `{"error": "invalid", "message": …}` with the same status — the OpenAPI document describes
/// only that shape. Other answers pass untouched, and so does the OAuth callback's text page.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let callback = req.uri().path() == "/oauth/callback";
    let r = next.run(req).await;
    let plain = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if callback || !plain || !r.status().is_client_error() {
        return r;
    }
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    ApiError::new(
        status,
        "invalid",
        format!("the request: {}", String::from_utf8_lossy(&bytes).trim()),
    )
    .into_response()
}
