//! Alerts and the gauges of `/metrics`: every node checks, every [`interval`], that
//!
//! - no channel has been failing longer than `[alerts] alert_after_seconds` (default 15 min),
//! - no stored token needs re-authorization,
//! - no client secret expires within 30 / 14 / 3 days (or has expired),
//!
//! raises an alert for each cause (one open alert per cause, whichever node sees it first) and
//! clears the alerts whose cause is gone. Raised and cleared alerts go to `[alerts] webhook` as a
//! JSON POST, sent by exactly one node (a claim in the database), retried three times within a
//! round and again in later rounds until it is accepted (any 2xx).

use std::sync::Arc;
use std::time::Duration;

use intake_core::integration::ClientCredential;
use intake_store::Store;
use intake_store::alerts::Alert;
use intake_store::config_store::Kind;

use super::live::Live;

/// How often the checks run: a third of `alert_after`, between 1 and 30 seconds.
pub fn interval(alert_after: Duration) -> Duration {
    (alert_after / 3).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Run the checks until `stop` turns true.
pub async fn run(store: Store, live: Arc<Live>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build();
    loop {
        let settings = live.snapshot().settings;
        if let Err(e) = check(&store, &live).await {
            tracing::warn!(error = %e, "alert checks failed this round");
        }
        if let (Some(url), Ok(http)) = (&settings.alerts.webhook, &http) {
            notify(&store, http, url).await;
        }
        tokio::select! {
            () = tokio::time::sleep(interval(settings.alerts.alert_after)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One round of checks (also sets the gauges).
pub async fn check(store: &Store, live: &Live) -> Result<(), intake_store::StoreError> {
    let snap = live.snapshot();
    let now = intake_store::now();
    let after = snap.settings.alerts.alert_after.as_secs() as i64;

    // Channels failing too long; channel up/down.
    let mut failing = Vec::new();
    for e in snap.entries.iter().filter(|e| e.kind == Kind::Channel) {
        let health = store.channel_health(&e.name).await?;
        let lease = store
            .lease_holder(&e.name)
            .await?
            .filter(|(_, exp)| *exp > now);
        let since = health.as_ref().and_then(|h| h.failing_since);
        let up = !e.paused && lease.is_some() && since.is_none();
        metrics::gauge!("intake_channel_up", "channel" => e.name.clone()).set(if up {
            1.0
        } else {
            0.0
        });
        if e.paused {
            continue;
        }
        if let Some(since) = since
            && now - since >= after
        {
            let error = health
                .as_ref()
                .and_then(|h| h.last_error.clone())
                .unwrap_or_default();
            store
                .raise_alert(
                    "channel_failing",
                    &e.name,
                    "critical",
                    &format!(
                        "channel {} has been failing for {} minutes: {error}",
                        e.name,
                        (now - since) / 60
                    ),
                )
                .await?;
            failing.push(e.name.clone());
        }
    }
    store
        .clear_alerts_except("channel_failing", &failing)
        .await?;

    // Tokens that need re-authorization.
    let mut dead = Vec::new();
    for (integration, mailbox, reason) in store.tokens_needing_reauthorization().await? {
        let subject = format!("{integration}/{mailbox}");
        store
            .raise_alert(
                "token_needs_reauthorization",
                &subject,
                "critical",
                &format!(
                    "the token of {mailbox} (integration {integration}) needs re-authorization{}: authorize again (`intake authorize {integration} --mailbox {mailbox}`)",
                    reason.map(|r| format!(" ({r})")).unwrap_or_default()
                ),
            )
            .await?;
        dead.push(subject);
    }
    store
        .clear_alerts_except("token_needs_reauthorization", &dead)
        .await?;

    // Client secrets expiring.
    let mut expiring = Vec::new();
    for (name, i) in snap.settings.integrations.iter() {
        if let ClientCredential::Secret {
            expires_unix: Some(at),
            ..
        } = i.credential
        {
            metrics::gauge!("intake_credential_expiry_seconds", "integration" => name.clone())
                .set((at - now) as f64);
        }
        if let Some(w) = i.secret_expiry_warning(now) {
            let severity = match w.stage {
                intake_core::expiry::ExpiryStage::Within30Days
                | intake_core::expiry::ExpiryStage::Within14Days => "warning",
                _ => "critical",
            };
            let message = if w.days_left < 0 {
                format!(
                    "the client secret of integration {name} has expired (AADSTS7000222 follows): create a new one and set client_secret"
                )
            } else {
                format!(
                    "the client secret of integration {name} expires in {} days: create a new one before then",
                    w.days_left
                )
            };
            store
                .raise_alert("credential_expiry", name, severity, &message)
                .await?;
            expiring.push(name.clone());
        }
    }
    store
        .clear_alerts_except("credential_expiry", &expiring)
        .await?;

    // Gauges.
    let open = store.open_alerts().await?;
    for kind in [
        "channel_failing",
        "token_needs_reauthorization",
        "credential_expiry",
    ] {
        let n = open.iter().filter(|a| a.kind == kind).count();
        metrics::gauge!("intake_alerts_open", "kind" => kind).set(n as f64);
    }
    metrics::gauge!("intake_leases_held")
        .set(store.leases_held_by(crate::runner::node()).await? as f64);
    Ok(())
}

/// The webhook's body.
pub fn payload(a: &Alert, cleared: bool) -> serde_json::Value {
    serde_json::json!({
        "event": if cleared { "cleared" } else { "raised" },
        "alert": a,
    })
}

/// Send every alert notification not sent yet (claimed one at a time).
async fn notify(store: &Store, http: &reqwest::Client, url: &url::Url) {
    while let Ok(Some((a, cleared))) = store.claim_alert_notification().await {
        let body = payload(&a, cleared);
        let mut sent = false;
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
            }
            match http.post(url.clone()).json(&body).send().await {
                Ok(r) if r.status().is_success() => {
                    sent = true;
                    break;
                }
                Ok(r) => {
                    tracing::warn!(status = %r.status(), alert = %a.key, "alert webhook refused the call")
                }
                Err(e) => {
                    tracing::warn!(error = %e.without_url(), alert = %a.key, "alert webhook unreachable")
                }
            }
        }
        let _ = store.finish_alert_notification(a.id, cleared, sent).await;
        if !sent {
            // Tried again next round.
            return;
        }
    }
}
