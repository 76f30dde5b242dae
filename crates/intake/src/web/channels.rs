//! `GET /channels` (every channel: protocol, mailbox, folder, integration, post-action, state,
//! the last error, pause / resume, its recent mail log) and `POST /channels/{name}/pause|resume`
//! through serve's handlers (audited, reaching every node).

use askama::Template;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use intake_store::browse::LogQuery;

use axum::{Form, Json};

use super::channel_form::{self, ChannelForm, Probe};
use super::{Layout, PageError, fmt, render};
use crate::serve::AppState;
use crate::serve::api::config;
use crate::serve::auth::Principal;

pub struct ChannelRow {
    pub name: String,
    pub facts: Vec<(String, String)>,
    pub state: String,
    pub state_text: String,
    pub error: Option<String>,
    pub paused: bool,
    pub read_only: bool,
    pub log: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "channels.html")]
struct Page {
    layout: Layout,
    channels: Vec<ChannelRow>,
    /// The new-channel form ([`super::channel_form`]).
    form: ChannelForm,
    integrations: Vec<String>,
    probe: Option<Probe>,
    form_error: Option<String>,
}

/// The table keys shown, in order, with their labels.
const FACTS: &[(&str, &str)] = &[
    ("protocol", "Protocol"),
    ("host", "Server"),
    ("user", "Mailbox"),
    ("mailbox", "Mailbox"),
    ("path", "Path"),
    ("folder", "Folder"),
    ("auth", "Authentication"),
    ("project", "Project"),
    ("after", "After ingest"),
    ("start", "First sync"),
];

/// `GET /channels`.
pub async fn page(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, PageError> {
    show(&state, &who, StatusCode::OK, ChannelForm::new(), None, None).await
}

/// `POST /channels`: `action=folders` lists the mailbox's folders and counts the chosen one
/// with the values typed; `action=save` creates the channel through the API's handler.
pub async fn submit(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Form(mut form): Form<ChannelForm>,
) -> Result<Response, PageError> {
    if form.action == "save" {
        let answer = config::create_channel(
            State(state.clone()),
            Extension(who.clone()),
            Json(form.body()),
        )
        .await;
        return match answer {
            Ok(_) => Ok(Redirect::to("/channels").into_response()),
            Err(e) => {
                form.password.clear();
                show(&state, &who, e.status, form, None, Some(e.message)).await
            }
        };
    }
    let (probe, error) = match channel_form::probe(&state, &form).await {
        Ok(p) => (Some(p), None),
        Err(e) => (None, Some(e)),
    };
    // The password stays in the form only while it is being typed into: a page never sends it
    // back, so it must be typed again to save.
    form.password.clear();
    show(&state, &who, StatusCode::OK, form, probe, error).await
}

async fn show(
    state: &AppState,
    who: &Principal,
    status: StatusCode,
    form: ChannelForm,
    probe: Option<Probe>,
    form_error: Option<String>,
) -> Result<Response, PageError> {
    let now = intake_store::now();
    let mut channels = Vec::new();
    let integrations = config::list_integrations(State(state.clone()))
        .await?
        .0
        .into_iter()
        .map(|i| i.name)
        .collect();
    for c in config::list_channels(State(state.clone())).await?.0 {
        let st = config::channel_status(State(state.clone()), Path(c.name.clone()))
            .await?
            .0;
        let facts = FACTS
            .iter()
            .filter_map(|(k, label)| {
                let v = c.table.get(*k)?;
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Object(_) => "set (write-only)".into(),
                    other => other.to_string(),
                };
                Some((label.to_string(), text))
            })
            .collect();
        let log = state
            .store
            .log_page(&LogQuery {
                channel: Some(c.name.clone()),
                level: None,
                kind: None,
                since: None,
                until: None,
                page: 1,
                per_page: 5,
            })
            .await?
            .items
            .into_iter()
            .map(|e| (fmt::ago(e.at, now), e.level, e.message))
            .collect();
        let (class, text) = match st.state.as_str() {
            "running" => ("ok", "OK".to_string()),
            "paused" => ("paused", "Paused".to_string()),
            "failing" => (
                "failing",
                st.failing_since
                    .map(|t| format!("Failing since {} ({})", fmt::time(t), fmt::ago(t, now)))
                    .unwrap_or_else(|| "Failing".into()),
            ),
            _ => ("stopped", "Not running on any node".into()),
        };
        channels.push(ChannelRow {
            name: c.name,
            facts,
            state: class.into(),
            state_text: text,
            error: st.last_error,
            paused: c.paused,
            read_only: c.read_only,
            log,
        });
    }
    let layout = Layout::new(state, who, "Channels", "/channels").await;
    Ok(render(
        status,
        &Page {
            layout,
            channels,
            form,
            integrations,
            probe,
            form_error,
        },
    ))
}

/// `POST /channels/{name}/pause`.
pub async fn pause(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let _ = config::pause_channel(State(state), Extension(who), Path(name)).await?;
    Ok(Redirect::to("/channels").into_response())
}

/// `POST /channels/{name}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let _ = config::resume_channel(State(state), Extension(who), Path(name)).await?;
    Ok(Redirect::to("/channels").into_response())
}

pub struct StageView {
    pub stage: String,
    pub target: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "channel_test.html")]
struct TestResult {
    ok: bool,
    seconds: String,
    stages: Vec<StageView>,
    counts: Option<String>,
    /// The doctor's findings: `(code, severity, title, evidence, fix)`.
    findings: Vec<(String, String, String, String, String)>,
}

#[derive(Template)]
#[template(path = "channel_test_page.html")]
struct TestPage {
    layout: Layout,
    name: String,
    /// The rendered [`TestResult`] (escaped by its own template).
    result_html: String,
}

/// `POST /channels/{name}/test`: the staged connection check of `intake doctor` (DNS, TCP,
/// TLS/login, folder, counts; counts only, changes nothing) with the channel's live settings,
/// each stage with ✓ / ✗ and the server's words, and the root cause with its fix. With htmx the
/// result replaces the button's area when the check ends; without, it is a page.
pub async fn test(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, PageError> {
    let snap = state.live.snapshot();
    let Some(c) = snap
        .settings
        .channels
        .iter()
        .find(|c| c.name == name)
        .cloned()
    else {
        return Err(PageError(
            StatusCode::NOT_FOUND,
            format!("There is no channel {name}."),
        ));
    };
    let started = std::time::Instant::now();
    let diagnosis =
        crate::runner::doctor::diagnose(&snap.settings, &state.store, &c, intake_store::now())
            .await;
    let report = &diagnosis.report;
    let result = TestResult {
        ok: report.ok,
        seconds: format!("{:.1}", started.elapsed().as_secs_f64()),
        stages: report
            .stages
            .iter()
            .map(|s| StageView {
                stage: s.stage.to_string(),
                target: s.target.clone(),
                ok: s.ok,
                detail: s.detail.clone(),
            })
            .collect(),
        counts: report.counts.map(|n| match n.unread {
            Some(u) => format!("{} messages, {u} unread", n.messages),
            None => format!("{} messages", n.messages),
        }),
        findings: diagnosis
            .findings
            .iter()
            .map(|f| {
                (
                    f.code.to_string(),
                    format!("{:?}", f.severity).to_lowercase(),
                    f.title.to_string(),
                    f.evidence.clone(),
                    f.fix.clone(),
                )
            })
            .collect(),
    };
    let _ = state
        .store
        .audit(
            &who.user,
            "channel_tested",
            &name,
            serde_json::json!({"ok": report.ok}),
        )
        .await;
    if headers.contains_key("hx-request") {
        return Ok(render(StatusCode::OK, &result));
    }
    let layout = Layout::new(&state, &who, format!("Test of {name}"), "/channels").await;
    let result_html = result
        .render()
        .map_err(|e| PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(render(
        StatusCode::OK,
        &TestPage {
            layout,
            name,
            result_html,
        },
    ))
}
