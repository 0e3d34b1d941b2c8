//! Object expiry (Swift's `X-Delete-At` / `X-Delete-After`). Reads hide an expired object at
//! once (`ObjectInfo::expired`); this module reclaims it. A write that sets a delete time also
//! enters `<at>-<account>/<container>/<object>` in a per-hour container of the internal
//! account [`EXPIRER_ACCOUNT`]; the expirer walks the hours that have passed and deletes each
//! object whose delete time still matches (a later write may have changed or removed it),
//! then the entry. Entries and deletes are idempotent, so a crash just repeats work.

use std::sync::Arc;
use std::time::Duration;

use cairn_engine::{ListItem, ListQuery};
use cairn_node::{ClientError, ClusterClient, ObjectPut};
use tracing::{info, warn};

use crate::objects::{SYS_DELETE_AT, now_unix_s};

/// The internal account holding the expiry queue; no project maps to it (accounts of
/// projects are `AUTH_<id>`).
pub const EXPIRER_ACCOUNT: &str = ".expiring_objects";
/// Queue containers each cover this many seconds.
const BUCKET_SECONDS: u64 = 3600;
/// Entries handled per listing page.
const PAGE: usize = 1000;

fn bucket_of(at: u64) -> String {
    format!("{:010}", at / BUCKET_SECONDS * BUCKET_SECONDS)
}

fn entry_name(at: u64, account: &str, container: &str, object: &str) -> String {
    format!("{at:010}-{account}/{container}/{object}")
}

fn parse_entry(name: &str) -> Option<(u64, &str, &str, &str)> {
    let (at, path) = name.split_once('-')?;
    let mut parts = path.splitn(3, '/');
    let (a, c, o) = (parts.next()?, parts.next()?, parts.next()?);
    Some((at.parse().ok()?, a, c, o))
}

/// Queues an object for deletion at `at` (Unix seconds).
pub async fn schedule(
    client: &ClusterClient,
    at: u64,
    account: &str,
    container: &str,
    object: &str,
) -> Result<(), ClientError> {
    let bucket = bucket_of(at);
    client
        .put_container(EXPIRER_ACCOUNT, &bucket, Default::default())
        .await?;
    client
        .put_object(
            ObjectPut {
                account: EXPIRER_ACCOUNT.into(),
                container: bucket,
                object: entry_name(at, account, container, object),
                size_bytes: 0,
                content_type: "application/x-cairn-expiry".into(),
                user_meta: Default::default(),
                digest: None,
            },
            cairn_net::Body::Empty,
        )
        .await?;
    Ok(())
}

/// One pass: deletes every queued object whose time has come. Returns how many it deleted.
pub async fn expire_once(client: &ClusterClient) -> Result<usize, ClientError> {
    let now = now_unix_s();
    let mut deleted = 0;
    let buckets = client
        .list_containers(
            EXPIRER_ACCOUNT,
            ListQuery {
                end_marker: Some(bucket_of(now + BUCKET_SECONDS)),
                limit: PAGE,
                ..ListQuery::default()
            },
        )
        .await?;
    for item in buckets.items {
        let ListItem::Entry(bucket) = item else {
            continue;
        };
        let entries = client
            .list_objects(
                EXPIRER_ACCOUNT,
                &bucket.name,
                ListQuery {
                    limit: PAGE,
                    ..ListQuery::default()
                },
            )
            .await?;
        let mut left = 0;
        for e in entries.items {
            let ListItem::Entry(e) = e else { continue };
            let Some((at, a, c, o)) = parse_entry(&e.name) else {
                warn!(entry = %e.name, "malformed expiry entry; dropping it");
                client
                    .delete_object(EXPIRER_ACCOUNT, &bucket.name, &e.name)
                    .await?;
                continue;
            };
            if at > now {
                left += 1;
                continue;
            }
            let current = client.head_object(a, c, o).await?;
            let due = current
                .as_ref()
                .and_then(|m| m.user_meta.get(SYS_DELETE_AT))
                .and_then(|s| s.parse::<u64>().ok())
                == Some(at);
            if due {
                client.delete_object(a, c, o).await?;
                deleted += 1;
            }
            client
                .delete_object(EXPIRER_ACCOUNT, &bucket.name, &e.name)
                .await?;
        }
        if left == 0 && !entries.truncated {
            // Best effort: a container still filling is kept by its entries.
            let _ = client.delete_container(EXPIRER_ACCOUNT, &bucket.name).await;
        }
    }
    Ok(deleted)
}

/// Runs [`expire_once`] every `interval` until the task is dropped.
pub async fn run(client: Arc<ClusterClient>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        match expire_once(&client).await {
            Ok(0) => {}
            Ok(n) => info!(deleted = n, "expired objects deleted"),
            Err(e) => warn!(error = %e, "expirer pass failed; retrying next pass"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_sort_by_time() {
        let n = entry_name(1_700_000_123, "AUTH_x", "c", "a/b-c");
        assert_eq!(
            parse_entry(&n),
            Some((1_700_000_123, "AUTH_x", "c", "a/b-c"))
        );
        assert!(entry_name(999, "a", "c", "o") < entry_name(1000, "a", "c", "o"));
        assert_eq!(bucket_of(7_250), "0000007200");
    }
}
