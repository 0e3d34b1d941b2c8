//! Swift account totals (`X-Account-Object-Count`, `X-Account-Bytes-Used`) and the per-container
//! `count`/`bytes` of account listings.
//!
//! The cluster keeps object counts and bytes per container listing, not per account. An
//! account's totals are the sum over its containers, so they are computed here by asking each
//! container (a bounded number at once) and kept for [`ACCOUNT_STATS_TTL`]: a little stale, as
//! Swift's own account stats are (its container updaters refresh them asynchronously), and
//! one account HEAD costs one container HEAD per container at most every TTL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_engine::{ListItem, ListQuery};
use cairn_node::{ClientError, ClusterClient};
use futures::StreamExt;

/// How long computed totals are served before they are computed again.
pub const ACCOUNT_STATS_TTL: Duration = Duration::from_secs(2);
/// Containers summed per account; an account with more reports the sum of the first ones (in
/// name order).
pub const ACCOUNT_STATS_CONTAINERS_MAX: usize = 10_000;
/// Container HEADs in flight per computation.
const HEADS_IN_FLIGHT: usize = 16;
/// Accounts whose totals are kept; past this the cache is emptied (it refills on demand).
const CACHED_ACCOUNTS_MAX: usize = 1_024;

/// One account's totals.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AccountTotals {
    pub objects: u64,
    pub bytes: u64,
    /// Objects and bytes of each container summed.
    pub per_container: HashMap<String, (u64, u64)>,
}

impl AccountTotals {
    /// Objects and bytes of a container; `(0, 0)` if it was not summed.
    pub fn of(&self, container: &str) -> (u64, u64) {
        self.per_container.get(container).copied().unwrap_or((0, 0))
    }
}

#[derive(Debug, Default)]
pub struct AccountStatsCache {
    entries: Mutex<HashMap<String, (Instant, Arc<AccountTotals>)>>,
}

impl AccountStatsCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<AccountTotals>)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The account's totals, computed if the cached ones are older than the TTL.
    pub async fn totals(
        &self,
        client: &ClusterClient,
        account: &str,
    ) -> Result<Arc<AccountTotals>, ClientError> {
        if let Some((at, totals)) = self.lock().get(account)
            && at.elapsed() < ACCOUNT_STATS_TTL
        {
            return Ok(totals.clone());
        }
        let totals = Arc::new(compute(client, account).await?);
        let mut entries = self.lock();
        if entries.len() >= CACHED_ACCOUNTS_MAX && !entries.contains_key(account) {
            entries.clear();
        }
        entries.insert(account.to_string(), (Instant::now(), totals.clone()));
        Ok(totals)
    }
}

async fn compute(client: &ClusterClient, account: &str) -> Result<AccountTotals, ClientError> {
    let mut names = Vec::new();
    let mut marker = None;
    loop {
        let page = client
            .list_containers(
                account,
                ListQuery {
                    marker: marker.clone(),
                    limit: cairn_engine::limits::LIST_LIMIT_MAX,
                    ..ListQuery::default()
                },
            )
            .await?;
        names.extend(page.items.into_iter().filter_map(|i| match i {
            ListItem::Entry(e) if !e.deleted => Some(e.name),
            _ => None,
        }));
        if names.len() >= ACCOUNT_STATS_CONTAINERS_MAX {
            names.truncate(ACCOUNT_STATS_CONTAINERS_MAX);
            break;
        }
        match (page.truncated, page.next_marker) {
            (true, Some(m)) => marker = Some(m),
            _ => break,
        }
    }
    let heads = futures::stream::iter(names)
        .map(|name| async move {
            let found = client.head_container(account, &name).await;
            (name, found)
        })
        .buffer_unordered(HEADS_IN_FLIGHT);
    let mut heads = std::pin::pin!(heads);
    let mut totals = AccountTotals::default();
    while let Some((name, found)) = heads.next().await {
        // A container deleted since the listing counts for nothing.
        if let Some(c) = found? {
            let (objects, bytes) = (c.stats.object_count, c.stats.bytes);
            totals.objects += objects;
            totals.bytes += bytes;
            totals.per_container.insert(name, (objects, bytes));
        }
    }
    Ok(totals)
}
