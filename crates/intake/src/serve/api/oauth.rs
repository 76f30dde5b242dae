//! Authorization over the API: `POST /api/integrations/{name}/authorize` starts a browser flow
//! (authorization code + PKCE, redirect URI `PUBLIC_URL/oauth/callback`) or a device flow (user
//! code answered at once, polled by a background task on this node); `GET /oauth/callback`
//! finishes a browser flow on any node (RC13), once; `GET /api/flows/{id}` reports pending /
//! done / failed on any node. The logic is in [`crate::serve::authorize`] (also used by the
//! admin UI); these handlers only translate.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::serve::AppState;
use crate::serve::auth;
use crate::serve::authorize::{self, Callback, FlowKind, FlowStatus, Started};
use crate::serve::error::{ApiError, ErrorBody};

/// Body of `POST /api/integrations/{name}/authorize`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct AuthorizeBody {
    /// The mailbox to authorize (login hint; the identity is checked against it; the protocols
    /// of its channels decide which tokens are obtained). Empty: the account that signs in.
    pub mailbox: String,
    /// `browser` or `device`.
    pub flow: String,
}

/// Start authorizing a mailbox: a browser flow answers the URL to send the browser to; a
/// device flow answers the user code and where to enter it. Poll `GET /api/flows/{flow_id}`.
#[utoipa::path(post, path = "/api/integrations/{name}/authorize", tag = "integrations",
    params(("name" = String, Path)), request_body = AuthorizeBody,
    responses((status = 200, body = Started), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn authorize(
    State(state): State<AppState>,
    axum::Extension(who): axum::Extension<crate::serve::auth::Principal>,
    Path(name): Path<String>,
    Json(body): Json<AuthorizeBody>,
) -> Result<Json<Started>, ApiError> {
    let flow = FlowKind::parse(&body.flow)?;
    Ok(Json(
        authorize::start(&state, &who.user, &name, &body.mailbox, flow).await?,
    ))
}

/// The identity provider sends the browser back here; any node finishes the flow, once. A
/// browser logged in to the admin UI is sent on to the flow's page there
/// (`/integrations/{name}/flows/{flow_id}`: who signed in, or why it failed); any other gets the
/// outcome as text.
#[utoipa::path(get, path = "/oauth/callback", tag = "integrations", params(Callback),
    responses((status = 200, description = "authorized", content_type = "text/plain"),
              (status = 303, description = "a browser with an admin session: on to the flow's page"),
              (status = 400, description = "unknown, expired or reused state, or the provider refused", content_type = "text/plain")))]
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<Callback>,
) -> Response {
    let answer = authorize::callback(&state, &q).await;
    if let Some(page) = flow_page(&state, &headers, &q).await {
        return Redirect::to(&page).into_response();
    }
    match answer {
        Ok((mailbox, integration)) => (
            StatusCode::OK,
            format!(
                "Authorized {mailbox} for integration {integration}. You can close this window.\n"
            ),
        )
            .into_response(),
        Err(msg) => (
            StatusCode::BAD_REQUEST,
            format!("Authorization failed: {msg}\n"),
        )
            .into_response(),
    }
}

/// The admin UI's page of the flow the callback names, when the browser has a session there
/// and the flow exists (finished now, or before: a reused state shows the first outcome).
async fn flow_page(state: &AppState, headers: &HeaderMap, q: &Callback) -> Option<String> {
    let flow_id = q.state.as_deref().filter(|s| !s.is_empty())?;
    auth::principal(state, &Method::GET, headers).await.ok()?;
    let flow = state.store.api_flow(flow_id).await.ok()??;
    let enc = |s: &str| -> String { url::form_urlencoded::byte_serialize(s.as_bytes()).collect() };
    Some(format!(
        "/integrations/{}/flows/{}",
        enc(&flow.integration),
        enc(&flow.flow_id)
    ))
}

/// A flow's state: `pending`, `done` (with `authorized`, the document of
/// `intake authorize --json`) or `failed` (with `error`, decoded, and its root cause).
#[utoipa::path(get, path = "/api/flows/{flow_id}", tag = "integrations",
    params(("flow_id" = String, Path)),
    responses((status = 200, body = FlowStatus), (status = 404, body = ErrorBody)))]
pub async fn flow(
    State(state): State<AppState>,
    Path(flow_id): Path<String>,
) -> Result<Json<FlowStatus>, ApiError> {
    authorize::status(&state.store, &flow_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no flow {flow_id} (unknown or expired)")))
}
