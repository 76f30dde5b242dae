//! A changing set of running channels (`intake serve`): each channel runs
//! [`super::run_forever`] in its own task with its own stop signal, so one can be started,
//! restarted with new settings, or stopped (finishing its batch in hand, then releasing its
//! lease) while the others go on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use intake_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::settings::{ChannelSettings, Settings};

/// Bound on each database call while stopping (lease release).
const STOP_STEP: Duration = Duration::from_secs(1);

struct Worker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The channels running on this node, by name.
pub struct Fleet {
    store: Store,
    workers: BTreeMap<String, Worker>,
}

impl Fleet {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            workers: BTreeMap::new(),
        }
    }

    /// Names of the running channels.
    pub fn names(&self) -> Vec<String> {
        self.workers.keys().cloned().collect()
    }

    pub fn is_running(&self, name: &str) -> bool {
        self.workers.contains_key(name)
    }

    /// Start `c` (which must not be running: stop it first to restart it).
    pub fn start(&mut self, settings: &Settings, c: Arc<ChannelSettings>) {
        let (tx, rx) = watch::channel(false);
        let (settings, store, name) = (settings.clone(), self.store.clone(), c.name.clone());
        let task = tokio::spawn(async move { super::run_forever(&settings, &store, &c, rx).await });
        self.workers.insert(name, Worker { stop: tx, task });
    }

    /// Stop one channel: it finishes its batch in hand within `grace`, else it is dropped; its
    /// lease is released either way so another node can take it at once.
    pub async fn stop(&mut self, name: &str, grace: Duration) {
        if let Some(w) = self.workers.remove(name) {
            stop_workers(&self.store, vec![(name.to_string(), w)], grace).await;
        }
    }

    /// Stop every channel (shutdown), all within `grace` plus the lease releases.
    pub async fn shutdown(mut self, grace: Duration) {
        let all = std::mem::take(&mut self.workers).into_iter().collect();
        stop_workers(&self.store, all, grace).await;
    }
}

async fn stop_workers(store: &Store, workers: Vec<(String, Worker)>, grace: Duration) {
    for (_, w) in &workers {
        let _ = w.stop.send(true);
    }
    let names: Vec<String> = workers.iter().map(|(n, _)| n.clone()).collect();
    let mut tasks: Vec<JoinHandle<()>> = workers.into_iter().map(|(_, w)| w.task).collect();
    let finished = tokio::time::timeout(grace, async {
        for t in &mut tasks {
            let _ = t.await;
        }
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            channels = ?names,
            grace_seconds = grace.as_secs(),
            "channel(s) did not finish within the grace period; dropped"
        );
        // Aborting drops the channel's work (its inner task is abort-on-drop).
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
    super::lease::release_all(store, names.iter().map(String::as_str), STOP_STEP).await;
}
