//! `GET /channels` (every channel: protocol, mailbox, folder, integration, post-action, state,
//! the last error, pause / resume, Test connection, its recent mail log, the new-channel form),
//! `GET|POST /channels/{name}/edit` (the same form, prefilled, saved through the API's PATCH),
//! `POST /channels/{name}/pause|resume` through serve's handlers (audited, reaching every node),
//! and the connection test: `POST /channels/{name}/test` (the whole result as a page without
//! JavaScript; with htmx the live view) and `GET /channels/{name}/test/stream` (its stages as
//! they finish, Server-Sent Events of HTML fragments: the API's stream code).

use askama::Template;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use intake_store::browse::LogQuery;

use axum::{Form, Json};

use super::channel_form::{self, ChannelForm, FieldErrors, Probe};
use super::{Layout, PageError, fmt, render};
use axum::response::sse::Event;

use crate::cli::doctor::ChannelReport;
use crate::serve::AppState;
use crate::serve::api::config;
use crate::serve::auth::Principal;
use crate::serve::channel_test::{self, TimedStage};

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
    errors: FieldErrors,
    editing: bool,
    read_only: bool,
    password_set: bool,
}

#[derive(Template)]
#[template(path = "channel_edit.html")]
struct EditPage {
    layout: Layout,
    form: ChannelForm,
    integrations: Vec<String>,
    probe: Option<Probe>,
    errors: FieldErrors,
    editing: bool,
    read_only: bool,
    /// Why the form is read-only.
    note: Option<String>,
    password_set: bool,
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
    show(
        &state,
        &who,
        StatusCode::OK,
        ChannelForm::new(),
        None,
        FieldErrors::default(),
    )
    .await
}

/// The refusal of a password login with no password typed, at the password field: a page never
/// sends the password back, so it is typed for each listing and for saving.
fn password_needed() -> FieldErrors {
    FieldErrors::field(
        "auth",
        "Type the mailbox's password (or env:VAR, file:PATH): the page never sends it back, so \
         it is needed for each folder listing and for saving. Nothing was sent to the server.",
    )
}

/// `POST /channels`: `action=folders` lists the mailbox's folders and counts the chosen one
/// with the values typed; `action=save` creates the channel through the API's handler.
pub async fn submit(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Form(mut form): Form<ChannelForm>,
) -> Result<Response, PageError> {
    if form.password_missing() {
        return show(
            &state,
            &who,
            StatusCode::UNPROCESSABLE_ENTITY,
            form,
            None,
            password_needed(),
        )
        .await;
    }
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
                let errors = FieldErrors::from_message(&e.message);
                show(&state, &who, e.status, form, None, errors).await
            }
        };
    }
    let (probe, errors) = match channel_form::probe(&state, form.body()).await {
        Ok(p) => (Some(p), FieldErrors::default()),
        Err(e) => (None, FieldErrors::from_message(&e)),
    };
    // The password stays in the form only while it is being typed into: a page never sends it
    // back, so it must be typed again to save.
    form.password.clear();
    show(&state, &who, StatusCode::OK, form, probe, errors).await
}

/// `GET /channels/{name}/edit`: the channel's form, prefilled (the password write-only: empty
/// means keep); read-only, saying so, when the configuration file manages the channel.
pub async fn edit(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let view = config::get_channel(State(state.clone()), Path(name.clone()))
        .await?
        .0;
    let form = ChannelForm::from_table(&name, &view.table);
    show_edit(
        &state,
        &who,
        StatusCode::OK,
        &view,
        form,
        None,
        FieldErrors::default(),
    )
    .await
}

/// Why the edit form of a channel cannot be saved, if it cannot.
fn not_editable(view: &config::ChannelView, stored: &ChannelForm) -> Option<String> {
    if view.read_only {
        return Some(format!(
            "{} is managed by the configuration file (--config): it is read-only here. Change it \
             in the file and restart, or remove it from the file to manage it here. Pause, \
             resume and Test connection work on the Channels page.",
            view.name
        ));
    }
    (!stored.fits()).then(|| {
        format!(
            "{} is a {} channel: this form edits server channels (IMAP, POP3, Graph). Change its \
             path and settings through the API (PATCH /api/channels/{}) or the configuration \
             file.",
            view.name, stored.protocol, view.name
        )
    })
}

/// `POST /channels/{name}/edit`: `action=folders` lists the folders with the stored settings
/// changed by the form (the stored password unless one is typed); `action=save` changes the
/// channel through the API's `PATCH /api/channels/{name}` (same validation as the file and
/// the API; a file-managed channel is refused there).
pub async fn edit_submit(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    Form(mut form): Form<ChannelForm>,
) -> Result<Response, PageError> {
    let view = config::get_channel(State(state.clone()), Path(name.clone()))
        .await?
        .0;
    form.name = name.clone();
    let stored_form = ChannelForm::from_table(&name, &view.table);
    if let Some(why) = not_editable(&view, &stored_form) {
        return show_edit(
            &state,
            &who,
            StatusCode::CONFLICT,
            &view,
            stored_form,
            None,
            FieldErrors {
                fields: Vec::new(),
                general: vec![why],
            },
        )
        .await;
    }
    let stored_password = password_set(&view.table);
    if form.password_missing() && !stored_password {
        return show_edit(
            &state,
            &who,
            StatusCode::UNPROCESSABLE_ENTITY,
            &view,
            form,
            None,
            password_needed(),
        )
        .await;
    }
    if form.action == "save" {
        let answer = config::patch_channel(
            State(state.clone()),
            Extension(who.clone()),
            Path(name.clone()),
            Json(form.patch()),
        )
        .await;
        return match answer {
            Ok(_) => Ok(Redirect::to("/channels").into_response()),
            Err(e) => {
                form.password.clear();
                let errors = FieldErrors::from_message(&e.message);
                show_edit(&state, &who, e.status, &view, form, None, errors).await
            }
        };
    }
    let stored = state
        .store
        .config_entries(&state.live.keys)
        .await?
        .into_iter()
        .find(|e| e.kind == intake_store::config_store::Kind::Channel && e.name == name)
        .map(|e| e.body)
        .unwrap_or_default();
    let mut body = stored;
    crate::serve::redact::merge(&mut body, &form.patch());
    let (probe, errors) = match channel_form::probe(&state, body).await {
        Ok(p) => (Some(p), FieldErrors::default()),
        Err(e) => (None, FieldErrors::from_message(&e)),
    };
    form.password.clear();
    show_edit(&state, &who, StatusCode::OK, &view, form, probe, errors).await
}

/// Whether a channel's table (as the API shows it) holds a password.
fn password_set(table: &serde_json::Value) -> bool {
    table
        .get("auth")
        .and_then(|a| a.get("kind"))
        .and_then(serde_json::Value::as_str)
        == Some("password")
}

async fn integration_names(state: &AppState) -> Result<Vec<String>, PageError> {
    Ok(config::list_integrations(State(state.clone()))
        .await?
        .0
        .into_iter()
        .map(|i| i.name)
        .collect())
}

async fn show_edit(
    state: &AppState,
    who: &Principal,
    status: StatusCode,
    view: &config::ChannelView,
    form: ChannelForm,
    probe: Option<Probe>,
    errors: FieldErrors,
) -> Result<Response, PageError> {
    let note = not_editable(view, &ChannelForm::from_table(&view.name, &view.table));
    let layout = Layout::new(state, who, format!("Edit {}", view.name), "/channels").await;
    Ok(render(
        status,
        &EditPage {
            layout,
            form,
            integrations: integration_names(state).await?,
            probe,
            errors,
            editing: true,
            read_only: note.is_some(),
            note,
            password_set: password_set(&view.table),
        },
    ))
}

async fn show(
    state: &AppState,
    who: &Principal,
    status: StatusCode,
    form: ChannelForm,
    probe: Option<Probe>,
    errors: FieldErrors,
) -> Result<Response, PageError> {
    let now = intake_store::now();
    let mut channels = Vec::new();
    let integrations = integration_names(state).await?;
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
            errors,
            editing: false,
            read_only: false,
            password_set: false,
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
    /// How long the stage took, in words (`12 ms`, `1.2 s`).
    pub took: String,
}

fn stage_view(t: &TimedStage) -> StageView {
    StageView {
        stage: t.stage.stage.to_string(),
        target: t.stage.target.clone(),
        ok: t.stage.ok,
        detail: t.stage.detail.clone(),
        took: if t.ms < 1000 {
            format!("{} ms", t.ms)
        } else {
            format!("{:.1} s", t.ms as f64 / 1000.0)
        },
    }
}

/// One stage as it finished: an event of the live test.
#[derive(Template)]
#[template(path = "_stage.html")]
struct StageFragment {
    s: StageView,
}

/// The end of a test: passed or failed, the counts, the root-cause cards with their fix.
#[derive(Template)]
#[template(path = "_test_end.html")]
struct TestEnd {
    ok: bool,
    seconds: String,
    counts: Option<String>,
    /// The doctor's findings: `(code, severity, title, evidence, fix)`.
    findings: Vec<(String, String, String, String, String)>,
}

impl TestEnd {
    fn of(r: &ChannelReport, took: std::time::Duration) -> Self {
        let integration = r.integration.iter().flat_map(|i| i.findings.iter());
        TestEnd {
            ok: r.report.ok,
            seconds: format!("{:.1}", took.as_secs_f64()),
            counts: r.report.counts.map(|n| match n.unread {
                Some(u) => format!("{} messages, {u} unread", n.messages),
                None => format!("{} messages", n.messages),
            }),
            findings: r
                .findings
                .iter()
                .chain(integration)
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
        }
    }
}

/// The whole result (the page without JavaScript).
#[derive(Template)]
#[template(path = "channel_test.html")]
struct TestResult {
    stages: Vec<StageView>,
    ok: bool,
    seconds: String,
    counts: Option<String>,
    findings: Vec<(String, String, String, String, String)>,
}

/// The live view htmx puts in place of the button's result area: it opens the stream.
#[derive(Template)]
#[template(path = "channel_test_live.html")]
struct TestLive {
    name: String,
}

#[derive(Template)]
#[template(path = "channel_test_page.html")]
struct TestPage {
    layout: Layout,
    name: String,
    /// The rendered [`TestResult`] (escaped by its own template).
    result_html: String,
}

/// A fragment as the data of an event (SSE data cannot carry a carriage return).
fn fragment<T: Template>(t: &T) -> String {
    t.render()
        .unwrap_or_else(|e| {
            format!("<p class=\"error-text\">the result could not be shown: {e}</p>")
        })
        .replace('\r', "")
}

/// `POST /channels/{name}/test`: the staged connection check of `intake doctor` (token, DNS,
/// TCP, TLS/login, folder, counts; counts only, changes nothing) with the channel's live
/// settings. With htmx the answer is the live view, which opens [`test_stream`]: each stage
/// appears as it finishes. Without JavaScript the check runs here and the whole result is a
/// page: each stage with ✓ / ✗, its timing and the server's words, then the root-cause cards.
pub async fn test(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, PageError> {
    if headers.contains_key("hx-request") {
        return Ok(render(StatusCode::OK, &TestLive { name }));
    }
    let started = std::time::Instant::now();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let report = channel_test::observed_test(&state, &who.user, &name, move |t| {
        if let Ok(mut v) = sink.lock() {
            v.push(t);
        }
    })
    .await?;
    let stages = seen
        .lock()
        .map(|v| v.iter().map(stage_view).collect())
        .unwrap_or_default();
    let end = TestEnd::of(&report, started.elapsed());
    let result = TestResult {
        stages,
        ok: end.ok,
        seconds: end.seconds,
        counts: end.counts,
        findings: end.findings,
    };
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

/// `GET /channels/{name}/test/stream`: the API's stream of the test
/// ([`channel_test::stream_with`]) with HTML fragments as events: `stage` (one list item with
/// ✓ / ✗, timing and the server's words) as each stage finishes, then `done` (passed or failed,
/// the root-cause cards with their fix), after which the page closes the stream.
///
/// A `GET` that starts a check: a browser's request from another site (`Sec-Fetch-Site` other
/// than `same-origin`, e.g. a link followed with the Lax session cookie) is refused, so only the
/// page's own EventSource starts it.
pub async fn test_stream(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() != b"same-origin")
    {
        return super::error_page(
            StatusCode::FORBIDDEN,
            None,
            "A connection test starts only from the Channels page of this site.",
        );
    }
    let started = std::time::Instant::now();
    channel_test::stream_with(
        state,
        who.user,
        name,
        |t| {
            Event::default()
                .event("stage")
                .data(fragment(&StageFragment { s: stage_view(t) }))
        },
        move |r| {
            let html = match r {
                Ok(r) => fragment(&TestEnd::of(&r, started.elapsed())),
                Err(e) => fragment(&TestError { message: e.message }),
            };
            Event::default().event("done").data(html)
        },
    )
    .into_response()
}

#[derive(Template)]
#[template(
    source = "<p class=\"state failing test-summary\">✗ The test could not run: {{ message }}</p>",
    ext = "html"
)]
struct TestError {
    message: String,
}
