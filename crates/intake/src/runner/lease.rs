//! Channel leases: the one place where a node takes, renews and gives up its lease on a channel.
//!
//! With several nodes on one PostgreSQL database a channel runs only on the node holding its
//! lease (`channel_leases`, [`intake_store::lease`]), renewed every third of its time to live
//! (`lease_seconds`, default 30). [`hold`] runs the channel's work as a task beside the renewals
//! and renews **only while the work makes progress** ([`Progress`]: every stage of a drain and
//! the wait between rounds declares a deadline): a channel stuck past its stage's bound plus
//! [`STALL_MARGIN`] gets a `channel_stalled` mail-log event naming the stage, its task is
//! aborted, and its lease is left to lapse, so another node takes the channel over within the
//! TTL. A node that finds its lease taken stops the channel (`lease_lost`). The lease is about
//! work and post-actions happening once; exactly-once ticket effects do not depend on it (the
//! ledger claim does that).

use std::time::Duration;

use intake_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::RunError;
use super::drain::{Progress, Stage};

/// How far past its stage's bound a channel may be before its lease is no longer renewed
/// (the stage's own timeout fires first; this catches work that cannot even be cancelled).
pub const STALL_MARGIN: Duration = Duration::from_secs(10);

/// This node's name in channel leases: set once per process.
pub fn node() -> &'static str {
    static NODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NODE.get_or_init(intake_store::lease::node_id)
}

/// Take the lease on `channel`, waiting up to its time to live (so a run right after a crash
/// takes over the dead process's lease). `false` when another live node keeps renewing it
/// (logged as `channel_skipped`).
pub async fn acquire_within(store: &Store, channel: &str, ttl: Duration) -> Result<bool, RunError> {
    let deadline = tokio::time::Instant::now() + ttl + Duration::from_secs(1);
    while !store.try_acquire_lease(channel, node(), ttl).await? {
        if tokio::time::Instant::now() >= deadline {
            let holder = store.lease_holder(channel).await?.map(|(h, _)| h);
            let msg = format!(
                "channel {channel} is being processed by node {}; skipped",
                holder.as_deref().unwrap_or("?")
            );
            store
                .log_event(
                    Some(channel),
                    "info",
                    "channel_skipped",
                    &msg,
                    serde_json::json!({"node": node(), "holder": holder}),
                )
                .await?;
            return Ok(false);
        }
        tokio::time::sleep((ttl / 3).min(Duration::from_millis(500))).await;
    }
    Ok(true)
}

/// How the work under a lease ended.
pub enum Held<T> {
    /// The work ended by itself (the lease is still ours: release it).
    Done(Result<T, RunError>),
    /// The lease was lost meanwhile (the work was told to stop and did): do not release.
    Lost(Result<T, RunError>),
    /// The work stopped making progress in `stage`: it was aborted, the lease left to lapse.
    Stalled { stage: Stage, after: Duration },
}

/// How long a lease lives unrenewed, and how far past its stage's deadline a channel may be
/// before its lease is no longer renewed.
#[derive(Debug, Clone, Copy)]
pub struct Terms {
    pub ttl: Duration,
    pub stall_margin: Duration,
}

impl Terms {
    /// `ttl` with the production [`STALL_MARGIN`].
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            stall_margin: STALL_MARGIN,
        }
    }
}

/// A task that is aborted when dropped, so dropping the future that holds it (a hard cutoff at
/// shutdown) never leaves the channel's work running.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Run `work` (the channel's task) while keeping this node's lease on `channel`: every third
/// of the TTL, renew if `progress` is within its deadline (plus the stall margin); otherwise log
/// `channel_stalled`, abort the work and stop renewing. `shutdown` (if any) and a lost lease
/// turn `halt` true, which the work obeys between batches.
pub async fn hold<T: Send + 'static>(
    store: &Store,
    channel: &str,
    terms: Terms,
    progress: &Progress,
    halt: watch::Sender<bool>,
    mut shutdown: Option<watch::Receiver<bool>>,
    work: JoinHandle<Result<T, RunError>>,
) -> Held<T> {
    let Terms { ttl, stall_margin } = terms;
    let mut work = AbortOnDrop(work);
    let mut lost = false;
    if shutdown.as_ref().is_some_and(|r| *r.borrow()) {
        let _ = halt.send(true);
    }
    let joined = |r: Result<Result<T, RunError>, tokio::task::JoinError>| match r {
        Ok(r) => r,
        Err(e) => Err(RunError::Task(e.to_string())),
    };
    loop {
        let stop = async {
            match shutdown.as_mut() {
                Some(r) if !*r.borrow() => {
                    let _ = r.changed().await;
                }
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            r = &mut work.0 => {
                let r = joined(r);
                return if lost { Held::Lost(r) } else { Held::Done(r) };
            }
            () = stop => {
                let _ = halt.send(true);
            }
            () = tokio::time::sleep(ttl / 3) => {
                if let Some((stage, after)) = progress.overdue(stall_margin) {
                    work.0.abort();
                    let msg = format!(
                        "channel {channel}: no progress in {stage} for {}s; stopped on node {} and its lease left to lapse",
                        after.as_secs(),
                        node()
                    );
                    tracing::warn!(channel, %stage, "{msg}");
                    let _ = store
                        .log_event(
                            Some(channel),
                            "error",
                            "channel_stalled",
                            &msg,
                            serde_json::json!({"node": node(), "stage": stage.as_str(), "seconds": after.as_secs()}),
                        )
                        .await;
                    return Held::Stalled { stage, after };
                }
                if !lost && !matches!(store.renew_lease(channel, node(), ttl).await, Ok(true)) {
                    lost = true;
                    let _ = store
                        .log_event(
                            Some(channel),
                            "warn",
                            "lease_lost",
                            &format!("channel {channel}: node {} lost its lease; stopping the channel here", node()),
                            serde_json::json!({"node": node()}),
                        )
                        .await;
                    let _ = halt.send(true);
                }
            }
        }
    }
}

/// Give up this node's leases on `channels` (at shutdown, after their work has stopped), each
/// bounded in time so a hung database cannot hold the exit.
pub async fn release_all(store: &Store, channels: impl IntoIterator<Item = &str>, bound: Duration) {
    for c in channels {
        let _ = tokio::time::timeout(bound, store.release_lease(c, node())).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Held, Terms, hold, node};
    use crate::runner::drain::{Progress, Stage};

    fn terms(ttl: Duration) -> Terms {
        Terms {
            ttl,
            stall_margin: Duration::ZERO,
        }
    }

    /// Defect 4: a channel stuck past its stage's deadline is not renewed: its task is aborted,
    /// `channel_stalled` names the stage, and the lease is left to lapse (not released, not
    /// renewed), so another node takes over within the TTL.
    #[tokio::test]
    async fn a_channel_without_progress_is_aborted_and_its_lease_left_to_lapse() {
        let db = intake_testkit::TestDb::sqlite();
        let store = intake_store::Store::connect(&db.url).await.unwrap();
        let ttl = Duration::from_millis(600);
        assert!(store.try_acquire_lease("stuck", node(), ttl).await.unwrap());
        let (_, before) = store.lease_holder("stuck").await.unwrap().unwrap();
        let progress = Arc::new(Progress::new());
        let _stuck = progress.begin(Stage::Fetch, Duration::ZERO);
        let (halt, _rx) = tokio::sync::watch::channel(false);
        let (dropped_tx, dropped) = tokio::sync::oneshot::channel::<()>();
        let work = tokio::spawn(async move {
            let _dropped_when_aborted = dropped_tx;
            std::future::pending::<Result<(), crate::runner::RunError>>().await
        });
        let held = tokio::time::timeout(
            Duration::from_secs(5),
            hold(&store, "stuck", terms(ttl), &progress, halt, None, work),
        )
        .await
        .expect("the keeper gives up on a stalled channel");
        assert!(matches!(
            held,
            Held::Stalled {
                stage: Stage::Fetch,
                ..
            }
        ));
        assert!(dropped.await.is_err(), "the channel's task was aborted");
        let (holder, after) = store.lease_holder("stuck").await.unwrap().unwrap();
        assert_eq!(holder, node());
        assert_eq!(after, before, "never renewed: it lapses within the TTL");
        let events = store.recent_events(5).await.unwrap();
        let e = events
            .iter()
            .find(|e| e.kind == "channel_stalled")
            .expect("logged");
        assert!(e.message.contains("no progress in fetch"), "{}", e.message);
        assert_eq!(e.fields["stage"], "fetch");
    }

    /// A channel that makes progress keeps its lease renewed and its result is returned.
    #[tokio::test]
    async fn a_channel_making_progress_is_renewed_until_it_ends() {
        let db = intake_testkit::TestDb::sqlite();
        let store = intake_store::Store::connect(&db.url).await.unwrap();
        let ttl = Duration::from_millis(1500);
        assert!(store.try_acquire_lease("busy", node(), ttl).await.unwrap());
        let (_, before) = store.lease_holder("busy").await.unwrap().unwrap();
        let progress = Arc::new(Progress::new());
        let (halt, _rx) = tokio::sync::watch::channel(false);
        let p = progress.clone();
        let work = tokio::spawn(async move {
            for _ in 0..25 {
                let _fetching = p.begin(Stage::Fetch, Duration::from_millis(200));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok::<_, crate::runner::RunError>(7)
        });
        let held = hold(&store, "busy", terms(ttl), &progress, halt, None, work).await;
        assert!(matches!(held, Held::Done(Ok(7))));
        let (_, after) = store.lease_holder("busy").await.unwrap().unwrap();
        assert!(after > before, "renewed while making progress");
    }
}
