//! An in-process network for tests: no sockets, same `Transport` trait, with fault filters
//! (drop with a seeded RNG, fixed or random delay, partitions, isolation, heal).
//!
//! A dropped or partitioned message behaves as on a real network: the caller hears nothing and
//! its call ends with `NetError::Timeout`. A dropped *response* means the handler ran, which is
//! the case replication code most needs to survive. Calls to an address with no registered node
//! fail at once with `Unreachable` (connection refused). Works under `tokio::time::pause`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tracing::Instrument;

use crate::error::NetError;
use crate::message::{CallContext, DynHandler, Handler, Request, Response, Transport};

/// Delay applied to each message (request and response separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delay {
    #[default]
    None,
    Fixed(Duration),
    /// Uniform in `[min, max]`, drawn from the network's seeded RNG.
    Uniform {
        min: Duration,
        max: Duration,
    },
}

struct Node {
    name: Arc<str>,
    handler: Arc<dyn DynHandler>,
}

/// Decides from (sender, receiver, encoded request header) whether to drop a request; lets
/// tests lose one kind of message only (e.g. every replication push to one node).
pub type DropRequestFilter = Arc<dyn Fn(SocketAddr, SocketAddr, &[u8]) -> bool + Send + Sync>;

struct NetState {
    nodes: HashMap<SocketAddr, Node>,
    drop_request_filter: Option<DropRequestFilter>,
    rng: StdRng,
    drop_probability: f64,
    delay: Delay,
    partitions: Vec<(HashSet<SocketAddr>, HashSet<SocketAddr>)>,
    isolated: HashSet<SocketAddr>,
}

/// The shared in-process network. Clone freely; all clones see the same nodes and filters.
#[derive(Clone)]
pub struct TestNetwork {
    seed: u64,
    state: Arc<Mutex<NetState>>,
}

impl std::fmt::Debug for TestNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNetwork")
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// What the filters decided for one message.
enum Fate {
    Deliver(Duration),
    Lost,
}

impl TestNetwork {
    /// A network whose random choices replay exactly from `seed` (print it in your test).
    pub fn new(seed: u64) -> Self {
        TestNetwork {
            seed,
            state: Arc::new(Mutex::new(NetState {
                nodes: HashMap::new(),
                drop_request_filter: None,
                rng: StdRng::seed_from_u64(seed),
                drop_probability: 0.0,
                delay: Delay::None,
                partitions: Vec::new(),
                isolated: HashSet::new(),
            })),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn with<T>(&self, f: impl FnOnce(&mut NetState) -> T) -> T {
        // A panic while holding the lock can only come from a test; keep going with its state.
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Serve `handler` at `addr` under node name `name` (what handlers see as `peer_name`).
    pub fn register<H: Handler>(&self, addr: SocketAddr, name: &str, handler: H) {
        let node = Node {
            name: Arc::from(name),
            handler: Arc::new(handler),
        };
        self.with(|s| s.nodes.insert(addr, node));
    }

    /// Take a node off the network: calls to it fail with `Unreachable`.
    pub fn unregister(&self, addr: SocketAddr) {
        self.with(|s| s.nodes.remove(&addr));
    }

    /// A client sending from `from` as node `name`.
    pub fn transport(&self, from: SocketAddr, name: &str) -> TestTransport {
        TestTransport {
            net: self.clone(),
            from,
            name: Arc::from(name),
        }
    }

    /// Drop each message (request or response) with probability `p` in `[0, 1]`.
    pub fn set_drop_probability(&self, p: f64) {
        self.with(|s| s.drop_probability = p.clamp(0.0, 1.0));
    }

    pub fn set_delay(&self, delay: Delay) {
        self.with(|s| s.delay = delay);
    }

    /// Cut every path between a node in `a` and a node in `b`, both directions.
    pub fn partition(&self, a: &[SocketAddr], b: &[SocketAddr]) {
        let a = a.iter().copied().collect();
        let b = b.iter().copied().collect();
        self.with(|s| s.partitions.push((a, b)));
    }

    /// Cut `addr` off from everyone.
    pub fn isolate(&self, addr: SocketAddr) {
        self.with(|s| s.isolated.insert(addr));
    }

    /// Drop every request for which `filter(from, to, header)` is true (replaces any previous
    /// filter; `heal` removes it).
    pub fn set_drop_request_filter(&self, filter: DropRequestFilter) {
        self.with(|s| s.drop_request_filter = Some(filter));
    }

    /// Remove every partition, isolation, filter, drop probability and delay.
    pub fn heal(&self) {
        self.with(|s| {
            s.drop_request_filter = None;
            s.partitions.clear();
            s.isolated.clear();
            s.drop_probability = 0.0;
            s.delay = Delay::None;
        });
    }

    fn fate(&self, from: SocketAddr, to: SocketAddr) -> Fate {
        self.with(|s| {
            let cut = s.isolated.contains(&from)
                || s.isolated.contains(&to)
                || s.partitions.iter().any(|(a, b)| {
                    (a.contains(&from) && b.contains(&to)) || (b.contains(&from) && a.contains(&to))
                });
            if cut {
                return Fate::Lost;
            }
            if s.drop_probability > 0.0 && s.rng.gen_bool(s.drop_probability) {
                return Fate::Lost;
            }
            let delay = match s.delay {
                Delay::None => Duration::ZERO,
                Delay::Fixed(d) => d,
                Delay::Uniform { min, max } if max > min => s.rng.gen_range(min..=max),
                Delay::Uniform { min, .. } => min,
            };
            Fate::Deliver(delay)
        })
    }
}

/// A client on a `TestNetwork`.
#[derive(Debug, Clone)]
pub struct TestTransport {
    net: TestNetwork,
    from: SocketAddr,
    name: Arc<str>,
}

async fn travel(fate: Fate) {
    match fate {
        Fate::Deliver(d) if d.is_zero() => {}
        Fate::Deliver(d) => tokio::time::sleep(d).await,
        // Never arrives; the caller's timeout ends the call.
        Fate::Lost => futures::future::pending::<()>().await,
    }
}

impl TestTransport {
    async fn call_inner(
        &self,
        peer: SocketAddr,
        req: Request,
        timeout: Duration,
    ) -> Result<Response, NetError> {
        let handler = self.net.with(|s| {
            s.nodes
                .get(&peer)
                .map(|n| (n.handler.clone(), n.name.clone()))
        });
        let Some((handler, peer_name)) = handler else {
            return Err(NetError::Unreachable {
                peer,
                reason: "no node at this address (test network)".into(),
            });
        };
        let filter = self.net.with(|s| s.drop_request_filter.clone());
        if filter.is_some_and(|f| f(self.from, peer, &req.header)) {
            travel(Fate::Lost).await;
        }
        travel(self.net.fate(self.from, peer)).await;
        let ctx = CallContext {
            request_id: req.id,
            peer_addr: self.from,
            peer_name: self.name.clone(),
            timeout,
        };
        let span = tracing::info_span!(
            "rpc",
            request_id = %req.id,
            peer = %self.name,
            to = %peer_name,
            op = tracing::field::Empty,
            target = tracing::field::Empty
        );
        let result = handler
            .handle_dyn(ctx, req.header, req.body)
            .instrument(span)
            .await;
        travel(self.net.fate(peer, self.from)).await;
        result.map_err(|e| NetError::Remote(e.message))
    }
}

impl Transport for TestTransport {
    fn call(&self, peer: SocketAddr, req: Request) -> BoxFuture<'_, Result<Response, NetError>> {
        Box::pin(async move {
            let timeout_ms = req.timeout_ms();
            let timeout = Duration::from_millis(timeout_ms);
            match tokio::time::timeout(timeout, self.call_inner(peer, req, timeout)).await {
                Ok(r) => r,
                Err(_) => Err(NetError::Timeout { peer, timeout_ms }),
            }
        })
    }
}
