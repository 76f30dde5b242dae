//! Per-channel leases: one node per mailbox. When several `intake` nodes share one database, each
//! channel (one mailbox + folder) is worked by the node that holds its lease, and another node
//! takes the channel over once the holder stops renewing (it died, hung, or lost the database).
//!
//! **Invariant**: at any instant at most one holder has an unexpired lease on a channel. A lease
//! row names its holder and `expires_at` (Unix seconds, the unit of [`crate::now`]); it is held
//! while `now < expires_at`. Every change is one conditional statement, decided by the database
//! (the upsert of [`Store::try_acquire_lease`] locks the row on PostgreSQL and re-checks the
//! condition on its newest version; SQLite has one writer at a time), so of any number of
//! nodes racing for a free or expired lease exactly one gets `true`.
//!
//! ## Protocol (per channel)
//! 1. [`Store::try_acquire_lease`] with this node's id (see [`node_id`]). `false`: another node
//!    holds it; try again later (after about the TTL).
//! 2. While working, [`Store::renew_lease`] well before the TTL runs out (e.g. every TTL / 3).
//!    `false` means the lease was taken over or released: stop working the channel at once
//!    (close the connection, do not acknowledge or checkpoint further), then go back to 1.
//! 3. On a clean shutdown, [`Store::release_lease`] so another node can take over at once.
//!
//! What a lease does **not** do: fence off a holder that does not notice it lost the lease (a
//! process paused for longer than the TTL keeps running its current batch). Exactly-once does
//! not depend on leases — the ledger in [`crate::apply`] turns a second node's work into
//! duplicates — the lease keeps two nodes from working (connecting, fetching, moving messages
//! in) the same mailbox in the first place.
//!
//! Times come from the clock of the node making the call, so nodes' clocks must agree (NTP) to
//! well within the TTL. Times have one-second resolution: a TTL is rounded up to whole seconds,
//! and a lease may lapse up to a second earlier than `acquired + ttl` in wall-clock time.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Row;

use crate::{Store, StoreError, now};

/// A TTL in whole seconds, rounded up (a lease is never shorter than asked for, apart from
/// the clock's one-second resolution); a zero TTL gives a lease that has lapsed at once.
fn ttl_seconds(ttl: Duration) -> i64 {
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// An id for this node (process) as a lease holder: `host:pid:random`, e.g.
/// `mail-2:4711:9f3c…`. The host name is for people reading `lease_holder`; the pid and the
/// random part make it unique, also across restarts and between two calls in one process.
pub fn node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .and_then(|s| clean_host(&s))
        .or_else(|| std::env::var("HOSTNAME").ok().and_then(|s| clean_host(&s)))
        .unwrap_or_else(|| "node".to_string());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // RandomState is seeded from the OS once per process and varies per instance: a random
    // 64-bit suffix without a dependency.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    format!("{host}:{}:{:016x}", std::process::id(), h.finish())
}

/// The first line of a host name, trimmed, limited to 64 printable characters; `None` if empty.
fn clean_host(s: &str) -> Option<String> {
    let host: String = s
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != ':')
        .take(64)
        .collect();
    (!host.is_empty()).then_some(host)
}

impl Store {
    /// Take the lease of `channel` for `holder` until now + `ttl`, in one atomic statement.
    /// `true` if there was no lease, the lease had lapsed (`expires_at <= now`), or `holder`
    /// already held it (then it is renewed, like [`Store::renew_lease`]); `false` if another
    /// holder has an unexpired lease (nothing is changed then).
    ///
    /// `holder` must be unique per node (see [`node_id`]): two callers with the same id both
    /// get `true`. `acquired_at` is kept while the same holder renews, and set anew when the
    /// lease changes hands.
    pub async fn try_acquire_lease(
        &self,
        channel: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = now();
        let done = sqlx::query(
            "INSERT INTO channel_leases (channel, holder, expires_at, acquired_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (channel) DO UPDATE SET
                 holder = excluded.holder,
                 expires_at = excluded.expires_at,
                 acquired_at = CASE WHEN channel_leases.holder = excluded.holder
                                    THEN channel_leases.acquired_at
                                    ELSE excluded.acquired_at END
             WHERE channel_leases.holder = excluded.holder OR channel_leases.expires_at <= $4",
        )
        .bind(channel)
        .bind(holder)
        .bind(now.saturating_add(ttl_seconds(ttl)))
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Extend `holder`'s lease of `channel` to now + `ttl`. `true` only if `holder` is still
    /// the lease's holder; `false` if the lease was released or another holder took it over:
    /// stop working the channel.
    ///
    /// A lease of `holder` that lapsed but was not taken over by anyone is renewed (`true`):
    /// that is safe, since no other node can have held the channel in between — taking it
    /// would have changed the holder, releasing it would have deleted the row.
    pub async fn renew_lease(
        &self,
        channel: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE channel_leases SET expires_at = $1 WHERE channel = $2 AND holder = $3",
        )
        .bind(now().saturating_add(ttl_seconds(ttl)))
        .bind(channel)
        .bind(holder)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Give up `holder`'s lease of `channel` so another node can take it at once. Does
    /// nothing if `holder` does not hold it (any more).
    pub async fn release_lease(&self, channel: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM channel_leases WHERE channel = $1 AND holder = $2")
            .bind(channel)
            .bind(holder)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// For diagnostics: the holder of `channel`'s lease and when it expires (Unix seconds),
    /// or `None` if there is no lease row. The row may have lapsed: compare `expires_at` with
    /// [`crate::now`] (held while `now < expires_at`).
    pub async fn lease_holder(&self, channel: &str) -> Result<Option<(String, i64)>, StoreError> {
        let Some(r) =
            sqlx::query("SELECT holder, expires_at FROM channel_leases WHERE channel = $1")
                .bind(channel)
                .fetch_optional(self.pool())
                .await?
        else {
            return Ok(None);
        };
        Ok(Some((r.try_get("holder")?, r.try_get("expires_at")?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Duration::ZERO), 0);
        assert_eq!(ttl_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ttl_seconds(Duration::from_secs(30)), 30);
        assert_eq!(ttl_seconds(Duration::from_millis(30_001)), 31);
        assert_eq!(ttl_seconds(Duration::MAX), i64::MAX);
    }

    #[test]
    fn node_ids_are_unique_and_readable() {
        let (a, b) = (node_id(), node_id());
        assert_ne!(a, b);
        let parts: Vec<&str> = a.split(':').collect();
        assert_eq!(parts.len(), 3, "{a}");
        assert!(!parts[0].is_empty());
        assert_eq!(parts[1], std::process::id().to_string());
        assert_eq!(clean_host(" web-1 \nx"), Some("web-1".into()));
        assert_eq!(clean_host("\n"), None);
    }
}
