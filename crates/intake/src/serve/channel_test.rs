//! Testing a channel from `intake serve` (`POST /api/channels/{name}/test`, its streamed
//! variant `GET /api/channels/{name}/test/stream`, and the admin UI's Test button): the doctor's
//! staged check of that channel with its findings — the same document as the channel's element
//! of `intake doctor --json` ([`crate::cli::doctor::channel_report`]).
//!
//! The streamed variant sends one Server-Sent Event per stage as the stage finishes
//! (`event: stage`, data `{stage, target, ok, detail}`), observed inside the check through
//! [`intake_mail::check::observed`], then `event: result` with the whole document.

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

/// What the stream carries.
enum Message {
    Stage(StageResult),
    Done(Box<Result<ChannelReport, ApiError>>),
}

/// [`test`] as a stream of Server-Sent Events: `stage` per finished stage, then `result` (the
/// document) or `error` (`{error, message}`, e.g. an unknown channel).
pub fn stream(
    state: AppState,
    actor: String,
    name: String,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Message>();
    let stages = tx.clone();
    let observer: Arc<dyn Fn(&StageResult) + Send + Sync> = Arc::new(move |s: &StageResult| {
        let _ = stages.send(Message::Stage(s.clone()));
    });
    tokio::spawn(async move {
        let r = intake_mail::check::observed(observer, test(&state, &actor, &name)).await;
        let _ = tx.send(Message::Done(Box::new(r)));
    });
    let events = futures_util::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        let m = rx.recv().await?;
        let (event, last) = match m {
            Message::Done(r) => match *r {
                Ok(r) => (
                    Event::default()
                        .event("result")
                        .json_data(document(&r))
                        .unwrap_or_default(),
                    true,
                ),
                Err(e) => (
                    Event::default()
                        .event("error")
                        .json_data(json!({"error": e.code, "message": e.message}))
                        .unwrap_or_default(),
                    true,
                ),
            },
            Message::Stage(s) => (
                Event::default()
                    .event("stage")
                    .json_data(&s)
                    .unwrap_or_default(),
                false,
            ),
        };
        Some((Ok(event), if last { None } else { Some(rx) }))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
