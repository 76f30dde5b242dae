//! `[[sink]] type = "webhook"`: one JSON POST per event, signed the way Stripe signs its
//! webhooks, with an idempotency key that is the same on every retry of one event.
//!
//! Headers: `Content-Type: application/json`, `Intake-Signature: t=UNIX_SECONDS,v1=HEX` where
//! HEX is the lower-case hex HMAC-SHA256 of `UNIX_SECONDS.BODY` under the sink's secret (the
//! receiver recomputes it and compares in constant time, and refuses old `t` to stop replays),
//! `Idempotency-Key` (the outbox row's fixed identity) and `Intake-Event`.
//! A 2xx answer is delivered; 408/425/429/5xx, a refused connection or a timeout is transient;
//! any other status is permanent (a receiver that says 4xx will say it again).

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};

use super::{SendError, request_failed, retry_after, status_is_transient};

type HmacSha256 = Hmac<sha2_hmac::Sha256>;

/// The `Intake-Signature` value for `body` sent at `t` (Unix seconds).
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length: new_from_slice cannot fail for it.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    format!("t={t},v1={}", hex::encode(m.finalize().into_bytes()))
}

/// Whether `header` (an `Intake-Signature` value) signs `body` under `secret`, and its `t` is
/// within `tolerance` seconds of `now`. What a receiver does; used by the tests.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance: i64) -> bool {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now - t).abs() > tolerance {
        return false;
    }
    sigs.iter().any(|s| {
        let mut m =
            <HmacSha256 as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        m.update(t.to_string().as_bytes());
        m.update(b".");
        m.update(body);
        m.verify_slice(s).is_ok()
    })
}

/// One webhook receiver.
#[derive(Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    secret: SecretString,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("url", &self.url).finish()
    }
}

impl Webhook {
    pub fn new(client: reqwest::Client, url: String, secret: SecretString) -> Self {
        Self {
            client,
            url,
            secret,
        }
    }

    /// POST `body` (JSON) for `event` with `idempotency_key`, signed at the current time.
    pub async fn post(
        &self,
        event: &str,
        idempotency_key: &str,
        body: &str,
    ) -> Result<(), SendError> {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let sig = signature(self.secret.expose_secret().as_bytes(), t, body.as_bytes());
        let resp = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Intake-Signature", sig)
            .header("Idempotency-Key", idempotency_key)
            .header("Intake-Event", event)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| request_failed("webhook POST", e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let after = retry_after(resp.headers());
        let text = crate::http::read_capped(resp, 4096)
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .trim()
                    .chars()
                    .take(300)
                    .collect::<String>()
            })
            .unwrap_or_default();
        let message = format!("webhook answered HTTP {}: {text}", status.as_u16());
        if status_is_transient(status.as_u16()) {
            Err(SendError::Transient {
                message,
                retry_after: after,
            })
        } else {
            Err(SendError::Permanent(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_stripes_scheme_and_verifies() {
        // HMAC-SHA256 under "whsec" of "1700000000.{}", computed independently (Python's hmac).
        let sig = signature(b"whsec", 1_700_000_000, b"{}");
        assert_eq!(
            sig,
            "t=1700000000,v1=7d44587dddbaf4c7f70fef20f48cd594834ffea1641e3ac227b84408298738af"
        );
        assert!(verify(b"whsec", &sig, b"{}", 1_700_000_010, 300));
        assert!(!verify(b"whsec", &sig, b"{ }", 1_700_000_010, 300));
        assert!(!verify(b"other", &sig, b"{}", 1_700_000_010, 300));
        // Too old: a replay.
        assert!(!verify(b"whsec", &sig, b"{}", 1_700_001_000, 300));
    }
}
