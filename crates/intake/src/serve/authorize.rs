//! Authorizing a mailbox through `intake serve` — the logic behind
//! `POST /api/integrations/{name}/authorize`, `GET /oauth/callback` and `GET /api/flows/{id}`
//! (serve/api/oauth.rs), as plain functions the admin UI (crates/intake/src/web) calls too.
//!
//! Both flows sign in once for the mailbox's [`AuthPlan`] — every protocol its channels use,
//! grouped by resource — exactly as `intake authorize` does: the sign-in gets the first
//! group's token, its refresh token is redeemed for the other group (Microsoft: Exchange and
//! Graph), and the document of `intake authorize --json` reports who signed in
//! ([`crate::signin`]).
//!
//! - **browser**: authorization code + PKCE with the redirect URI `PUBLIC_URL/oauth/callback`.
//!   The pending flow (sealed PKCE verifier) is in the database, so the callback finishes it on
//!   any node (RC13), once.
//! - **device**: the device authorization is requested at once and answered with the user code;
//!   a background task on this node polls the token endpoint (honouring `slow_down`) until the
//!   user finished, refused, or the code expired. The device code stays in that task's memory.
//!
//! Every flow has a row in `api_flows` ([`intake_store::flows`]): `pending`, then `done` with the
//! authorization document or `failed` with the decoded error and its root cause, so any node
//! answers `GET /api/flows/{id}`. A pending flow past its expiry is reported failed (`expired`:
//! the user did not finish in time, or the node polling a device flow stopped).

use intake_core::integration::ResolvedIntegration;
use intake_mail::oauth::{OAuthClient, OAuthError};
use intake_store::Store;
use serde_json::{Value, json};

use crate::oauth::{AuthPlan, FLOW_SECONDS, TokenError, TokenService};
use crate::serve::AppState;
use crate::serve::error::ApiError;
use crate::settings::Settings;
use crate::signin::{self, SignInError};

/// How the administrator signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKind {
    Browser,
    Device,
}

impl FlowKind {
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "browser" => Ok(Self::Browser),
            "device" => Ok(Self::Device),
            other => Err(ApiError::invalid(format!(
                "flow = {other:?}: expected \"browser\" or \"device\""
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Browser => "browser",
            Self::Device => "device",
        }
    }
}

/// A started flow: a browser flow has `url` and `redirect_uri`; a device flow has `user_code`,
/// `verification_uri` and `interval`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Started {
    /// `browser` or `device`.
    pub flow: String,
    /// Poll `GET /api/flows/{flow_id}` with it.
    pub flow_id: String,
    /// Seconds until the flow expires.
    pub expires_in: i64,
    /// browser: send the browser here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// browser: where the identity provider sends the browser back (register it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// device: the code the user enters at `verification_uri`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_code: Option<String>,
    /// device: where the user signs in, on any device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_uri: Option<String>,
    /// device: seconds between polls of the token endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
}

/// `GET /api/flows/{flow_id}`: the flow, and once finished its outcome: `done` carries
/// `authorized`, `failed` carries `error`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct FlowStatus {
    pub flow_id: String,
    /// `browser` or `device`.
    pub flow: String,
    /// `pending`, `done` or `failed`.
    pub state: String,
    pub integration: String,
    /// The mailbox the flow is for (done: the one authorized; empty when it was started
    /// without one and is still pending).
    pub mailbox: String,
    /// Unix seconds when a pending flow expires.
    pub expires_at: i64,
    /// done: the document of `intake authorize --json`: `integration`, `mailbox`, `username`,
    /// `tenant`, `audience`, `scopes`, `roles`, `expires_at` (the first token's), `granted` (the
    /// scopes its token endpoint answer granted), `warnings`
    /// (the pre-flight findings as sentences) and `tokens` (every token obtained: `protocols`,
    /// `resource`, `audience`, `scopes`, `roles`, `expires_at`, `granted`). Null otherwise.
    #[schema(value_type = Option<Object>)]
    pub authorized: Option<Value>,
    /// failed: why, decoded. Null otherwise.
    pub error: Option<FlowError>,
    /// A pending device flow: the code the user enters at `verification_uri`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_code: Option<String>,
    /// A pending device flow: where the user signs in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_uri: Option<String>,
}

/// Why a flow failed, decoded.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FlowError {
    /// The whole message (with the provider's error code and ids when it answered one).
    pub message: String,
    /// The provider's `error` (`access_denied`, `expired_token`, `invalid_grant`, …), or
    /// `expired` when the flow ran out of time unanswered.
    pub code: Option<String>,
    /// The decoded title.
    pub title: Option<String>,
    /// The root cause (`RC1`…), when known.
    pub root_cause: Option<String>,
    /// The AADSTS number, when Microsoft gave one.
    pub aadsts: Option<u32>,
    /// What to do about it.
    pub fix: Option<String>,
}

impl FlowError {
    fn plain(message: String) -> Self {
        Self {
            message,
            code: None,
            title: None,
            root_cause: None,
            aadsts: None,
            fix: None,
        }
    }

    fn from_oauth(e: &OAuthError) -> Self {
        match e {
            OAuthError::Endpoint { diagnosis, raw } => Self {
                message: e.to_string(),
                code: Some(raw.error.clone()),
                title: Some(diagnosis.title.clone()),
                root_cause: diagnosis.cause.map(|c| c.id().to_string()),
                aadsts: diagnosis.code,
                fix: Some(diagnosis.fix.clone()),
            },
            other => Self::plain(other.to_string()),
        }
    }

    fn from_token(e: &TokenError) -> Self {
        match e {
            TokenError::OAuth(o) => Self {
                message: e.to_string(),
                ..Self::from_oauth(o)
            },
            other => Self::plain(other.to_string()),
        }
    }

    fn from_signin(e: &SignInError) -> Self {
        match e.token_error() {
            Some(t) => Self {
                message: e.to_string(),
                ..Self::from_token(t)
            },
            None => Self::plain(e.to_string()),
        }
    }
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

fn client(settings: &Settings, name: &str) -> Result<(OAuthClient, ResolvedIntegration), ApiError> {
    let i = settings
        .integration(name)
        .map_err(|_| ApiError::not_found(format!("no integration named {name:?}")))?
        .clone();
    let c = OAuthClient::new(&i).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok((c, i))
}

/// The plan for `mailbox` (every protocol its channels use with `integration`; all channels'
/// protocols of the integration when `mailbox` is empty).
pub fn plan_for(settings: &Settings, integration: &ResolvedIntegration, mailbox: &str) -> AuthPlan {
    AuthPlan::new(
        integration,
        &crate::cli::authorize::channel_protocols(
            settings,
            &integration.name,
            (!mailbox.is_empty()).then_some(mailbox),
        ),
    )
}

/// Consent for every resource of the plan (the token comes one resource at a time).
fn consent(plan: &AuthPlan, integration: &ResolvedIntegration) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for n in 0..plan.groups.len() {
        for s in plan.scopes(integration, n) {
            if !all.contains(&s) {
                all.push(s);
            }
        }
    }
    all
}

fn new_flow_id() -> Result<String, ApiError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| ApiError::internal(format!("no random numbers: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Start authorizing `mailbox` for integration `name` with `flow`; `actor` goes to the audit
/// log.
pub async fn start(
    state: &AppState,
    actor: &str,
    name: &str,
    mailbox: &str,
    flow: FlowKind,
) -> Result<Started, ApiError> {
    let snap = state.live.snapshot();
    let settings = snap.settings.clone();
    let (client, integration) = client(&settings, name)?;
    let mailbox = mailbox.trim().to_string();
    if integration.grant == intake_core::preset::Grant::ClientCredentials {
        return Err(ApiError::invalid(format!(
            "integration {name} uses client credentials: there is nobody to sign in (tokens are taken when a channel needs one)"
        )));
    }
    let plan = plan_for(&settings, &integration, &mailbox);
    let started = match flow {
        FlowKind::Browser => {
            let redirect = redirect_uri(state);
            let url = service(state)?
                .start_authorization_with(
                    &client,
                    &mailbox,
                    &redirect,
                    &consent(&plan, &integration),
                )
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
                .start_api_flow(
                    &flow_id,
                    "browser",
                    name,
                    &mailbox,
                    crate::runner::node(),
                    intake_store::now() + FLOW_SECONDS,
                )
                .await?;
            Started {
                flow: "browser".into(),
                flow_id,
                expires_in: FLOW_SECONDS,
                url: Some(url),
                redirect_uri: Some(redirect),
                user_code: None,
                verification_uri: None,
                interval: None,
            }
        }
        FlowKind::Device => {
            if integration.endpoints.device_authorization_url.is_none() {
                return Err(ApiError::invalid(format!(
                    "integration {name} has no device-code endpoint ({} does not offer device sign-in for mail): use flow \"browser\"",
                    integration.provider.as_str()
                )));
            }
            let scopes = plan.scopes(&integration, 0);
            let sign_in = client
                .start_device(&scopes)
                .await
                .map_err(|e| ApiError::invalid(format!("the device authorization failed: {e}")))?;
            let flow_id = new_flow_id()?;
            let expires_in = sign_in.expires_in.as_secs() as i64;
            state
                .store
                .start_api_flow(
                    &flow_id,
                    "device",
                    name,
                    &mailbox,
                    crate::runner::node(),
                    intake_store::now() + expires_in,
                )
                .await?;
            // Any node's page shows the code while the flow is pending.
            state
                .store
                .set_api_flow_prompt(
                    &flow_id,
                    &json!({"user_code": sign_in.user_code, "verification_uri": sign_in.verification_uri}),
                )
                .await?;
            let started = Started {
                flow: "device".into(),
                flow_id: flow_id.clone(),
                expires_in,
                url: None,
                redirect_uri: None,
                user_code: Some(sign_in.user_code.clone()),
                verification_uri: Some(sign_in.verification_uri.clone()),
                interval: Some(sign_in.interval.as_secs() as i64),
            };
            let tokens = service(state)?;
            let store = state.store.clone();
            let mailbox = mailbox.clone();
            tokio::spawn(async move {
                let result = poll_device(
                    &tokens,
                    &client,
                    &integration,
                    &settings,
                    &mailbox,
                    &plan,
                    &sign_in,
                    &scopes,
                )
                .await;
                record(&store, &flow_id, &integration.name, result).await;
            });
            started
        }
    };
    state
        .store
        .audit(
            actor,
            "authorization_started",
            name,
            json!({"mailbox": mailbox, "flow": flow.as_str(), "flow_id": started.flow_id}),
        )
        .await?;
    Ok(started)
}

/// The device flow's background part: poll until the user finished, save the tokens, redeem
/// the other resources. Returns (mailbox, document) or the decoded error.
#[allow(clippy::too_many_arguments)]
async fn poll_device(
    tokens: &TokenService,
    client: &OAuthClient,
    integration: &ResolvedIntegration,
    settings: &Settings,
    hint: &str,
    plan: &AuthPlan,
    sign_in: &intake_mail::oauth::DeviceSignIn,
    scopes: &[String],
) -> Result<(String, Value), FlowError> {
    let t = client
        .finish_device(sign_in, scopes)
        .await
        .map_err(|e| FlowError::from_oauth(&e))?;
    let id_token = t
        .id_token
        .as_ref()
        .map(|s| secrecy::ExposeSecret::expose_secret(s).to_string());
    let id = intake_mail::oauth::claims::identity(
        secrecy::ExposeSecret::expose_secret(&t.access_token),
        id_token.as_deref(),
    );
    let mailbox = if hint.is_empty() {
        id.username.clone().unwrap_or_default().to_lowercase()
    } else {
        hint.to_string()
    };
    let plan = if hint.is_empty() {
        plan_for(settings, integration, &mailbox)
    } else {
        plan.clone()
    };
    tokens
        .save(client, &mailbox, plan.groups[0].1[0], &t)
        .await
        .map_err(|e| FlowError::from_token(&e))?;
    finish(tokens, client, integration, &mailbox, &plan, (id, t)).await
}

/// Redeem the plan's other resources and make the document.
async fn finish(
    tokens: &TokenService,
    client: &OAuthClient,
    integration: &ResolvedIntegration,
    mailbox: &str,
    plan: &AuthPlan,
    first: (
        intake_core::token::TokenIdentity,
        intake_core::token::TokenSet,
    ),
) -> Result<(String, Value), FlowError> {
    let got = signin::redeem_rest(tokens, client, integration, mailbox, plan, first)
        .await
        .map_err(|e| FlowError::from_signin(&e))?;
    let findings = signin::findings(integration, mailbox, &got);
    Ok((
        mailbox.to_string(),
        signin::document(integration, mailbox, &got, &findings),
    ))
}

/// Record a finished flow (`api_flows`, the mail log) and count it in `/metrics`.
async fn record(
    store: &Store,
    flow_id: &str,
    integration: &str,
    result: Result<(String, Value), FlowError>,
) {
    let (state, doc, level, kind, message) = match result {
        Ok((mailbox, doc)) => (
            "done",
            doc,
            "info",
            "authorization_completed",
            format!("mailbox {mailbox} authorized for integration {integration}"),
        ),
        Err(e) => {
            let message = format!(
                "authorization for integration {integration} failed: {}",
                e.message
            );
            (
                "failed",
                json!({ "error": e }),
                "warn",
                "authorization_failed",
                message,
            )
        }
    };
    metrics::counter!("intake_authorizations_total", "result" => state).increment(1);
    if let Err(e) = store.finish_api_flow(flow_id, state, &doc).await {
        tracing::error!(flow_id, error = %e, "could not record the end of an authorization flow");
    }
    let mut fields = json!({"flow_id": flow_id, "integration": integration});
    if let Some(w) = doc.get("warnings") {
        fields["warnings"] = w.clone();
    }
    if let Some(e) = doc.get("error") {
        fields["error"] = e["message"].clone();
        fields["root_cause"] = e["root_cause"].clone();
    }
    let _ = store.log_event(None, level, kind, &message, fields).await;
}

/// The callback's query.
#[derive(Debug, Clone, serde::Deserialize, utoipa::IntoParams)]
pub struct Callback {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Finish a browser flow from its callback, on whichever node receives it: `Ok` with the
/// mailbox and integration authorized, or `Err` with why (an unknown, expired or reused state
/// is refused without touching any flow).
pub async fn callback(state: &AppState, q: &Callback) -> Result<(String, String), String> {
    let Some(flow_id) = q.state.clone().filter(|s| !s.is_empty()) else {
        return Err("the callback has no state".into());
    };
    let integration = match state.store.pending_flow_integration(&flow_id).await {
        Ok(Some(i)) => i,
        Ok(None) => return Err("unknown, expired or already used state; start again".into()),
        Err(e) => return Err(e.to_string()),
    };
    let result = callback_flow(state, &flow_id, &integration, q).await;
    let answer = result
        .as_ref()
        .map(|(m, _)| (m.clone(), integration.clone()))
        .map_err(|e| e.message.clone());
    record(&state.store, &flow_id, &integration, result).await;
    answer
}

async fn callback_flow(
    state: &AppState,
    flow_id: &str,
    integration: &str,
    q: &Callback,
) -> Result<(String, Value), FlowError> {
    let svc = service(state).map_err(|e| FlowError::plain(e.message))?;
    let snap = state.live.snapshot();
    let settings = snap.settings.clone();
    if let Some(e) = &q.error {
        // Take the flow so the state cannot be used again.
        if let Ok(keys) =
            intake_store::Keyring::from_env_or_file(&settings.config.secret_key_file())
        {
            let _ = state
                .store
                .take_flow(&keys, flow_id, intake_store::now())
                .await;
        }
        let raw = intake_core::aadsts::TokenEndpointError {
            error: e.clone(),
            error_description: q.error_description.clone(),
            ..Default::default()
        };
        let d = intake_core::aadsts::classify(&raw);
        return Err(FlowError {
            message: format!("{e}: {}", q.error_description.clone().unwrap_or_default()),
            code: Some(e.clone()),
            title: Some(d.title.clone()),
            root_cause: d.cause.map(|c| c.id().to_string()),
            aadsts: d.code,
            fix: Some(d.fix.clone()),
        });
    }
    let Some(code) = q.code.clone() else {
        return Err(FlowError::plain("the callback has no code".into()));
    };
    let (client, resolved) =
        client(&settings, integration).map_err(|e| FlowError::plain(e.message))?;
    let (mailbox, id, plan, t) = svc
        .complete_authorization_with(&client, flow_id, &code, |m| {
            plan_for(&settings, &resolved, m)
        })
        .await
        .map_err(|e| FlowError::from_token(&e))?;
    let mailbox = if mailbox.is_empty() {
        id.username.clone().unwrap_or_default().to_lowercase()
    } else {
        mailbox
    };
    finish(&svc, &client, &resolved, &mailbox, &plan, (id, t)).await
}

/// A flow's state, on any node. `None` when the flow is unknown (or older than a week).
pub async fn status(store: &Store, flow_id: &str) -> Result<Option<FlowStatus>, ApiError> {
    let Some(f) = store.api_flow(flow_id).await? else {
        return Ok(None);
    };
    let mut out = FlowStatus {
        flow_id: f.flow_id,
        flow: f.kind,
        state: f.state,
        integration: f.integration,
        mailbox: f.mailbox,
        expires_at: f.expires_at,
        authorized: None,
        error: None,
        user_code: None,
        verification_uri: None,
    };
    let doc = f.result.unwrap_or(Value::Null);
    match out.state.as_str() {
        "done" => {
            if let Some(m) = doc["mailbox"].as_str() {
                out.mailbox = m.to_string();
            }
            out.authorized = Some(doc);
        }
        "failed" => {
            out.error = serde_json::from_value(doc["error"].clone()).ok();
        }
        _ if out.expires_at <= intake_store::now() => {
            out.state = "failed".into();
            out.error = Some(FlowError {
                code: Some("expired".into()),
                title: Some("the flow expired unanswered".into()),
                fix: Some(
                    "start the authorization again and finish the sign-in before it expires".into(),
                ),
                ..FlowError::plain(format!(
                    "the {} flow expired before it finished (the sign-in was not completed in time{})",
                    out.flow,
                    if out.flow == "device" {
                        ", or the node polling it stopped"
                    } else {
                        ""
                    }
                ))
            });
        }
        _ => {
            let text = |k: &str| doc[k].as_str().map(str::to_string);
            out.user_code = text("user_code");
            out.verification_uri = text("verification_uri");
        }
    }
    Ok(Some(out))
}
