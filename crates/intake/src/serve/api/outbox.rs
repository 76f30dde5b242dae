//! Mail out and the outbox over the API: `POST /api/tickets/{key}/replies` (a reply from the
//! ticket, the same path as `intake reply`: [`crate::outbox::reply`]), `GET /api/outbox`,
//! `POST /api/outbox/{id}/retry` and `POST /api/outbox/{id}/discard` (both audited). Delivery
//! is the outbox's job: `intake serve` delivers continuously on every node.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine as _;

use crate::outbox::reply::{ReplyError, ReplyFile};
use crate::serve::AppState;
use crate::serve::auth::Principal;
use crate::serve::error::{ApiError, ErrorBody};

/// One attachment of a reply.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct ReplyAttachment {
    /// The file's name as the recipient sees it.
    pub filename: String,
    /// `type/subtype`, e.g. `application/pdf`.
    pub content_type: String,
    /// The file's bytes, base64 (standard alphabet, padded). The whole request is limited to
    /// 4 MiB.
    pub data_base64: String,
}

/// Body of `POST /api/tickets/{key}/replies`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct NewReplyBody {
    /// The reply's text.
    pub body: String,
    #[serde(default)]
    pub attachments: Vec<ReplyAttachment>,
    /// Send from this channel (default: the channel the ticket came in on).
    pub channel: Option<String>,
}

/// A reply recorded and queued.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ReplyQueued {
    pub key: String,
    /// The outgoing comment on the ticket.
    pub comment_id: i64,
    /// The outbox row that delivers the mail (`GET /api/outbox`).
    pub outbox_id: i64,
    /// The mail's Message-ID (without angle brackets).
    pub message_id: String,
    /// To and Cc (the reporter and the participants, never the channel's own addresses).
    pub recipients: Vec<String>,
}

/// Reply to a ticket by mail from its channel's mailbox: recorded as an outgoing comment and
/// queued in the outbox in one transaction; delivered by the outbox (exactly once where the
/// channel can look into its Sent folder, see `intake doctor`).
#[utoipa::path(post, path = "/api/tickets/{key}/replies", tag = "tickets",
    params(("key" = String, Path, description = "e.g. HELP-12")), request_body = NewReplyBody,
    responses((status = 202, body = ReplyQueued), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn reply(
    State(state): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
    Path(key): Path<String>,
    Json(body): Json<NewReplyBody>,
) -> Result<(StatusCode, Json<ReplyQueued>), ApiError> {
    let mut files = Vec::with_capacity(body.attachments.len());
    for a in body.attachments {
        let data = base64::engine::general_purpose::STANDARD
            .decode(a.data_base64.trim())
            .map_err(|e| {
                ApiError::invalid(format!(
                    "attachments: {:?}: data_base64 is not base64: {e}",
                    a.filename
                ))
            })?;
        files.push(ReplyFile {
            filename: a.filename,
            content_type: a.content_type,
            data,
        });
    }
    let settings = state.live.snapshot().settings;
    let e = crate::outbox::reply::enqueue(
        &settings,
        &state.store,
        &key,
        &body.body,
        body.channel.as_deref(),
        files,
    )
    .await
    .map_err(|e| match e {
        ReplyError::NoTicket(_) => ApiError::not_found(e.to_string()),
        ReplyError::Store(s) => ApiError::from(s),
        other => ApiError::invalid(other.to_string()),
    })?;
    state
        .store
        .audit(
            &who.user,
            "ticket_replied",
            &e.key,
            serde_json::json!({"comment_id": e.comment_id, "outbox_id": e.outbox_id}),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ReplyQueued {
            key: e.key,
            comment_id: e.comment_id,
            outbox_id: e.outbox_id,
            message_id: e.message_id,
            recipients: e.recipients,
        }),
    ))
}

/// `GET /api/outbox` query.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct OutboxQuery {
    /// `pending`, `sent`, `failed` or `discarded` (default: all).
    pub state: Option<String>,
    /// At most this many, newest first (default 100, at most 1,000).
    pub limit: Option<i64>,
}

/// One outbox row (its payload left out).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct OutboxView {
    pub id: i64,
    /// `mail`, `webhook` or `jira`.
    pub kind: String,
    /// The channel (mail) or the sink.
    pub target: String,
    pub ticket_key: Option<String>,
    /// `ack`, `reply`, `ticket.created`, `comment.added`, `ticket.quarantined`.
    pub event: String,
    /// The fixed identity: the Message-ID or the Idempotency-Key.
    pub identity: String,
    pub recipient: Option<String>,
    /// `pending`, `sent`, `failed`, `discarded`.
    pub state: String,
    pub attempts: i64,
    /// Unix seconds of the next try (pending rows).
    pub next_at: i64,
    /// The last failure's diagnosis, or who discarded the row and why.
    pub last_error: Option<String>,
    /// What Intake kept of the answer (the Jira issue key; for a mail found in the Sent folder
    /// after an interrupted send, a note saying so).
    pub result: Option<String>,
    pub created_at: i64,
    pub done_at: Option<i64>,
    /// Set while a try that reached its final step has no outcome recorded: the next try looks
    /// in the Sent folder before sending again.
    pub in_flight_at: Option<i64>,
}

impl From<intake_store::OutboxItem> for OutboxView {
    fn from(r: intake_store::OutboxItem) -> Self {
        Self {
            id: r.id,
            kind: r.kind,
            target: r.target,
            ticket_key: r.ticket_key,
            event: r.event,
            identity: r.identity,
            recipient: r.recipient,
            state: r.state,
            attempts: r.attempts,
            next_at: r.next_at,
            last_error: r.last_error,
            result: r.result,
            created_at: r.created_at,
            done_at: r.done_at,
            in_flight_at: r.in_flight_at,
        }
    }
}

/// The outbox, newest first.
#[utoipa::path(get, path = "/api/outbox", tag = "outbox", params(OutboxQuery),
    responses((status = 200, body = Vec<OutboxView>), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<OutboxQuery>,
) -> Result<Json<Vec<OutboxView>>, ApiError> {
    if let Some(s) = &q.state
        && !["pending", "sent", "failed", "discarded"].contains(&s.as_str())
    {
        return Err(ApiError::invalid(format!(
            "state = {s:?}: use pending, sent, failed or discarded"
        )));
    }
    let rows = state
        .store
        .list_outbox(q.state.as_deref(), q.limit.unwrap_or(100).clamp(1, 1000))
        .await?;
    Ok(Json(rows.into_iter().map(OutboxView::from).collect()))
}

fn row_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found(format!("no outbox row {id}")))
}

/// Put a failed (or waiting) row back to be sent now.
#[utoipa::path(post, path = "/api/outbox/{id}/retry", tag = "outbox",
    params(("id" = i64, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn retry(
    State(state): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let n = row_id(&id)?;
    state
        .store
        .outbox_item(n)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no outbox row {n}")))?;
    if !state.store.retry_outbox(n).await? {
        return Err(ApiError::conflict(format!(
            "outbox row {n} is sent or discarded: nothing to retry"
        )));
    }
    state
        .store
        .audit(
            &who.user,
            "outbox_retried",
            &n.to_string(),
            serde_json::json!({}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /api/outbox/{id}/discard`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct DiscardRow {
    /// Why (kept on the row with who discarded it, and in the audit log).
    pub reason: String,
}

/// Give up on a pending or failed row: it is never sent, and stops holding back the later rows
/// of its ticket at the same target.
#[utoipa::path(post, path = "/api/outbox/{id}/discard", tag = "outbox",
    params(("id" = i64, Path)), request_body = DiscardRow,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn discard(
    State(state): State<AppState>,
    axum::Extension(who): axum::Extension<Principal>,
    Path(id): Path<String>,
    Json(body): Json<DiscardRow>,
) -> Result<StatusCode, ApiError> {
    let n = row_id(&id)?;
    let reason = body.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::invalid("reason: say why the row is discarded"));
    }
    state
        .store
        .outbox_item(n)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no outbox row {n}")))?;
    let note = format!("discarded by {}: {reason}", who.user);
    if !state.store.discard_outbox(n, Some(&note)).await? {
        return Err(ApiError::conflict(format!(
            "outbox row {n} is sent or already discarded"
        )));
    }
    state
        .store
        .audit(
            &who.user,
            "outbox_discarded",
            &n.to_string(),
            serde_json::json!({"reason": reason}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
