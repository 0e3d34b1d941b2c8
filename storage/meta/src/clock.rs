//! Wall-clock time for lease expiry, injected so tests can move time instantly.
//!
//! The embedded store persists lease deadlines as Unix milliseconds (wall clock, not a
//! monotonic instant) so that after a restart it can expire what should have expired while it
//! was down.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A sleep returned by [`Clock::sleep_until_unix_ms`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_unix_ms(&self) -> u64;
    /// Resolves once `now_unix_ms() >= deadline_unix_ms` (it may resolve early; callers
    /// re-check).
    fn sleep_until_unix_ms(&self, deadline_unix_ms: u64) -> Sleep;
}

/// The real clock: `SystemTime` for the time, tokio timers for sleeping.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_ms(&self) -> u64 {
        // A clock before 1970 is treated as 1970: leases then expire late, never early.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn sleep_until_unix_ms(&self, deadline_unix_ms: u64) -> Sleep {
        let wait_ms = deadline_unix_ms.saturating_sub(self.now_unix_ms());
        Box::pin(tokio::time::sleep(Duration::from_millis(wait_ms)))
    }
}

/// A clock that only moves when told to; for tests. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now_unix_ms: Arc<tokio::sync::watch::Sender<u64>>,
}

impl ManualClock {
    /// A clock reading `start_unix_ms`.
    pub fn new(start_unix_ms: u64) -> Self {
        ManualClock {
            now_unix_ms: Arc::new(tokio::sync::watch::Sender::new(start_unix_ms)),
        }
    }

    /// A clock starting at the real current time (so persisted deadlines stay meaningful).
    pub fn starting_now() -> Self {
        ManualClock::new(SystemClock.now_unix_ms())
    }

    /// Moves time forward, waking sleepers whose deadline has come.
    pub fn advance(&self, by: Duration) {
        let by_ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.now_unix_ms
            .send_modify(|t| *t = t.saturating_add(by_ms));
    }
}

impl Clock for ManualClock {
    fn now_unix_ms(&self) -> u64 {
        *self.now_unix_ms.borrow()
    }

    fn sleep_until_unix_ms(&self, deadline_unix_ms: u64) -> Sleep {
        let mut rx = self.now_unix_ms.subscribe();
        Box::pin(async move {
            // An error means the clock was dropped: time never moves again, so never wake.
            if rx.wait_for(|t| *t >= deadline_unix_ms).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}
