//! Housekeeping: keeps the tables that only grow from growing forever.
//!
//! - the mail log keeps `mail_log_retention_days` (default 90) days of events; older ones are
//!   deleted in chunks of [`CHUNK`] rows, each its own short transaction, so a purge never holds
//!   the write lock long enough to stall a channel's commit;
//! - pending OAuth flows that expired are deleted (a used flow is deleted when it is taken, see
//!   `Store::take_flow`), so abandoned authorizations do not leave sealed PKCE verifiers behind.
//!
//! One pass runs when `intake run` and `intake ingest` start, and `intake run` repeats it every
//! [`EVERY`] while it runs. Several nodes on one database may purge at the same time: every
//! delete is idempotent. A failing pass is logged and never stops mail processing.

use std::time::Duration;

use intake_store::{Store, StoreError};

use crate::config::Config;

/// Rows per delete statement.
pub const CHUNK: u32 = 1_000;
/// How often `intake run` repeats the pass.
pub const EVERY: Duration = Duration::from_secs(3_600);

/// What one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub mail_log_events: u64,
    pub expired_flows: u64,
}

/// The mail-log retention in days from the configuration (checked to be at least 1 at load,
/// see `settings::resolve`).
pub fn retention_days(config: &Config) -> u32 {
    config
        .mail_log_retention_days
        .unwrap_or(crate::settings::DEFAULT_MAIL_LOG_RETENTION_DAYS)
}

/// One pass at time `now` (Unix seconds).
pub async fn pass(store: &Store, retention_days: u32, now: i64) -> Result<Report, StoreError> {
    let before = now.saturating_sub(i64::from(retention_days) * 86_400);
    Ok(Report {
        mail_log_events: store.purge_mail_log(before, CHUNK).await?,
        expired_flows: store.purge_expired_flows(now).await?,
    })
}

/// One pass now; failures are logged, not returned.
pub async fn once(config: &Config, store: &Store) {
    run_logged(store, retention_days(config)).await;
}

async fn run_logged(store: &Store, days: u32) {
    match pass(store, days, intake_store::now()).await {
        Ok(r) if r != Report::default() => tracing::info!(
            mail_log_events = r.mail_log_events,
            expired_flows = r.expired_flows,
            retention_days = days,
            "housekeeping deleted old rows"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "housekeeping failed; it runs again later"),
    }
}

/// The periodic housekeeping of `intake run`; stops when dropped.
#[derive(Debug)]
pub struct Periodic(tokio::task::JoinHandle<()>);

impl Drop for Periodic {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One pass now, then one every [`EVERY`] until the returned guard is dropped.
pub async fn start(config: &Config, store: &Store) -> Periodic {
    start_every(store.clone(), retention_days(config), EVERY).await
}

async fn start_every(store: Store, days: u32, every: Duration) -> Periodic {
    run_logged(&store, days).await;
    Periodic(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate: that pass already ran
        loop {
            tick.tick().await;
            run_logged(&store, days).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use intake_store::{Keyring, PendingFlow};
    use intake_testkit::TestDb;

    use super::*;

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    async fn event(store: &Store, at: i64, what: &str) {
        sqlx::query(
            "INSERT INTO mail_log (at, channel, level, kind, message, fields)
             VALUES ($1, 'c', 'info', 'ignored', $2, '{}')",
        )
        .bind(at)
        .bind(what)
        .execute(store.pool())
        .await
        .unwrap();
    }

    fn flow(state: &str, expires_at: i64) -> PendingFlow {
        PendingFlow {
            state: state.into(),
            integration: "corp".into(),
            mailbox: "help@example.com".into(),
            redirect_uri: "http://localhost/cb".into(),
            pkce_verifier: "verifier".to_string().into(),
            expires_at,
        }
    }

    async fn messages(store: &Store) -> Vec<String> {
        let mut m: Vec<String> = store
            .recent_events(1_000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.message)
            .collect();
        m.sort();
        m
    }

    #[tokio::test]
    async fn a_pass_deletes_events_past_retention_and_expired_flows_only() {
        for db in TestDb::each().await {
            let store = Store::connect(&db.url).await.unwrap();
            let keys = Keyring::generate().unwrap();
            for n in 0..(CHUNK as i64 + 5) {
                event(&store, NOW - 91 * DAY - n, "old").await;
            }
            event(&store, NOW - 89 * DAY, "recent").await;
            event(&store, NOW - 5, "today").await;
            store
                .save_flow(&keys, &flow("expired", NOW - 1))
                .await
                .unwrap();
            store
                .save_flow(&keys, &flow("live", NOW + 600))
                .await
                .unwrap();

            let r = pass(&store, 90, NOW).await.unwrap();
            assert_eq!(
                r,
                Report {
                    mail_log_events: u64::from(CHUNK) + 5,
                    expired_flows: 1
                },
                "{}",
                db.kind
            );
            assert_eq!(messages(&store).await, ["recent", "today"], "{}", db.kind);
            assert!(store.take_flow(&keys, "live", NOW).await.unwrap().is_some());
            assert!(
                store
                    .take_flow(&keys, "expired", 0)
                    .await
                    .unwrap()
                    .is_none()
            );
            // A shorter retention reaches further.
            assert_eq!(pass(&store, 30, NOW).await.unwrap().mail_log_events, 1);
            assert_eq!(messages(&store).await, ["today"], "{}", db.kind);
            store.close().await;
        }
    }

    #[tokio::test]
    async fn run_repeats_the_pass_until_dropped() {
        let db = TestDb::sqlite();
        let store = Store::connect(&db.url).await.unwrap();
        let now = intake_store::now();
        event(&store, now - 100 * DAY, "before start").await;
        let periodic = start_every(store.clone(), 90, Duration::from_millis(200)).await;
        assert!(
            messages(&store).await.is_empty(),
            "the first pass runs at start"
        );
        event(&store, now - 100 * DAY, "while running").await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !messages(&store).await.is_empty() {
            assert!(std::time::Instant::now() < deadline, "no periodic pass");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(periodic);
        tokio::time::sleep(Duration::from_millis(100)).await;
        event(&store, now - 100 * DAY, "after stop").await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(messages(&store).await, ["after stop"]);
        store.close().await;
    }
}
