//! Microsoft Graph `sendMail` with the message as MIME: `POST {graph}/v1.0/users/{mailbox}/sendMail`
//! with `Content-Type: text/plain` and the base64 of the RFC 5322 bytes. Graph sends the
//! message as given, so its `Message-ID`, `In-Reply-To`, `References` and `X-Intake-Sent` are
//! the ones Intake chose (a JSON message could not carry `In-Reply-To`/`References`: Graph
//! accepts only `X-` headers there). Delegated (the signed-in user's own or a shared mailbox
//! with Send As) or app-only (`Mail.Send` application permission).
//!
//! Answers: 202 sent; 429/5xx transient (`Retry-After` kept); any other 4xx permanent, with
//! Graph's `error.code` decoded — `ErrorSendAsDenied` (not allowed to send as this address),
//! `ErrorAccessDenied` / 403 (no `Mail.Send`), `MailboxNotEnabledForRESTAPI`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

use super::{Outcome, SendError, request_failed, retry_after, status_is_transient};

/// What Graph's error codes for sending mean, with the fix's section in docs/troubleshooting.md.
pub fn explain(code: &str) -> Option<&'static str> {
    match code {
        "ErrorSendAsDenied" => Some(
            "the signed-in account (or the app) may not send as this mailbox: grant Send As, or send from the account's own address; see docs/troubleshooting.md, \"Outgoing mail: ErrorSendAsDenied\"",
        ),
        "ErrorAccessDenied" | "Authorization_RequestDenied" => Some(
            "the token lacks Mail.Send (delegated) or the Mail.Send application permission; see docs/troubleshooting.md, \"Outgoing mail: ErrorSendAsDenied\"",
        ),
        "MailboxNotEnabledForRESTAPI" => Some(
            "the mailbox is not in Exchange Online (or not licensed): Graph cannot send from it",
        ),
        _ => None,
    }
}

/// `mailbox` as one URL path segment: unreserved characters and `@` as they are (Graph's own
/// form for a UPN), everything else percent-encoded.
fn segment(mailbox: &str) -> String {
    mailbox
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Send `mime` from `mailbox`. On failure, the [`Outcome`] says whether the message surely did
/// not go out (a 4xx answer, no connection) or may have (a 5xx answer, no answer at all).
pub async fn send_mime(
    client: &reqwest::Client,
    graph_url: &str,
    mailbox: &str,
    token: &SecretString,
    mime: &[u8],
) -> Result<(), (SendError, Outcome)> {
    let url = format!(
        "{}/v1.0/users/{}/sendMail",
        graph_url.trim_end_matches('/'),
        segment(mailbox)
    );
    let resp = client
        .post(&url)
        .bearer_auth(token.expose_secret())
        .header(reqwest::header::CONTENT_TYPE, "text/plain")
        .body(STANDARD.encode(mime))
        .send()
        .await
        .map_err(|e| {
            let outcome = if e.is_connect() {
                Outcome::NotSent
            } else {
                Outcome::Unknown
            };
            (request_failed("Graph sendMail", e), outcome)
        })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let outcome = if status.is_server_error() {
        Outcome::Unknown
    } else {
        Outcome::NotSent
    };
    Err((failure("Graph sendMail", resp).await, outcome))
}

/// Graph's answer to a failed call as a [`SendError`]: 429/5xx transient (`Retry-After`
/// kept), every other status permanent, with `error.code` decoded.
async fn failure(what: &str, resp: reqwest::Response) -> SendError {
    let status = resp.status();
    let after = retry_after(resp.headers());
    let body = crate::http::read_capped(resp, 64 * 1024)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let code = v["error"]["code"].as_str().unwrap_or_default().to_string();
    let message: String = v["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
    let text = format!(
        "{what} answered HTTP {}{}: {message}{}",
        status.as_u16(),
        if code.is_empty() {
            String::new()
        } else {
            format!(" {code}")
        },
        explain(&code)
            .map(|e| format!(" — {e}"))
            .unwrap_or_default()
    );
    if status_is_transient(status.as_u16()) {
        SendError::Transient {
            message: text,
            retry_after: after,
        }
    } else {
        SendError::Permanent(text)
    }
}

/// Whether the mailbox's Sent Items hold a message with this Message-ID (without angle
/// brackets): `GET /users/{mailbox}/mailFolders/sentitems/messages?$filter=internetMessageId eq
/// '<id>'` (needs `Mail.ReadBasic` or `Mail.Read` on the mailbox). `sendMail` saves a copy there
/// by default, so this is how a send interrupted before its answer is recognised.
pub async fn find_in_sent_items(
    client: &reqwest::Client,
    graph_url: &str,
    mailbox: &str,
    token: &SecretString,
    message_id: &str,
) -> Result<bool, SendError> {
    let url = format!(
        "{}/v1.0/users/{}/mailFolders/sentitems/messages",
        graph_url.trim_end_matches('/'),
        segment(mailbox)
    );
    // OData string literal: a quote is doubled.
    let filter = format!(
        "internetMessageId eq '<{}>'",
        message_id.replace('\'', "''")
    );
    let resp = client
        .get(&url)
        .bearer_auth(token.expose_secret())
        .query(&[
            ("$filter", filter.as_str()),
            ("$select", "id,internetMessageId"),
            ("$top", "5"),
        ])
        .send()
        .await
        .map_err(|e| request_failed("Graph Sent Items look-up", e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(failure("Graph Sent Items look-up", resp).await);
    }
    let body = crate::http::read_capped(resp, 1024 * 1024)
        .await
        .map_err(|e| request_failed("Graph Sent Items look-up", e))?
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        SendError::transient(format!("Graph Sent Items look-up: unreadable answer: {e}"))
    })?;
    let want = format!("<{message_id}>");
    Ok(v["value"].as_array().is_some_and(|a| {
        a.iter()
            .any(|m| m["internetMessageId"].as_str() == Some(want.as_str()))
    }))
}
