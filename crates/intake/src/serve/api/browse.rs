//! Reading what Intake did: `/api/tickets` (search, detail, attachment download), `/api/log`,
//! `/api/quarantine` (list, raw message, discard, retry).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use intake_store::browse::{LogQuery, TicketQuery};
use serde_json::Value;

use crate::serve::AppState;
use crate::serve::error::{ApiError, ErrorBody};

/// `GET /api/tickets` query.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct TicketsQuery {
    /// Project key.
    pub project: Option<String>,
    /// Text to find in the summary, description or comments (case-insensitive substring,
    /// answered from a trigram index when it has three characters or more).
    pub q: Option<String>,
    pub status: Option<String>,
    /// 1-based (default 1); pages reach 10,000 tickets deep, use `before` beyond.
    pub page: Option<i64>,
    /// Default 50, at most 500.
    pub per_page: Option<i64>,
    /// Keyset paging: the `next_before` of the previous page (then `page` is ignored).
    pub before: Option<i64>,
}

/// A page of a listing: `items`, `total`, `page`, `per_page`; ticket search adds
/// `total_capped` and `next_before`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PageAnswer {
    #[schema(value_type = Vec<Object>)]
    pub items: Value,
    /// Matching rows in all pages; ticket search counts at most 10,000.
    pub total: i64,
    /// Ticket search: more rows match than `total` says.
    pub total_capped: bool,
    /// Ticket search: `before` for the next page; null on the last page.
    pub next_before: Option<i64>,
    pub page: i64,
    pub per_page: i64,
}

fn page<T: serde::Serialize>(p: intake_store::browse::Page<T>) -> Json<PageAnswer> {
    Json(PageAnswer {
        items: serde_json::to_value(&p.items).unwrap_or(Value::Null),
        total: p.total,
        total_capped: p.total_capped,
        next_before: p.next_before,
        page: p.page,
        per_page: p.per_page,
    })
}

/// Tickets, newest first, filtered and paged.
#[utoipa::path(get, path = "/api/tickets", tag = "tickets", params(TicketsQuery),
    responses((status = 200, body = PageAnswer), (status = 401, body = ErrorBody)))]
pub async fn list_tickets(
    State(state): State<AppState>,
    Query(q): Query<TicketsQuery>,
) -> Result<Json<PageAnswer>, ApiError> {
    let p = state
        .store
        .search_tickets(&TicketQuery {
            project: q.project,
            q: q.q,
            status: q.status,
            page: q.page.unwrap_or(1),
            per_page: q.per_page.unwrap_or(50),
            before: q.before,
        })
        .await?;
    Ok(page(p))
}

/// One ticket: description, comments, participants, attachments (with their download ids),
/// related tickets.
#[utoipa::path(get, path = "/api/tickets/{key}", tag = "tickets",
    params(("key" = String, Path, description = "e.g. HELP-12")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn get_ticket(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let t = state
        .store
        .ticket(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no ticket {key}")))?;
    let mut v = serde_json::to_value(&t).map_err(|e| ApiError::internal(e.to_string()))?;
    let refs = state.store.attachment_refs(&key).await?;
    v["attachments"] =
        serde_json::to_value(&refs).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(v))
}

/// A filename safe in a quoted header parameter: ASCII letters, digits, `.`, `-`, `_`, space.
fn ascii_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_matches(|c| c == '.' || c == ' ').to_string();
    if s.is_empty() { "attachment".into() } else { s }
}

/// RFC 5987 percent-encoding for `filename*`.
fn ext_value(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `attachment; filename="…"; filename*=UTF-8''…`: always a download, never shown inline, and
/// no character of the stored name can break out of the header.
pub fn content_disposition(name: &str) -> String {
    format!(
        "attachment; filename=\"{}\"; filename*=UTF-8''{}",
        ascii_name(name),
        ext_value(name)
    )
}

/// The stored content type when it is a plain `type/subtype`, else `application/octet-stream`.
pub fn safe_content_type(ct: &str) -> String {
    let base = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let ok = base.split_once('/').is_some_and(|(t, s)| {
        !t.is_empty()
            && !s.is_empty()
            && base
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/.+-_".contains(c))
    });
    if ok {
        base
    } else {
        "application/octet-stream".into()
    }
}

/// Download an attachment, byte for byte.
#[utoipa::path(get, path = "/api/tickets/{key}/attachments/{id}", tag = "tickets",
    params(("key" = String, Path), ("id" = i64, Path)),
    responses((status = 200, description = "the attachment's bytes", content_type = "application/octet-stream"),
              (status = 404, body = ErrorBody)))]
pub async fn download_attachment(
    State(state): State<AppState>,
    Path((key, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let missing = || ApiError::not_found(format!("no attachment {id} on ticket {key}"));
    let id: i64 = id.parse().map_err(|_| missing())?;
    let a = state
        .store
        .attachment(&key, id)
        .await?
        .ok_or_else(missing)?;
    let mut h = HeaderMap::new();
    let ct = safe_content_type(&a.content_type);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&ct).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(v) = HeaderValue::from_str(&content_disposition(&a.filename)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    Ok((h, a.data).into_response())
}

/// `GET /api/log` query.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct LogParams {
    pub channel: Option<String>,
    /// `info`, `warn`, `error`.
    pub level: Option<String>,
    /// Event kind, e.g. `channel_failed`, `quarantined`.
    pub kind: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, inclusive.
    pub until: Option<i64>,
    pub page: Option<i64>,
    /// Default 100, at most 1,000.
    pub per_page: Option<i64>,
}

/// The mail log, newest first, filtered and paged.
#[utoipa::path(get, path = "/api/log", tag = "log", params(LogParams),
    responses((status = 200, body = PageAnswer), (status = 401, body = ErrorBody)))]
pub async fn log(
    State(state): State<AppState>,
    Query(q): Query<LogParams>,
) -> Result<Json<PageAnswer>, ApiError> {
    let p = state
        .store
        .log_page(&LogQuery {
            channel: q.channel,
            level: q.level,
            kind: q.kind,
            since: q.since,
            until: q.until,
            page: q.page.unwrap_or(1),
            per_page: q.per_page.unwrap_or(100),
        })
        .await?;
    Ok(page(p))
}

/// `GET /api/quarantine` query.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    pub page: Option<i64>,
    pub per_page: Option<i64>,
}

/// Quarantined messages with their reasons, newest first.
#[utoipa::path(get, path = "/api/quarantine", tag = "quarantine", params(PageParams),
    responses((status = 200, body = PageAnswer), (status = 401, body = ErrorBody)))]
pub async fn quarantine(
    State(state): State<AppState>,
    Query(q): Query<PageParams>,
) -> Result<Json<PageAnswer>, ApiError> {
    let p = state
        .store
        .quarantine_page(q.page.unwrap_or(1), q.per_page.unwrap_or(50))
        .await?;
    Ok(page(p))
}

/// The raw message of a quarantined entry, byte for byte (`message/rfc822`, as a download).
#[utoipa::path(get, path = "/api/quarantine/{id}/raw", tag = "quarantine",
    params(("id" = i64, Path)),
    responses((status = 200, description = "the raw message", content_type = "message/rfc822"),
              (status = 404, body = ErrorBody)))]
pub async fn quarantine_raw(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let missing = || ApiError::not_found(format!("no quarantined message {id}"));
    let n: i64 = id.parse().map_err(|_| missing())?;
    let (_, raw) = state.store.quarantined(n).await?.ok_or_else(missing)?;
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("message/rfc822"),
    );
    if let Ok(v) = HeaderValue::from_str(&content_disposition(&format!("quarantined-{n}.eml"))) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    Ok((h, raw).into_response())
}

/// Body of `POST /api/quarantine/{id}/discard`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct Discard {
    /// Why (kept in the ledger with who discarded it).
    pub reason: String,
}

/// Discard a quarantined message: it leaves the quarantine list, keeps its raw bytes and its
/// one outcome (`discarded`, with who and why), and is never ingested again.
#[utoipa::path(post, path = "/api/quarantine/{id}/discard", tag = "quarantine",
    params(("id" = i64, Path)), request_body = Discard,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn quarantine_discard(
    State(state): State<AppState>,
    axum::Extension(who): axum::Extension<crate::serve::auth::Principal>,
    Path(id): Path<String>,
    Json(body): Json<Discard>,
) -> Result<axum::http::StatusCode, ApiError> {
    let missing = || ApiError::not_found(format!("no quarantined message {id}"));
    let n: i64 = id.parse().map_err(|_| missing())?;
    let reason = body.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::invalid(
            "reason: say why the message is discarded",
        ));
    }
    let recorded = format!("discarded by {}: {reason}", who.user);
    if !state.store.discard_quarantined(n, &recorded).await? {
        return Err(missing());
    }
    state
        .store
        .audit(
            &who.user,
            "quarantine_discarded",
            &format!("quarantine:{n}"),
            serde_json::json!({"reason": reason}),
        )
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// What `POST /api/quarantine/{id}/retry` did.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RetryAnswer {
    /// The quarantine entry retried.
    pub id: i64,
    pub channel: String,
    /// `created`, `commented`, `ignored`, `duplicate` (the message already had an outcome; the
    /// entry is marked retried) or `quarantined` (still unreadable: the entry stays, with the
    /// new `reason`).
    pub result: String,
    /// The ticket the message became or was added to.
    pub ticket_key: Option<String>,
    /// Why it was ignored or is still quarantined.
    pub reason: Option<String>,
}

/// Retry a quarantined message: its raw bytes go through prepare and apply again under the
/// channel's current rules, exactly once (one transaction: the entry becomes `retried` and the
/// message gets its outcome). Still unreadable: it stays quarantined with the new reason.
#[utoipa::path(post, path = "/api/quarantine/{id}/retry", tag = "quarantine",
    params(("id" = i64, Path)),
    responses((status = 200, body = RetryAnswer), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the channel is gone, or only the headers were kept")))]
pub async fn quarantine_retry(
    State(state): State<AppState>,
    axum::Extension(who): axum::Extension<crate::serve::auth::Principal>,
    Path(id): Path<String>,
) -> Result<Json<RetryAnswer>, ApiError> {
    use crate::quarantine::RetryError;
    let missing = || ApiError::not_found(format!("no quarantined message {id}"));
    let n: i64 = id.parse().map_err(|_| missing())?;
    let settings = state.live.snapshot().settings.clone();
    let r = crate::quarantine::retry(&state.store, &settings, n, &who.user)
        .await
        .map_err(|e| match e {
            RetryError::NotQuarantined(_) => ApiError::not_found(e.to_string()),
            RetryError::NoChannel { .. } | RetryError::HeadersOnly { .. } => {
                ApiError::conflict(e.to_string())
            }
            RetryError::Prepare(_) => ApiError::internal(e.to_string()),
            RetryError::Store(s) => s.into(),
        })?;
    state
        .store
        .audit(
            &who.user,
            "quarantine_retried",
            &format!("quarantine:{n}"),
            serde_json::json!({"result": r.result, "ticket_key": r.ticket_key, "reason": r.reason}),
        )
        .await?;
    Ok(Json(RetryAnswer {
        id: r.id,
        channel: r.channel,
        result: r.result,
        ticket_key: r.ticket_key,
        reason: r.reason,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_cannot_be_broken_out_of() {
        let d = content_disposition("evil\"; filename=x.html\r\nSet-Cookie: a=b.pdf");
        assert!(d.starts_with("attachment; filename=\""), "{d}");
        assert!(!d.contains('\r') && !d.contains('\n'));
        assert_eq!(d.matches('"').count(), 2, "{d}");
        assert!(HeaderValue::from_str(&d).is_ok());
        let d = content_disposition("Überweisung März.pdf");
        assert!(
            d.contains("filename*=UTF-8''%C3%9Cberweisung%20M%C3%A4rz.pdf"),
            "{d}"
        );
        assert_eq!(
            content_disposition("..."),
            "attachment; filename=\"attachment\"; filename*=UTF-8''..."
        );
    }

    #[test]
    fn content_types_are_plain_or_octet_stream() {
        assert_eq!(safe_content_type("image/png"), "image/png");
        assert_eq!(safe_content_type("Text/Plain; charset=utf-8"), "text/plain");
        assert_eq!(
            safe_content_type("text/html\r\nX: y"),
            "application/octet-stream"
        );
        assert_eq!(safe_content_type("nonsense"), "application/octet-stream");
    }
}
