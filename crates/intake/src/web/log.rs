//! `GET /log` (the mail log, filtered by channel, level, kind and time; each entry links to its
//! ticket or quarantine entry), `GET /quarantine` (quarantined messages with their reasons) and
//! `GET /quarantine/{id}` (one message: its reason and its raw bytes shown as text, never
//! rendered as HTML, plus the byte-exact download through the API; discard with a reason,
//! through serve's audited `POST /api/quarantine/{id}/discard` handler).

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use intake_store::browse::LogQuery;

use super::{Layout, PageError, error_page, fmt, render};
use crate::serve::AppState;
use crate::serve::auth::Principal;

const PER_PAGE: i64 = 50;
/// The most of a raw message shown on the page (the download has all of it).
const RAW_SHOWN: usize = 256 * 1024;

#[derive(Debug, Default, serde::Deserialize)]
pub struct LogFilters {
    channel: Option<String>,
    level: Option<String>,
    kind: Option<String>,
    /// `1h`, `24h`, `7d` or empty (any time).
    within: Option<String>,
    page: Option<i64>,
}

pub struct Event {
    pub at: String,
    pub channel: String,
    pub level: String,
    pub kind: String,
    pub message: String,
    /// `(label, href)` of the ticket or quarantine entry the event is about.
    pub link: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "log.html")]
struct LogPage {
    layout: Layout,
    channel: String,
    level: String,
    kind: String,
    within: String,
    events: Vec<Event>,
    total: i64,
    page: i64,
    next_query: Option<String>,
    prev_query: Option<String>,
}

fn within_seconds(w: &str) -> Option<i64> {
    match w {
        "1h" => Some(3600),
        "24h" => Some(86_400),
        "7d" => Some(7 * 86_400),
        _ => None,
    }
}

/// `GET /log`.
pub async fn mail_log(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(f): Query<LogFilters>,
) -> Result<Response, PageError> {
    let channel = f.channel.unwrap_or_default().trim().to_string();
    let level = f.level.unwrap_or_default().trim().to_string();
    let kind = f.kind.unwrap_or_default().trim().to_string();
    let within = f.within.unwrap_or_default();
    let page = f.page.unwrap_or(1).max(1);
    let now = intake_store::now();
    let p = state
        .store
        .log_page(&LogQuery {
            channel: Some(channel.clone()).filter(|s| !s.is_empty()),
            level: Some(level.clone()).filter(|s| !s.is_empty()),
            kind: Some(kind.clone()).filter(|s| !s.is_empty()),
            since: within_seconds(&within).map(|s| now - s),
            until: None,
            page,
            per_page: PER_PAGE,
        })
        .await?;
    let mut events = Vec::with_capacity(p.items.len());
    for e in p.items {
        let ticket = e
            .fields
            .get("ticket")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let link = match (
            ticket,
            e.kind.as_str(),
            &e.channel,
            e.fields.get("message_id").and_then(|v| v.as_str()),
        ) {
            (Some(t), _, _, _) => Some((t.clone(), format!("/tickets/{t}"))),
            (None, "quarantined", Some(ch), Some(mid)) => state
                .store
                .quarantined_id(ch, mid)
                .await?
                .map(|id| (format!("quarantine #{id}"), format!("/quarantine/{id}"))),
            _ => None,
        };
        events.push(Event {
            at: fmt::time(e.at),
            channel: e.channel.unwrap_or_default(),
            level: e.level,
            kind: e.kind,
            message: e.message,
            link,
        });
    }
    let q = |page: i64| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("channel", &channel),
            ("level", &level),
            ("kind", &kind),
            ("within", &within),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        s.append_pair("page", &page.to_string());
        s.finish()
    };
    let layout = Layout::new(&state, &who, "Mail log", "/log").await;
    Ok(render(
        StatusCode::OK,
        &LogPage {
            layout,
            next_query: (page * PER_PAGE < p.total).then(|| q(page + 1)),
            prev_query: (page > 1).then(|| q(page - 1)),
            channel,
            level,
            kind,
            within,
            events,
            total: p.total,
            page,
        },
    ))
}

pub struct Item {
    pub id: i64,
    pub channel: String,
    pub sender: String,
    pub reason: String,
    pub at: String,
    pub size: String,
}

#[derive(Template)]
#[template(path = "quarantine.html")]
struct QuarantinePage {
    layout: Layout,
    items: Vec<Item>,
    total: i64,
    page: i64,
    next_page: Option<i64>,
    prev_page: Option<i64>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct PageParam {
    page: Option<i64>,
}

fn item(q: intake_store::browse::Quarantined) -> Item {
    Item {
        id: q.id,
        channel: q.channel,
        sender: q.sender.unwrap_or_default(),
        reason: q.reason.unwrap_or_default(),
        at: fmt::time(q.received_at),
        size: q.raw_size.map(fmt::bytes).unwrap_or_default(),
    }
}

/// `GET /quarantine`.
pub async fn quarantine(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(p): Query<PageParam>,
) -> Result<Response, PageError> {
    let page = p.page.unwrap_or(1).max(1);
    let q = state.store.quarantine_page(page, PER_PAGE).await?;
    let layout = Layout::new(&state, &who, "Quarantine", "/quarantine").await;
    Ok(render(
        StatusCode::OK,
        &QuarantinePage {
            layout,
            next_page: (page * PER_PAGE < q.total).then_some(page + 1),
            prev_page: (page > 1).then_some(page - 1),
            items: q.items.into_iter().map(item).collect(),
            total: q.total,
            page,
        },
    ))
}

#[derive(Template)]
#[template(path = "quarantined.html")]
struct QuarantinedPage {
    layout: Layout,
    error: Option<String>,
    item: Item,
    message_id: String,
    raw: String,
    truncated: bool,
}

/// `GET /quarantine/{id}`.
pub async fn quarantined(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let layout = Layout::new(
        &state,
        &who,
        format!("Quarantined message {id}"),
        "/quarantine",
    )
    .await;
    let found = match id.parse::<i64>() {
        Ok(n) => state.store.quarantined(n).await?,
        Err(_) => None,
    };
    let Some((q, raw)) = found else {
        return Ok(error_page(
            StatusCode::NOT_FOUND,
            Some(layout),
            format!("There is no quarantined message {id}."),
        ));
    };
    let truncated = raw.len() > RAW_SHOWN;
    let raw = String::from_utf8_lossy(&raw[..raw.len().min(RAW_SHOWN)]).into_owned();
    let message_id = q.message_id.clone().unwrap_or_default();
    Ok(render(
        StatusCode::OK,
        &QuarantinedPage {
            layout,
            error: None,
            item: item(q),
            message_id,
            raw,
            truncated,
        },
    ))
}

#[derive(Debug, serde::Deserialize)]
pub struct DiscardForm {
    #[serde(default)]
    reason: String,
}

/// `POST /quarantine/{id}/discard`: discard with a reason (audited), back to the list; an empty
/// reason shows the page again with the error next to the field.
pub async fn discard(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<DiscardForm>,
) -> Result<Response, PageError> {
    let answer = crate::serve::api::browse::quarantine_discard(
        State(state.clone()),
        Extension(who.clone()),
        Path(id.clone()),
        axum::Json(crate::serve::api::browse::Discard { reason: f.reason }),
    )
    .await;
    match answer {
        Ok(_) => Ok(axum::response::Redirect::to("/quarantine").into_response()),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            let layout = Layout::new(
                &state,
                &who,
                format!("Quarantined message {id}"),
                "/quarantine",
            )
            .await;
            let Some((q, raw)) = state.store.quarantined(id.parse().unwrap_or(-1)).await? else {
                return Ok(error_page(
                    StatusCode::NOT_FOUND,
                    Some(layout),
                    format!("There is no quarantined message {id}."),
                ));
            };
            let truncated = raw.len() > RAW_SHOWN;
            let raw = String::from_utf8_lossy(&raw[..raw.len().min(RAW_SHOWN)]).into_owned();
            let message_id = q.message_id.clone().unwrap_or_default();
            Ok(render(
                e.status,
                &QuarantinedPage {
                    layout,
                    error: Some("Say why the message is discarded.".into()),
                    item: item(q),
                    message_id,
                    raw,
                    truncated,
                },
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /quarantine/{id}/retry`: the API's retry handler (prepare and apply the raw message
/// again under the channel's current rules, exactly once, audited). A message that became or
/// joined a ticket leads to that ticket; otherwise the page says what happened.
pub async fn retry(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let r = crate::serve::api::browse::quarantine_retry(
        State(state.clone()),
        Extension(who.clone()),
        Path(id.clone()),
    )
    .await?
    .0;
    if let Some(key) = r.ticket_key {
        let enc: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
        return Ok(axum::response::Redirect::to(&format!("/tickets/{enc}")).into_response());
    }
    let layout = Layout::new(&state, &who, format!("Retry of {id}"), "/quarantine").await;
    let text = match r.result.as_str() {
        "quarantined" => format!(
            "Message {id} was retried and is still quarantined: {}",
            r.reason.unwrap_or_default()
        ),
        "ignored" => format!(
            "Message {id} was retried and is now ignored: {}",
            r.reason.unwrap_or_default()
        ),
        other => format!("Message {id} was retried: {other}."),
    };
    Ok(error_page(StatusCode::OK, Some(layout), text))
}
