//! Authorization over the API (browser flow): `POST /api/integrations/{name}/authorize` starts
//! an authorization-code + PKCE flow whose redirect URI is `PUBLIC_URL/oauth/callback`; the
//! pending flow is in the database, so `GET /oauth/callback` finishes it on any node (RC13), once
//! (the flow is taken; an unknown, expired or reused `state` is refused); `GET /api/flows/{id}`
//! reports pending / done (identity, audience, warnings) / failed (the decoded error), from the
//! mail log, on any node. The device flow is not offered here yet.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use intake_core::lint::{check_identity_matches_mailbox, check_token_for_protocol};
use intake_mail::oauth::OAuthClient;
use serde_json::{Value, json};

use crate::oauth::TokenService;
use crate::serve::AppState;
use crate::serve::error::{ApiError, ErrorBody};

/// Body of `POST /api/integrations/{name}/authorize`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct AuthorizeBody {
    /// The mailbox to authorize (login hint; the identity is checked against it).
    pub mailbox: String,
    /// `browser` (only this one for now).
    pub flow: String,
}

/// A started browser flow.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct FlowStarted {
    /// Send the browser here.
    pub url: String,
    pub flow_id: String,
    pub redirect_uri: String,
    pub expires_in: i64,
}

fn redirect_uri(state: &AppState) -> String {
    let base = state.options.public_url.as_str().trim_end_matches('/');
    format!("{base}/oauth/callback")
}

fn service(state: &AppState) -> Result<TokenService, ApiError> {
    let snap = state.live.snapshot();
    let keys = intake_store::Keyring::from_env_or_file(&snap.settings.config.secret_key_file())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(TokenService::new(state.store.clone(), keys))
}

fn client(
    state: &AppState,
    name: &str,
) -> Result<(OAuthClient, intake_core::integration::ResolvedIntegration), ApiError> {
    let snap = state.live.snapshot();
    let i = snap
        .settings
        .integration(name)
        .map_err(|_| ApiError::not_found(format!("no integration named {name:?}")))?
        .clone();
    let c = OAuthClient::new(&i).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok((c, i))
}

/// Start authorizing a mailbox in the browser: answers the URL to send the browser to.
#[utoipa::path(post, path = "/api/integrations/{name}/authorize", tag = "integrations",
    params(("name" = String, Path)), request_body = AuthorizeBody,
    responses((status = 200, body = FlowStarted), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn authorize(
    State(state): State<AppState>,
    axum::Extension(who): axum::Extension<crate::serve::auth::Principal>,
    Path(name): Path<String>,
    Json(body): Json<AuthorizeBody>,
) -> Result<Json<FlowStarted>, ApiError> {
    if body.flow != "browser" {
        return Err(ApiError::invalid(format!(
            "flow = {:?}: only \"browser\" is offered through the API so far (use `intake authorize` for the device flow)",
            body.flow
        )));
    }
    let (client, integration) = client(&state, &name)?;
    let protocol = crate::oauth::default_protocol(&integration);
    let redirect = redirect_uri(&state);
    let url = service(&state)?
        .start_authorization(&client, body.mailbox.trim(), &redirect, protocol)
        .await
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let flow_id = url::Url::parse(&url)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v.to_string())
        })
        .ok_or_else(|| ApiError::internal("the authorize URL has no state"))?;
    state
        .store
        .audit(
            &who.user,
            "authorization_started",
            &name,
            json!({"mailbox": body.mailbox, "flow_id": flow_id}),
        )
        .await?;
    Ok(Json(FlowStarted {
        url,
        flow_id,
        redirect_uri: redirect,
        expires_in: crate::oauth::FLOW_SECONDS,
    }))
}

/// The callback's query.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct Callback {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// The identity provider sends the browser back here; any node finishes the flow, once.
#[utoipa::path(get, path = "/oauth/callback", tag = "integrations", params(Callback),
    responses((status = 200, description = "authorized", content_type = "text/plain"),
              (status = 400, description = "unknown, expired or reused state, or the provider refused", content_type = "text/plain")))]
pub async fn callback(State(state): State<AppState>, Query(q): Query<Callback>) -> Response {
    let refuse = |msg: String| {
        (
            StatusCode::BAD_REQUEST,
            format!("Authorization failed: {msg}\n"),
        )
            .into_response()
    };
    let Some(flow_id) = q.state.clone().filter(|s| !s.is_empty()) else {
        return refuse("the callback has no state".into());
    };
    let integration = match state.store.pending_flow_integration(&flow_id).await {
        Ok(Some(i)) => i,
        Ok(None) => return refuse("unknown, expired or already used state; start again".into()),
        Err(e) => return refuse(e.to_string()),
    };
    let fail = |error: String| {
        let store = state.store.clone();
        let (flow_id, integration) = (flow_id.clone(), integration.clone());
        async move {
            let _ = store
                .log_event(
                    None,
                    "warn",
                    "authorization_failed",
                    &format!("authorization for integration {integration} failed: {error}"),
                    json!({"flow_id": flow_id, "integration": integration, "error": error}),
                )
                .await;
            refuse(error)
        }
    };
    if let Some(e) = &q.error {
        // Take the flow so the state cannot be used again.
        let snap = state.live.snapshot();
        if let Ok(keys) =
            intake_store::Keyring::from_env_or_file(&snap.settings.config.secret_key_file())
        {
            let _ = state
                .store
                .take_flow(&keys, &flow_id, intake_store::now())
                .await;
        }
        return fail(format!(
            "{e}: {}",
            q.error_description.clone().unwrap_or_default()
        ))
        .await;
    }
    let Some(code) = q.code.clone() else {
        return fail("the callback has no code".into()).await;
    };
    let (svc, (client, resolved)) = match (service(&state), client(&state, &integration)) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(e), _) | (_, Err(e)) => return fail(e.message).await,
    };
    let protocol = crate::oauth::default_protocol(&resolved);
    match svc
        .complete_authorization(&client, &flow_id, &code, protocol)
        .await
    {
        Ok((mailbox, identity)) => {
            let mut warnings = check_token_for_protocol(&identity, protocol, resolved.cloud);
            warnings.extend(check_identity_matches_mailbox(&identity, &mailbox));
            let fields = json!({"flow_id": flow_id, "integration": integration, "mailbox": mailbox,
                "identity": identity, "warnings": warnings.iter().map(ToString::to_string).collect::<Vec<_>>()});
            let _ = state
                .store
                .log_event(
                    None,
                    "info",
                    "authorization_completed",
                    &format!("mailbox {mailbox} authorized for integration {integration}"),
                    fields,
                )
                .await;
            (StatusCode::OK, format!("Authorized {mailbox} for integration {integration}. You can close this window.\n")).into_response()
        }
        Err(e) => fail(e.to_string()).await,
    }
}

/// A flow's state: `pending`, `done` (mailbox, identity, warnings) or `failed` (error).
#[utoipa::path(get, path = "/api/flows/{flow_id}", tag = "integrations",
    params(("flow_id" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn flow(
    State(state): State<AppState>,
    Path(flow_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if let Some((kind, fields)) = state.store.flow_outcome(&flow_id).await? {
        let mut v = fields;
        v["state"] = json!(if kind == "authorization_completed" {
            "done"
        } else {
            "failed"
        });
        return Ok(Json(v));
    }
    if let Some(integration) = state.store.pending_flow_integration(&flow_id).await? {
        return Ok(Json(
            json!({"state": "pending", "flow_id": flow_id, "integration": integration}),
        ));
    }
    Err(ApiError::not_found(format!(
        "no flow {flow_id} (unknown or expired)"
    )))
}
