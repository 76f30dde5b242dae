//! Testing a channel from `intake serve` (`POST /api/channels/{name}/test`, its streamed
//! variant `GET /api/channels/{name}/test/stream`, and the admin UI's Test button): the doctor's
//! staged check of that channel with its findings — the same document as the channel's element
//! of `intake doctor --json` ([`crate::cli::doctor::channel_report`]).
//!
//! The streamed variant sends one Server-Sent Event per stage as the stage finishes
//! (`event: stage`, data `{stage, target, ok, detail, ms}`), observed inside the check through
//! [`intake_mail::check::observed`], then `event: result` with the whole document. The admin
//! UI's live test is the same stream ([`stream_with`]) with HTML fragments as the events.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use intake_mail::check::StageResult;
use serde_json::{Value, json};

use crate::cli::doctor::ChannelReport;
use crate::serve::AppState;
use crate::serve::error::ApiError;

/// Run the check of channel `name` (counts only: nothing fetched or changed); `actor` goes to
/// the audit log.
pub async fn test(state: &AppState, actor: &str, name: &str) -> Result<ChannelReport, ApiError> {
    let snap = state.live.snapshot();
    let c = snap
        .settings
        .channel(name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no channel named {name:?}")))?;
    let report = crate::cli::doctor::channel_report(&snap.settings, &state.store, &c).await;
    let _ = state
        .store
        .audit(
            actor,
            "channel_tested",
            name,
            json!({"ok": report.report.ok, "findings": report.findings.iter().map(|f| f.code).collect::<Vec<_>>()}),
        )
        .await;
    Ok(report)
}

/// The report as the API answers it.
pub fn document(r: &ChannelReport) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

/// A stage as it finished, with how long it took (since the previous stage finished, or since
/// the check started): the `stage` events of the stream, and the rows of the admin UI's test.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TimedStage {
    #[serde(flatten)]
    pub stage: StageResult,
    /// Milliseconds.
    pub ms: u64,
}

/// [`test`] with `on_stage` called with every stage as it finishes (observed inside the check
/// through [`intake_mail::check::observed`]), timed.
pub async fn observed_test(
    state: &AppState,
    actor: &str,
    name: &str,
    on_stage: impl Fn(TimedStage) + Send + Sync + 'static,
) -> Result<ChannelReport, ApiError> {
    let last = std::sync::Mutex::new(std::time::Instant::now());
    let observer: Arc<dyn Fn(&StageResult) + Send + Sync> = Arc::new(move |s: &StageResult| {
        let now = std::time::Instant::now();
        let ms = match last.lock() {
            Ok(mut l) => {
                let ms = now.duration_since(*l).as_millis();
                *l = now;
                u64::try_from(ms).unwrap_or(u64::MAX)
            }
            Err(_) => 0,
        };
        on_stage(TimedStage {
            stage: s.clone(),
            ms,
        });
    });
    intake_mail::check::observed(observer, test(state, actor, name)).await
}

/// What the stream carries.
enum Message {
    Stage(TimedStage),
    Done(Box<Result<ChannelReport, ApiError>>),
}

/// [`test`] as a stream of Server-Sent Events, the events made by the caller: `stage` for each
/// stage as it finishes, then `done` once with the result. The one code path of the API's
/// stream ([`stream`]) and of the admin UI's live test (HTML events).
pub fn stream_with<S, D>(
    state: AppState,
    actor: String,
    name: String,
    stage: S,
    done: D,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    S: Fn(&TimedStage) -> Event + Send + 'static,
    D: FnOnce(Result<ChannelReport, ApiError>) -> Event + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
    let stages = tx.clone();
    tokio::spawn(async move {
        let r = observed_test(&state, &actor, &name, move |t| {
            let _ = stages.send(Message::Stage(t));
        })
        .await;
        let _ = tx.send(Message::Done(Box::new(r)));
    });
    let events = futures_util::stream::unfold(Some((rx, stage, done)), |st| async move {
        let (mut rx, stage, done) = st?;
        match rx.recv().await? {
            Message::Stage(t) => {
                let e = stage(&t);
                Some((Ok(e), Some((rx, stage, done))))
            }
            Message::Done(r) => Some((Ok(done(*r)), None)),
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// [`test`] as the API's stream: `stage` per finished stage (`{stage, target, ok, detail,
/// ms}`), then `result` (the document) or `error` (`{error, message}`, e.g. an unknown channel).
pub fn stream(
    state: AppState,
    actor: String,
    name: String,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    stream_with(
        state,
        actor,
        name,
        |t| {
            Event::default()
                .event("stage")
                .json_data(t)
                .unwrap_or_default()
        },
        |r| match r {
            Ok(r) => Event::default()
                .event("result")
                .json_data(document(&r))
                .unwrap_or_default(),
            Err(e) => Event::default()
                .event("error")
                .json_data(json!({"error": e.code, "message": e.message}))
                .unwrap_or_default(),
        },
    )
}
