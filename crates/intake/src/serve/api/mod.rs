//! The REST API under `/api`. [`router`] is the one place where API routes are registered:
//! each goes through `utoipa_axum::routes!`, so it is in the OpenAPI 3.1 document served at
//! `/api/openapi.json` (a test checks every route is listed and every one but the login
//! answers 401 without credentials).
//!
//! To add a route: write the handler with `#[utoipa::path(...)]` in a module here, and add it to
//! `protected` (or, only for the login, `public`) below.

pub mod browse;
pub mod config;
pub mod oauth;
pub mod outbox;
pub mod session;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::{Extension, Json, Router};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;

/// The document's fixed parts; paths come from the handlers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Intake API",
        description = "Mailboxes to tickets: integrations, channels, tickets, the mail log, quarantine, alerts. \
                       Authenticate with `Authorization: Bearer TOKEN` (`intake admin token USER`) or a \
                       session cookie from `POST /api/session` plus the `X-CSRF-Token` header on every \
                       request that changes something."
    ),
    components(schemas(super::error::ErrorBody))
)]
struct ApiDoc;

/// Routes that need no credentials (only logging in).
pub const PUBLIC_ROUTES: &[(&str, &str)] = &[("post", "/api/session"), ("get", "/oauth/callback")];

/// The API router (state applied) and its OpenAPI document.
pub fn router(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let public = OpenApiRouter::new()
        .routes(routes!(session::login))
        .routes(routes!(oauth::callback));
    let protected = OpenApiRouter::new()
        .routes(routes!(session::current, session::logout))
        .routes(routes!(
            config::list_integrations,
            config::create_integration
        ))
        .routes(routes!(
            config::get_integration,
            config::patch_integration,
            config::delete_integration
        ))
        .routes(routes!(config::list_channels, config::create_channel))
        .routes(routes!(
            config::get_channel,
            config::patch_channel,
            config::delete_channel
        ))
        .routes(routes!(config::pause_channel))
        .routes(routes!(config::resume_channel))
        .routes(routes!(config::channel_status))
        .routes(routes!(config::test_channel))
        .routes(routes!(config::test_channel_stream))
        .routes(routes!(oauth::authorize))
        .routes(routes!(oauth::flow))
        .routes(routes!(browse::list_tickets))
        .routes(routes!(browse::get_ticket))
        .routes(routes!(browse::download_attachment))
        .routes(routes!(browse::log))
        .routes(routes!(browse::quarantine))
        .routes(routes!(browse::quarantine_raw))
        .routes(routes!(browse::quarantine_discard))
        .routes(routes!(browse::quarantine_retry))
        .routes(routes!(outbox::reply))
        .routes(routes!(outbox::list))
        .routes(routes!(outbox::retry))
        .routes(routes!(outbox::discard))
        .routes(routes!(alerts))
        .routes(routes!(audit))
        .routes(routes!(openapi_json))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::auth::require,
        ));
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(public)
        .merge(protected)
        .split_for_parts();
    let doc_json = std::sync::Arc::new(doc.clone());
    let router = router
        .layer(Extension(OpenApiDoc(doc_json)))
        .layer(axum::middleware::from_fn(super::error::json_errors))
        .layer(axum::middleware::from_fn(super::health::count_requests))
        .with_state(state);
    (router, doc)
}

/// The generated document, handed to [`openapi_json`].
#[derive(Clone)]
struct OpenApiDoc(std::sync::Arc<utoipa::openapi::OpenApi>);

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
async fn openapi_json(Extension(doc): Extension<OpenApiDoc>) -> impl IntoResponse {
    Json((*doc.0).clone())
}

/// Query of `GET /api/audit`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Entries with an id below this (paging: the last id of the previous page).
    pub before: Option<i64>,
    /// Page size (default 100, at most 1,000).
    pub limit: Option<i64>,
}

/// One audit entry.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// The administrator (or `cli:USER` for the command line, `file` for an import).
    pub actor: String,
    pub action: String,
    pub target: String,
    /// Which keys changed, never their secret values.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// Who changed what, newest first.
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>), (status = 401, body = super::error::ErrorBody)))]
async fn audit(
    State(state): State<AppState>,
    Extension(_who): Extension<Principal>,
    axum::extract::Query(q): axum::extract::Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = state.store.audit_entries(q.before, limit).await?;
    Ok(Json(
        rows.into_iter()
            .map(|e| AuditEntry {
                id: e.id,
                at: e.at,
                actor: e.actor,
                action: e.action,
                target: e.target,
                details: e.details,
            })
            .collect(),
    ))
}

/// Query of `GET /api/alerts`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct AlertsQuery {
    /// Also the newest cleared alerts (default: open ones only).
    pub include_cleared: Option<bool>,
}

/// One alert.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AlertView {
    pub id: i64,
    /// `channel_failing`, `token_needs_reauthorization` or `credential_expiry`.
    pub kind: String,
    /// The channel, `integration/mailbox`, or integration it is about.
    pub subject: String,
    /// `warning` or `critical`.
    pub severity: String,
    pub message: String,
    pub raised_at: i64,
    /// Set once the cause is gone.
    pub cleared_at: Option<i64>,
}

/// Alerts: open ones (oldest first), or with `include_cleared=true` the newest 500.
#[utoipa::path(get, path = "/api/alerts", tag = "alerts", params(AlertsQuery),
    responses((status = 200, body = Vec<AlertView>), (status = 401, body = super::error::ErrorBody)))]
async fn alerts(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<AlertsQuery>,
) -> Result<Json<Vec<AlertView>>, ApiError> {
    let list = if q.include_cleared.unwrap_or(false) {
        state.store.recent_alerts(500).await?
    } else {
        state.store.open_alerts().await?
    };
    Ok(Json(
        list.into_iter()
            .map(|a| AlertView {
                id: a.id,
                kind: a.kind,
                subject: a.subject,
                severity: a.severity,
                message: a.message,
                raised_at: a.raised_at,
                cleared_at: a.cleared_at,
            })
            .collect(),
    ))
}
