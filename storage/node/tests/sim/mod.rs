//! A deterministic simulation of a storage cluster driving the node's real quorum and
//! replication state machines (`cairn_node::core`) over a simulated network and disks.
//!
//! One seed fixes everything: topology, clock skews, operations, message delays and drops,
//! partitions, crashes and restarts. A run has a *chaos* phase (clients write, delete and read
//! while faults come and go) and a *heal* phase (every node up, network whole, replication
//! only). Invariants are checked throughout and at the end; a failure names its seed.

pub mod disk;
pub mod rng;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use cairn_engine::HybridClock;
use cairn_node::core::{
    EntryVersion, JobCommand, JobInput, ReadOutcome, ReadQuorum, ReplicaRole, ReplicationJob,
    Version, WriteOutcome, WriteQuorum, choose_targets,
};
use cairn_ring::{DeviceId, NewDevice, PartitionRing, PathHasher, RebalanceOptions, RingBuilder};

use disk::SimDisk;
use rng::SimRng;

/// Simulated time, microseconds.
type Micros = u64;
const MS: Micros = 1_000;

const RPC_TIMEOUT: Micros = 80 * MS;
const REPLICATION_INTERVAL: Micros = 150 * MS;
const JOBS_PER_DEVICE_MAX: usize = 4;
const HANDOFFS_MAX: usize = 6;
/// How long a coordinator routes around a device whose call failed.
const DOWN_FOR: Micros = 300 * MS;
const KEYS: usize = 48;

#[derive(Debug, Clone)]
enum Req {
    Write {
        part: u32,
        name: String,
        version: Version,
    },
    Read {
        part: u32,
        name: String,
    },
    Digest {
        part: u32,
    },
    Entries {
        part: u32,
        buckets: Vec<u16>,
    },
}

#[derive(Debug, Clone)]
enum Resp {
    Ack,
    Held(Option<Version>),
    Digest(Vec<u128>),
    Entries(Vec<(u16, EntryVersion)>),
}

#[derive(Debug)]
enum Event {
    Request {
        from: usize,
        to: usize,
        call: u64,
        device: DeviceId,
        req: Req,
    },
    Reply {
        to: usize,
        incarnation: u64,
        call: u64,
        resp: Resp,
    },
    SyncDone {
        node: usize,
        incarnation: u64,
        device: DeviceId,
        part: u32,
        name: String,
        version: Version,
        reply: (usize, u64),
    },
    Timeout {
        node: usize,
        incarnation: u64,
        call: u64,
    },
    ClientOp,
    Restart {
        node: usize,
    },
    Heal,
    Fault,
    ReplicationTick {
        node: usize,
        incarnation: u64,
    },
}

/// What a node waits for on an outstanding call.
#[derive(Debug, Clone)]
enum Pending {
    Write {
        op: u64,
        device: DeviceId,
    },
    Read {
        op: u64,
        device: DeviceId,
    },
    Job {
        local: DeviceId,
        part: u32,
        peer: DeviceId,
        push: Option<EntryVersion>,
    },
}

#[derive(Debug)]
struct WriteOp {
    quorum: WriteQuorum,
    part: u32,
    name: String,
    version: Version,
}

#[derive(Debug)]
struct ReadOp {
    quorum: ReadQuorum<()>,
    name: String,
    started: Micros,
}

#[derive(Debug)]
struct Node {
    alive: bool,
    incarnation: u64,
    clock: HybridClock,
    skew_us: i64,
    devices: Vec<DeviceId>,
    calls: BTreeMap<u64, Pending>,
    writes: BTreeMap<u64, WriteOp>,
    reads: BTreeMap<u64, ReadOp>,
    jobs: BTreeMap<(DeviceId, u32), ReplicationJob>,
    /// Per device, the partition the next replication tick starts from.
    cursor: BTreeMap<DeviceId, u32>,
    /// Devices whose last call from this node failed, until when (the client's error memory).
    down_until: BTreeMap<DeviceId, Micros>,
}

/// An acknowledged write, as the client saw it.
#[derive(Debug, Clone)]
struct Acked {
    name: String,
    version: Version,
    strict: bool,
    done_at: Micros,
}

#[derive(Debug, Default, Clone)]
pub struct SimStats {
    pub writes_acked: u64,
    pub writes_strict: u64,
    pub writes_failed: u64,
    pub reads_checked: u64,
    pub reads_failed: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub messages: u64,
    pub dropped: u64,
    pub pushed: u64,
    pub purged: u64,
    pub heal_ms: u64,
}

pub struct Sim {
    seed: u64,
    rng: SimRng,
    now: Micros,
    seq: u64,
    queue: BinaryHeap<Reverse<(Micros, u64)>>,
    events: BTreeMap<u64, Event>,
    ring: PartitionRing,
    hasher: PathHasher,
    nodes: Vec<Node>,
    node_of: BTreeMap<DeviceId, usize>,
    disks: BTreeMap<DeviceId, SimDisk>,
    side: Vec<u8>,
    drop_rate: f64,
    chaos: bool,
    next_id: u64,
    acked: Vec<Acked>,
    pub stats: SimStats,
}

impl Sim {
    pub fn new(seed: u64) -> Sim {
        let mut rng = SimRng::new(seed);
        let node_count = rng.range(5, 10) as usize;
        let mut builder = RingBuilder::new(5, 3.0, 0).expect("builder");
        for n in 0..node_count {
            for d in 0..2 {
                builder
                    .add_device(NewDevice {
                        id: None,
                        region: 1,
                        zone: u32::try_from(n % 4).expect("zone") + 1,
                        ip: format!("127.0.0.{}", n + 1),
                        port: 6000,
                        replication_ip: None,
                        replication_port: None,
                        device: format!("d{d}"),
                        weight: 100.0,
                        meta: String::new(),
                    })
                    .expect("add device");
            }
        }
        builder
            .rebalance(RebalanceOptions {
                seed,
                now_minutes: 0,
            })
            .expect("rebalance");
        let ring = PartitionRing::compile(&builder).expect("compile");
        let mut node_of = BTreeMap::new();
        let mut nodes: Vec<Node> = (0..node_count)
            .map(|n| Node {
                alive: true,
                incarnation: 0,
                clock: HybridClock::new(u32::try_from(n).expect("node id")),
                skew_us: rng.range(0, 40 * MS) as i64 - 20_000,
                devices: Vec::new(),
                calls: BTreeMap::new(),
                writes: BTreeMap::new(),
                reads: BTreeMap::new(),
                jobs: BTreeMap::new(),
                cursor: BTreeMap::new(),
                down_until: BTreeMap::new(),
            })
            .collect();
        for dev in ring.devices() {
            let n = usize::from(
                dev.ip
                    .rsplit('.')
                    .next()
                    .and_then(|s| s.parse::<u8>().ok())
                    .expect("ip"),
            ) - 1;
            nodes[n].devices.push(dev.id);
            node_of.insert(dev.id, n);
        }
        let disks = ring.devices().map(|d| (d.id, SimDisk::default())).collect();
        let drop_rate = [0.0, 0.01, 0.05][rng.range(0, 3) as usize];
        let mut sim = Sim {
            seed,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            ring,
            hasher: PathHasher::new("sim-prefix", "sim-suffix"),
            side: vec![0; node_count],
            nodes,
            node_of,
            disks,
            drop_rate,
            chaos: true,
            next_id: 1,
            acked: Vec::new(),
            stats: SimStats::default(),
        };
        sim.schedule(MS, Event::ClientOp);
        sim.schedule(200 * MS, Event::Fault);
        for n in 0..node_count {
            let at = sim.rng.range(10 * MS, REPLICATION_INTERVAL);
            sim.schedule(
                at,
                Event::ReplicationTick {
                    node: n,
                    incarnation: 0,
                },
            );
        }
        sim
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "simulation seed {} failed at t={}ms: {what}\nreplay: CAIRN_SIM_SEED={} cargo nextest run -p cairn-node --test simulation",
            self.seed,
            self.now / MS,
            self.seed
        );
    }

    fn schedule(&mut self, after: Micros, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((self.now + after, self.seq)));
        self.events.insert(self.seq, event);
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn wall(&self, node: usize) -> u64 {
        (self.now as i64 + 1_000_000_000 + self.nodes[node].skew_us) as u64
    }

    fn net_delay(&mut self) -> Micros {
        if self.chaos && self.rng.chance(0.02) {
            self.rng.range(30 * MS, 120 * MS)
        } else {
            self.rng.range(100, 3 * MS)
        }
    }

    /// Puts a message on the wire from `from` to `to`; it may be dropped or delayed.
    fn transmit(&mut self, from: usize, to: usize, event: Event) {
        self.stats.messages += 1;
        let cut = self.side[from] != self.side[to];
        if !self.nodes[from].alive || cut || (self.chaos && self.rng.chance(self.drop_rate)) {
            self.stats.dropped += 1;
            return;
        }
        let delay = self.net_delay();
        self.schedule(delay, event);
    }

    fn call(&mut self, from: usize, device: DeviceId, req: Req, pending: Pending) {
        let call = self.id();
        let to = self.node_of[&device];
        self.nodes[from].calls.insert(call, pending);
        let incarnation = self.nodes[from].incarnation;
        self.schedule(
            RPC_TIMEOUT,
            Event::Timeout {
                node: from,
                incarnation,
                call,
            },
        );
        self.transmit(
            from,
            to,
            Event::Request {
                from,
                to,
                call,
                device,
                req,
            },
        );
    }

    fn handoffs(&self, part: u32) -> Vec<DeviceId> {
        match self.ring.handoffs(part) {
            Ok(h) => h.take(HANDOFFS_MAX).map(|d| d.id).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn primaries(&self, part: u32) -> Vec<DeviceId> {
        self.ring.primary_ids(part).collect()
    }

    /// Runs until simulated time `until`.
    pub fn run_until(&mut self, until: Micros) {
        while let Some(Reverse((at, seq))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            if let Some(event) = self.events.remove(&seq) {
                self.handle(event);
            }
        }
        self.now = until;
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Request {
                from,
                to,
                call,
                device,
                req,
            } => {
                if self.nodes[to].alive {
                    self.serve(from, to, call, device, req);
                }
            }
            Event::Reply {
                to,
                incarnation,
                call,
                resp,
            } => {
                if self.nodes[to].alive
                    && self.nodes[to].incarnation == incarnation
                    && let Some(p) = self.nodes[to].calls.remove(&call)
                {
                    self.on_reply(to, p, Some(resp));
                }
            }
            Event::Timeout {
                node,
                incarnation,
                call,
            } => {
                if self.nodes[node].alive
                    && self.nodes[node].incarnation == incarnation
                    && let Some(p) = self.nodes[node].calls.remove(&call)
                {
                    self.on_reply(node, p, None);
                }
            }
            Event::SyncDone {
                node,
                incarnation,
                device,
                part,
                name,
                version,
                reply,
            } => {
                // A crash between the write and its sync loses the write: it was never acked.
                if self.nodes[node].alive && self.nodes[node].incarnation == incarnation {
                    self.disks
                        .get_mut(&device)
                        .expect("disk")
                        .apply(part, &name, version);
                    self.send_reply(node, reply, Resp::Ack);
                }
            }
            Event::ClientOp => self.client_op(),
            Event::Fault => self.fault(),
            Event::Restart { node } => self.restart(node),
            Event::Heal => self.side.iter_mut().for_each(|s| *s = 0),
            Event::ReplicationTick { node, incarnation } => {
                if self.nodes[node].alive && self.nodes[node].incarnation == incarnation {
                    self.replicate(node);
                    let next = self
                        .rng
                        .range(REPLICATION_INTERVAL / 2, REPLICATION_INTERVAL * 3 / 2);
                    self.schedule(next, Event::ReplicationTick { node, incarnation });
                }
            }
        }
    }

    fn send_reply(&mut self, from: usize, (to, call): (usize, u64), resp: Resp) {
        let incarnation = self.nodes[to].incarnation;
        self.transmit(
            from,
            to,
            Event::Reply {
                to,
                incarnation,
                call,
                resp,
            },
        );
    }

    fn serve(&mut self, from: usize, node: usize, call: u64, device: DeviceId, req: Req) {
        let disk = &self.disks[&device];
        let resp = match req {
            Req::Write {
                part,
                name,
                version,
            } => {
                let sync = self.rng.range(200, 4 * MS);
                let incarnation = self.nodes[node].incarnation;
                self.schedule(
                    sync,
                    Event::SyncDone {
                        node,
                        incarnation,
                        device,
                        part,
                        name,
                        version,
                        reply: (from, call),
                    },
                );
                return;
            }
            Req::Read { part, name } => Resp::Held(disk.get(part, &name)),
            Req::Digest { part } => Resp::Digest(disk.digest(part)),
            Req::Entries { part, buckets } => {
                Resp::Entries(disk.bucket_entries(part, Some(&buckets)))
            }
        };
        self.send_reply(node, (from, call), resp);
    }

    fn on_reply(&mut self, node: usize, pending: Pending, resp: Option<Resp>) {
        // As the real client does: a device that failed is routed around for a while.
        let device = match &pending {
            Pending::Write { device, .. } | Pending::Read { device, .. } => Some(*device),
            Pending::Job { .. } => None,
        };
        if let Some(d) = device {
            if resp.is_none() {
                self.nodes[node].down_until.insert(d, self.now + DOWN_FOR);
            } else {
                self.nodes[node].down_until.remove(&d);
            }
        }
        match pending {
            Pending::Write { op, device } => {
                let Some(w) = self.nodes[node].writes.get_mut(&op) else {
                    return;
                };
                let (outcome, substitute) = match resp {
                    Some(Resp::Ack) => (w.quorum.on_ack(device), None),
                    _ => w.quorum.on_failure(device),
                };
                let (part, name, version) = (w.part, w.name.clone(), w.version);
                if let Some(h) = substitute {
                    self.call(
                        node,
                        h,
                        Req::Write {
                            part,
                            name: name.clone(),
                            version,
                        },
                        Pending::Write { op, device: h },
                    );
                }
                if let Some(outcome) = outcome {
                    self.nodes[node].writes.remove(&op);
                    match outcome {
                        WriteOutcome::Succeeded { strict } => {
                            self.stats.writes_acked += 1;
                            self.stats.writes_strict += u64::from(strict);
                            self.acked.push(Acked {
                                name,
                                version,
                                strict,
                                done_at: self.now,
                            });
                        }
                        WriteOutcome::Failed => self.stats.writes_failed += 1,
                    }
                }
            }
            Pending::Read { op, device } => {
                let Some(r) = self.nodes[node].reads.get_mut(&op) else {
                    return;
                };
                let (outcome, substitute) = match resp {
                    Some(Resp::Held(v)) => (r.quorum.on_answer(device, v.map(|v| (v, ()))), None),
                    _ => r.quorum.on_failure(device),
                };
                let name = r.name.clone();
                let started = r.started;
                if let Some(h) = substitute {
                    let part = self.ring.partition_for(&self.hasher, &name);
                    self.call(
                        node,
                        h,
                        Req::Read {
                            part,
                            name: name.clone(),
                        },
                        Pending::Read { op, device: h },
                    );
                }
                if let Some(outcome) = outcome {
                    self.nodes[node].reads.remove(&op);
                    self.check_read(&name, started, &outcome);
                }
            }
            Pending::Job {
                local,
                part,
                peer,
                push,
            } => {
                let input = match (resp, push) {
                    (Some(Resp::Digest(buckets)), None) => JobInput::Digest { peer, buckets },
                    (Some(Resp::Entries(entries)), None) => JobInput::PeerEntries { peer, entries },
                    (Some(Resp::Ack), Some(entry)) => JobInput::Pushed {
                        peer,
                        entry,
                        ok: true,
                    },
                    _ => JobInput::PeerFailed { peer },
                };
                self.job_input(node, local, part, input);
            }
        }
    }

    /// Read-after-write: a strict read (R primaries answered) sees at least the newest write
    /// that was strictly acknowledged before the read began.
    fn check_read(&mut self, name: &str, started: Micros, outcome: &ReadOutcome<()>) {
        let ReadOutcome::Answered { newest, strict, .. } = outcome else {
            self.stats.reads_failed += 1;
            return;
        };
        if !strict {
            return;
        }
        self.stats.reads_checked += 1;
        let must = self
            .acked
            .iter()
            .filter(|a| a.name == name && a.strict && a.done_at < started)
            .map(|a| a.version.timestamp)
            .max();
        let seen = newest.as_ref().map(|(_, v, _)| v.timestamp);
        if let Some(must) = must
            && seen.is_none_or(|s| s < must)
        {
            self.fail(&format!(
                "read of {name} returned {seen:?}, older than acknowledged {must}"
            ));
        }
    }

    fn client_op(&mut self) {
        if !self.chaos {
            return;
        }
        let alive: Vec<usize> = (0..self.nodes.len())
            .filter(|&n| self.nodes[n].alive)
            .collect();
        if let Some(&node) = (!alive.is_empty()).then(|| self.rng.pick(&alive)) {
            let key = self.rng.range(0, KEYS as u64);
            let name = format!("/acct/bucket/obj-{key}");
            let part = self.ring.partition_for(&self.hasher, &name);
            let primaries = self.primaries(part);
            let now = self.now;
            let down = &self.nodes[node].down_until;
            let (targets, handoffs) = choose_targets(&primaries, &self.handoffs(part), |d| {
                down.get(&d).is_some_and(|&until| until > now)
            });
            let op = self.id();
            let roll = self.rng.range(0, 100);
            if roll < 65 {
                let wall = self.wall(node);
                let timestamp = self.nodes[node].clock.now(wall);
                let version = Version {
                    timestamp,
                    tombstone: roll >= 50,
                };
                let (quorum, send) = WriteQuorum::start_with(&primaries, &targets, handoffs);
                self.nodes[node].writes.insert(
                    op,
                    WriteOp {
                        quorum,
                        part,
                        name: name.clone(),
                        version,
                    },
                );
                for d in send {
                    self.call(
                        node,
                        d,
                        Req::Write {
                            part,
                            name: name.clone(),
                            version,
                        },
                        Pending::Write { op, device: d },
                    );
                }
            } else {
                let (quorum, send) = ReadQuorum::start_with(&primaries, &targets, handoffs);
                self.nodes[node].reads.insert(
                    op,
                    ReadOp {
                        quorum,
                        name: name.clone(),
                        started: self.now,
                    },
                );
                for d in send {
                    self.call(
                        node,
                        d,
                        Req::Read {
                            part,
                            name: name.clone(),
                        },
                        Pending::Read { op, device: d },
                    );
                }
            }
        }
        let next = self.rng.range(500, 6 * MS);
        self.schedule(next, Event::ClientOp);
    }

    fn fault(&mut self) {
        if !self.chaos {
            return;
        }
        let n = self.nodes.len();
        let down = self.nodes.iter().filter(|x| !x.alive).count();
        match self.rng.range(0, 3) {
            0 if down < 2 => {
                let node = self.rng.range(0, n as u64) as usize;
                if self.nodes[node].alive {
                    self.crash(node);
                    let back = self.rng.range(100 * MS, 1_500 * MS);
                    self.schedule(back, Event::Restart { node });
                }
            }
            1 => {
                self.stats.partitions += 1;
                for s in self.side.iter_mut() {
                    *s = 0;
                }
                let cut = self.rng.range(1, (n / 2 + 1) as u64);
                for _ in 0..cut {
                    let i = self.rng.range(0, n as u64) as usize;
                    self.side[i] = 1;
                }
                let heal = self.rng.range(100 * MS, 1_000 * MS);
                self.schedule(heal, Event::Heal);
            }
            _ => {}
        }
        let next = self.rng.range(200 * MS, 700 * MS);
        self.schedule(next, Event::Fault);
    }

    fn crash(&mut self, node: usize) {
        self.stats.crashes += 1;
        let x = &mut self.nodes[node];
        x.alive = false;
        x.incarnation += 1;
        // Everything in memory dies with the process; the disks keep what was synced.
        x.calls.clear();
        x.writes.clear();
        x.reads.clear();
        x.jobs.clear();
    }

    fn restart(&mut self, node: usize) {
        if self.nodes[node].alive {
            return;
        }
        let x = &mut self.nodes[node];
        x.alive = true;
        x.clock = HybridClock::new(u32::try_from(node).expect("node id"));
        let incarnation = x.incarnation;
        self.schedule(10 * MS, Event::ReplicationTick { node, incarnation });
    }

    fn replicate(&mut self, node: usize) {
        for device in self.nodes[node].devices.clone() {
            // Round-robin from where the last tick stopped, so no partition starves.
            let mut parts = self.disks[&device].partitions();
            let cursor = self.nodes[node].cursor.get(&device).copied().unwrap_or(0);
            let start = parts.iter().position(|&p| p >= cursor).unwrap_or(0);
            parts.rotate_left(start);
            for part in parts {
                let running = self.nodes[node]
                    .jobs
                    .keys()
                    .filter(|(d, _)| *d == device)
                    .count();
                if running >= JOBS_PER_DEVICE_MAX {
                    break;
                }
                self.nodes[node].cursor.insert(device, part + 1);
                if self.nodes[node].jobs.contains_key(&(device, part)) {
                    continue;
                }
                let primaries = self.primaries(part);
                let (role, peers): (ReplicaRole, Vec<DeviceId>) = if primaries.contains(&device) {
                    (
                        ReplicaRole::Primary,
                        primaries.iter().copied().filter(|&d| d != device).collect(),
                    )
                } else {
                    (ReplicaRole::Handoff, primaries)
                };
                let digest = self.disks[&device].digest(part);
                let (job, cmds) = ReplicationJob::start(role, digest, &peers);
                self.nodes[node].jobs.insert((device, part), job);
                self.run_commands(node, device, part, cmds);
            }
        }
    }

    fn job_input(&mut self, node: usize, local: DeviceId, part: u32, input: JobInput) {
        if std::env::var("SIM_DEBUG").is_ok() && local == 4 && part == 2 && !self.chaos {
            eprintln!(
                "t={} job input {input:?} job={:?}",
                self.now / MS,
                self.nodes[node].jobs.get(&(local, part))
            );
        }
        let Some(job) = self.nodes[node].jobs.get_mut(&(local, part)) else {
            return;
        };
        let cmds = job.on_input(input);
        self.run_commands(node, local, part, cmds);
    }

    fn run_commands(&mut self, node: usize, local: DeviceId, part: u32, cmds: Vec<JobCommand>) {
        let mut queue = std::collections::VecDeque::from(cmds);
        while let Some(cmd) = queue.pop_front() {
            match cmd {
                JobCommand::FetchDigest { peer } => {
                    self.call(
                        node,
                        peer,
                        Req::Digest { part },
                        Pending::Job {
                            local,
                            part,
                            peer,
                            push: None,
                        },
                    );
                }
                JobCommand::FetchEntries { peer, buckets } => {
                    self.call(
                        node,
                        peer,
                        Req::Entries { part, buckets },
                        Pending::Job {
                            local,
                            part,
                            peer,
                            push: None,
                        },
                    );
                }
                JobCommand::ReadLocal { buckets } => {
                    let entries = self.disks[&local].bucket_entries(part, buckets.as_deref());
                    if let Some(job) = self.nodes[node].jobs.get_mut(&(local, part)) {
                        queue.extend(job.on_input(JobInput::LocalEntries { entries }));
                    }
                }
                JobCommand::Push { peer, entry } => {
                    self.stats.pushed += 1;
                    let req = Req::Write {
                        part,
                        name: entry.name.clone(),
                        version: entry.version,
                    };
                    self.call(
                        node,
                        peer,
                        req,
                        Pending::Job {
                            local,
                            part,
                            peer,
                            push: Some(entry),
                        },
                    );
                }
                JobCommand::Purge { entry } => {
                    self.stats.purged += 1;
                    self.disks
                        .get_mut(&local)
                        .expect("disk")
                        .purge(part, &entry);
                }
            }
        }
        if self.nodes[node]
            .jobs
            .get(&(local, part))
            .is_some_and(|j| j.is_finished())
        {
            self.nodes[node].jobs.remove(&(local, part));
        }
    }

    /// Ends the chaos: every node up, network whole, no drops, no new client operations.
    pub fn heal(&mut self) {
        self.chaos = false;
        self.side.iter_mut().for_each(|s| *s = 0);
        for n in 0..self.nodes.len() {
            self.restart(n);
        }
    }

    /// Whether every partition's primaries hold identical entries and no other device holds any.
    pub fn converged(&self) -> Result<(), String> {
        for part in 0..self.ring.partitions() {
            let primaries = self.primaries(part);
            let reference: Vec<EntryVersion> = self.disks[&primaries[0]].entries(part).collect();
            for d in &primaries[1..] {
                let other: Vec<EntryVersion> = self.disks[d].entries(part).collect();
                if other != reference {
                    return Err(format!(
                        "partition {part}: primaries {} and {d} differ",
                        primaries[0]
                    ));
                }
            }
            for (d, disk) in &self.disks {
                if !primaries.contains(d) && disk.entries(part).next().is_some() {
                    let held: Vec<EntryVersion> = disk.entries(part).collect();
                    let prim: Vec<Vec<EntryVersion>> = primaries
                        .iter()
                        .map(|p| self.disks[p].entries(part).collect())
                        .collect();
                    return Err(format!(
                        "partition {part}: handoff device {d} still holds {held:?}; primaries {primaries:?} hold {prim:?}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every acknowledged write is held (or superseded) on every primary.
    pub fn check_durability(&self) {
        for a in &self.acked {
            let part = self.ring.partition_for(&self.hasher, &a.name);
            for d in self.primaries(part) {
                let held = self.disks[&d].get(part, &a.name);
                if held.is_none_or(|h| h.timestamp < a.version.timestamp) {
                    self.fail(&format!(
                        "acknowledged write {} @ {} (strict: {}) missing on device {d}: holds {held:?}",
                        a.name, a.version.timestamp, a.strict
                    ));
                }
            }
        }
    }

    /// The whole scenario for one seed.
    pub fn run(seed: u64, chaos_ms: u64) -> SimStats {
        let mut sim = Sim::new(seed);
        sim.run_until(chaos_ms * MS);
        sim.heal();
        let heal_start = sim.now;
        let heal_limit = sim.now + 30_000 * MS;
        loop {
            let next = sim.now + 250 * MS;
            sim.run_until(next);
            if sim.converged().is_ok() {
                break;
            }
            if sim.now >= heal_limit {
                let why = sim.converged().err().unwrap_or_default();
                sim.fail(&format!(
                    "replicas did not converge within 30 s of healing: {why}"
                ));
            }
        }
        sim.stats.heal_ms = (sim.now - heal_start) / MS;
        sim.check_durability();
        sim.stats.clone()
    }
}
