//! `/api/integrations` and `/api/channels`: the configuration kept in the database. Bodies are
//! the TOML tables' keys as JSON; every change is checked by the same code as the file
//! ([`crate::serve::live::Live::check`] → `settings::resolve`), errors name the table and key;
//! entries imported from the file are read-only here; secrets are write-only
//! ([`crate::serve::redact`]); every change is in the audit log (key names, never values) and
//! reaches every node within a few seconds.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use intake_core::integration::IntegrationConfig;
use intake_store::config_store::{ConfigEntry, Kind, MANAGED_BY_API, MANAGED_BY_FILE};
use serde_json::{Value, json};

use crate::serve::AppState;
use crate::serve::auth::Principal;
use crate::serve::error::{ApiError, ErrorBody};
use crate::serve::redact;

/// An integration as the API shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct IntegrationView {
    pub name: String,
    /// `file` (imported from --config: read-only here) or `api`.
    pub managed_by: String,
    pub read_only: bool,
    /// The table's keys; secrets as `{"set": true, "expires": …}`.
    #[schema(value_type = Object)]
    pub table: Value,
    /// Derived endpoints (authorize, token, device, IMAP/POP3/SMTP hosts, Graph).
    #[schema(value_type = Object)]
    pub endpoints: Value,
    /// Scopes requested per protocol.
    #[schema(value_type = Object)]
    pub scopes: Value,
    /// Lint findings (errors refuse the integration; warnings are advice).
    #[schema(value_type = Vec<Object>)]
    pub findings: Value,
}

/// A channel as the API shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    pub name: String,
    pub managed_by: String,
    pub read_only: bool,
    pub paused: bool,
    /// The table's keys; a password as `{"set": true}`.
    #[schema(value_type = Object)]
    pub table: Value,
}

/// `GET /api/channels/{name}/status`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ChannelStatus {
    pub name: String,
    /// `running`, `paused`, `failing` or `stopped`.
    pub state: String,
    /// The node holding the channel's lease.
    pub node: Option<String>,
    pub lease_expires_at: Option<i64>,
    /// Unix seconds of the last round that went through.
    pub last_success_at: Option<i64>,
    /// The last error, naming the stage and its root cause when known.
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// Failing since (Unix seconds), while failing.
    pub failing_since: Option<i64>,
    /// Messages by outcome.
    pub counts: BTreeMap<String, i64>,
    /// Messages the channel's last listing found without an outcome yet, counted down as its
    /// batches commit (0 once drained). Null until a node has listed the channel.
    pub backlog: Option<i64>,
    /// When `backlog` was last recorded (Unix seconds).
    pub backlog_at: Option<i64>,
}

fn integration_view(e: &ConfigEntry) -> IntegrationView {
    let (endpoints, scopes, findings) =
        match serde_json::from_value::<IntegrationConfig>(e.body.clone()) {
            Ok(i) => match i.resolve() {
                Ok(r) => (
                    serde_json::to_value(&r.endpoints).unwrap_or(Value::Null),
                    serde_json::to_value(&r.scopes).unwrap_or(Value::Null),
                    serde_json::to_value(&r.warnings).unwrap_or(Value::Null),
                ),
                Err(f) => (
                    Value::Null,
                    Value::Null,
                    serde_json::to_value(&f).unwrap_or(Value::Null),
                ),
            },
            Err(_) => (Value::Null, Value::Null, json!([])),
        };
    IntegrationView {
        name: e.name.clone(),
        managed_by: e.managed_by.clone(),
        read_only: e.managed_by == MANAGED_BY_FILE,
        table: redact::for_answer(Kind::Integration, &e.body),
        endpoints,
        scopes,
        findings,
    }
}

fn channel_view(e: &ConfigEntry) -> ChannelView {
    ChannelView {
        name: e.name.clone(),
        managed_by: e.managed_by.clone(),
        read_only: e.managed_by == MANAGED_BY_FILE,
        paused: e.paused,
        table: redact::for_answer(Kind::Channel, &e.body),
    }
}

async fn entries(state: &AppState) -> Result<Vec<ConfigEntry>, ApiError> {
    Ok(state.store.config_entries(&state.live.keys).await?)
}

fn find<'a>(
    entries: &'a [ConfigEntry],
    kind: Kind,
    name: &str,
) -> Result<&'a ConfigEntry, ApiError> {
    entries
        .iter()
        .find(|e| e.kind == kind && e.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no {} named {name:?}", kind.as_str())))
}

fn writable(e: &ConfigEntry) -> Result<(), ApiError> {
    if e.managed_by == MANAGED_BY_FILE {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "read_only",
            format!(
                "{} {:?} is managed by the configuration file (--config): change it there and restart, or remove it from the file to manage it here",
                e.kind.as_str(),
                e.name
            ),
        ));
    }
    Ok(())
}

/// Check the whole candidate set with the file's validation.
fn check(state: &AppState, candidate: &[ConfigEntry]) -> Result<(), ApiError> {
    state
        .live
        .check(candidate)
        .map(|_| ())
        .map_err(|e| ApiError::invalid(e.to_string()))
}

fn keys_of(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

async fn create(
    state: &AppState,
    who: &Principal,
    kind: Kind,
    body: Value,
) -> Result<ConfigEntry, ApiError> {
    let name = body
        .get("name")
        .and_then(|n| n.as_str())
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid(format!("{}: `name` is missing or empty", kind.as_str())))?
        .to_string();
    let mut all = entries(state).await?;
    if all.iter().any(|e| e.kind == kind && e.name == name) {
        return Err(ApiError::conflict(format!(
            "a {} named {name:?} exists already",
            kind.as_str()
        )));
    }
    let entry = ConfigEntry {
        kind,
        name: name.clone(),
        body: body.clone(),
        managed_by: MANAGED_BY_API.into(),
        paused: false,
        updated_at: intake_store::now(),
    };
    all.push(entry.clone());
    check(state, &all)?;
    state
        .store
        .put_config_entry(&state.live.keys, kind, &name, &body, MANAGED_BY_API)
        .await?;
    state
        .store
        .audit(
            &who.user,
            &format!("{}_created", kind.as_str()),
            &name,
            json!({"keys": keys_of(&body)}),
        )
        .await?;
    state.live.reload_now().await;
    Ok(entry)
}

async fn patch(
    state: &AppState,
    who: &Principal,
    kind: Kind,
    name: &str,
    change: Value,
) -> Result<ConfigEntry, ApiError> {
    if !change.is_object() {
        return Err(ApiError::invalid(
            "the body must be a JSON object of the keys to change",
        ));
    }
    if let Some(n) = change.get("name")
        && n.as_str() != Some(name)
    {
        return Err(ApiError::invalid(format!(
            "{}: `name` cannot change (create a new one and delete {name:?})",
            kind.as_str()
        )));
    }
    let mut all = entries(state).await?;
    let e = find(&all, kind, name)?.clone();
    writable(&e)?;
    let mut body = e.body.clone();
    redact::merge(&mut body, &change);
    for x in all.iter_mut().filter(|x| x.kind == kind && x.name == name) {
        x.body = body.clone();
    }
    check(state, &all)?;
    state
        .store
        .put_config_entry(&state.live.keys, kind, name, &body, MANAGED_BY_API)
        .await?;
    state
        .store
        .audit(
            &who.user,
            &format!("{}_changed", kind.as_str()),
            name,
            json!({"keys": keys_of(&change)}),
        )
        .await?;
    state.live.reload_now().await;
    Ok(ConfigEntry { body, ..e })
}

async fn delete(state: &AppState, who: &Principal, kind: Kind, name: &str) -> Result<(), ApiError> {
    let all = entries(state).await?;
    let e = find(&all, kind, name)?;
    writable(e)?;
    let rest: Vec<ConfigEntry> = all
        .iter()
        .filter(|x| !(x.kind == kind && x.name == name))
        .cloned()
        .collect();
    check(state, &rest)?;
    state.store.delete_config_entry(kind, name).await?;
    state
        .store
        .audit(
            &who.user,
            &format!("{}_deleted", kind.as_str()),
            name,
            json!({}),
        )
        .await?;
    state.live.reload_now().await;
    Ok(())
}

/// All integrations.
#[utoipa::path(get, path = "/api/integrations", tag = "integrations",
    responses((status = 200, body = Vec<IntegrationView>), (status = 401, body = ErrorBody)))]
pub async fn list_integrations(
    State(state): State<AppState>,
) -> Result<Json<Vec<IntegrationView>>, ApiError> {
    Ok(Json(
        entries(&state)
            .await?
            .iter()
            .filter(|e| e.kind == Kind::Integration)
            .map(integration_view)
            .collect(),
    ))
}

/// Create an integration (the keys of an `[[integration]]` table).
#[utoipa::path(post, path = "/api/integrations", tag = "integrations", request_body = Object,
    responses((status = 201, body = IntegrationView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_integration(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let e = create(&state, &who, Kind::Integration, body).await?;
    Ok((StatusCode::CREATED, Json(integration_view(&e))).into_response())
}

/// One integration, with its derived endpoints, scopes and lint findings.
#[utoipa::path(get, path = "/api/integrations/{name}", tag = "integrations",
    params(("name" = String, Path)),
    responses((status = 200, body = IntegrationView), (status = 404, body = ErrorBody)))]
pub async fn get_integration(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<IntegrationView>, ApiError> {
    let all = entries(&state).await?;
    Ok(Json(integration_view(find(
        &all,
        Kind::Integration,
        &name,
    )?)))
}

/// Change keys of an integration (JSON merge patch; `null` removes a key).
#[utoipa::path(patch, path = "/api/integrations/{name}", tag = "integrations",
    params(("name" = String, Path)), request_body = Object,
    responses((status = 200, body = IntegrationView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn patch_integration(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    Json(change): Json<Value>,
) -> Result<Json<IntegrationView>, ApiError> {
    let e = patch(&state, &who, Kind::Integration, &name, change).await?;
    Ok(Json(integration_view(&e)))
}

/// Delete an integration (refused while a channel uses it).
#[utoipa::path(delete, path = "/api/integrations/{name}", tag = "integrations",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delete_integration(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete(&state, &who, Kind::Integration, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// All channels.
#[utoipa::path(get, path = "/api/channels", tag = "channels",
    responses((status = 200, body = Vec<ChannelView>), (status = 401, body = ErrorBody)))]
pub async fn list_channels(
    State(state): State<AppState>,
) -> Result<Json<Vec<ChannelView>>, ApiError> {
    Ok(Json(
        entries(&state)
            .await?
            .iter()
            .filter(|e| e.kind == Kind::Channel)
            .map(channel_view)
            .collect(),
    ))
}

/// Create a channel (the keys of a `[[channel]]` table); it starts on some node within seconds.
#[utoipa::path(post, path = "/api/channels", tag = "channels", request_body = Object,
    responses((status = 201, body = ChannelView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_channel(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let e = create(&state, &who, Kind::Channel, body).await?;
    Ok((StatusCode::CREATED, Json(channel_view(&e))).into_response())
}

/// One channel.
#[utoipa::path(get, path = "/api/channels/{name}", tag = "channels",
    params(("name" = String, Path)),
    responses((status = 200, body = ChannelView), (status = 404, body = ErrorBody)))]
pub async fn get_channel(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ChannelView>, ApiError> {
    let all = entries(&state).await?;
    Ok(Json(channel_view(find(&all, Kind::Channel, &name)?)))
}

/// Change keys of a channel (JSON merge patch); it restarts with them on its node.
#[utoipa::path(patch, path = "/api/channels/{name}", tag = "channels",
    params(("name" = String, Path)), request_body = Object,
    responses((status = 200, body = ChannelView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn patch_channel(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    Json(change): Json<Value>,
) -> Result<Json<ChannelView>, ApiError> {
    let e = patch(&state, &who, Kind::Channel, &name, change).await?;
    Ok(Json(channel_view(&e)))
}

/// Delete a channel: it stops and releases its lease (its ledger and tickets stay).
#[utoipa::path(delete, path = "/api/channels/{name}", tag = "channels",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_channel(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete(&state, &who, Kind::Channel, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_paused(
    state: &AppState,
    who: &Principal,
    name: &str,
    paused: bool,
) -> Result<ChannelView, ApiError> {
    let all = entries(state).await?;
    find(&all, Kind::Channel, name)?;
    state.store.set_channel_paused(name, paused).await?;
    state
        .store
        .audit(
            &who.user,
            if paused {
                "channel_paused"
            } else {
                "channel_resumed"
            },
            name,
            json!({}),
        )
        .await?;
    state.live.reload_now().await;
    let all = entries(state).await?;
    Ok(channel_view(find(&all, Kind::Channel, name)?))
}

/// Pause a channel: it stops on its node (batch in hand finished) until resumed. Allowed for
/// file-managed channels too (pausing is not configuration).
#[utoipa::path(post, path = "/api/channels/{name}/pause", tag = "channels",
    params(("name" = String, Path)),
    responses((status = 200, body = ChannelView), (status = 404, body = ErrorBody)))]
pub async fn pause_channel(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<ChannelView>, ApiError> {
    Ok(Json(set_paused(&state, &who, &name, true).await?))
}

/// Resume a paused channel.
#[utoipa::path(post, path = "/api/channels/{name}/resume", tag = "channels",
    params(("name" = String, Path)),
    responses((status = 200, body = ChannelView), (status = 404, body = ErrorBody)))]
pub async fn resume_channel(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<ChannelView>, ApiError> {
    Ok(Json(set_paused(&state, &who, &name, false).await?))
}

/// A channel's state: running / paused / failing / stopped, the node holding its lease, the
/// last success, the last error and since when it fails, counts per outcome.
#[utoipa::path(get, path = "/api/channels/{name}/status", tag = "channels",
    params(("name" = String, Path)),
    responses((status = 200, body = ChannelStatus), (status = 404, body = ErrorBody)))]
pub async fn channel_status(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ChannelStatus>, ApiError> {
    let all = entries(&state).await?;
    let e = find(&all, Kind::Channel, &name)?;
    let lease = state
        .store
        .lease_holder(&name)
        .await?
        .filter(|(_, exp)| *exp > intake_store::now());
    let health = state.store.channel_health(&name).await?;
    let backlog = state.store.channel_backlog(&name).await?;
    let failing_since = health.as_ref().and_then(|h| h.failing_since);
    let state_word = if e.paused {
        "paused"
    } else if failing_since.is_some() {
        "failing"
    } else if lease.is_some() {
        "running"
    } else {
        "stopped"
    };
    Ok(Json(ChannelStatus {
        name: name.clone(),
        state: state_word.into(),
        node: lease.as_ref().map(|(n, _)| n.clone()),
        lease_expires_at: lease.map(|(_, e)| e),
        last_success_at: health.as_ref().and_then(|h| h.last_success_at),
        last_error: health.as_ref().and_then(|h| h.last_error.clone()),
        last_error_at: health.as_ref().and_then(|h| h.last_error_at),
        failing_since,
        counts: state
            .store
            .outcome_counts(&name)
            .await?
            .into_iter()
            .collect(),
        backlog: backlog.map(|(n, _)| n),
        backlog_at: backlog.map(|(_, at)| at),
    }))
}

/// Run the staged connection check of a channel (token, DNS, TCP/proxy, TLS and login,
/// folder, counts; counts only, nothing fetched or changed) with the doctor's findings: the same
/// document as the channel's element of `intake doctor --json`: `{channel, protocol, ok,
/// stages: [{stage, target, ok, detail}], counts, root_cause, findings, integration,
/// outgoing}`. Answers 200 whether the check passed or not (`ok` and the findings say).
#[utoipa::path(post, path = "/api/channels/{name}/test", tag = "channels",
    params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn test_channel(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r = crate::serve::channel_test::test(&state, &who.user, &name).await?;
    Ok(Json(crate::serve::channel_test::document(&r)))
}

/// The channel test as Server-Sent Events: `event: stage` with `{stage, target, ok, detail}`
/// for each stage as it finishes, then `event: result` with the whole document of `POST
/// /api/channels/{name}/test` (or `event: error` with `{error, message}`).
#[utoipa::path(get, path = "/api/channels/{name}/test/stream", tag = "channels",
    params(("name" = String, Path)),
    responses((status = 200, description = "Server-Sent Events: stage…, then result or error", content_type = "text/event-stream")))]
pub async fn test_channel_stream(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    crate::serve::channel_test::stream(state, who.user, name).into_response()
}
