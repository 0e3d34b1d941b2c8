//! The control plane with real processes on a real etcd: writer leases change hands with a
//! higher fencing epoch when the holder is killed, nodes register and heartbeat, and a ring
//! published to the store reaches every running node without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_ring::{RebalanceOptions, RingBuilder};
use cairn_tests::{ClusterOptions, EtcdProcess, TestCluster, cairn_bin, etcd_node_config};

/// `cairn lease-hold` processes; each reports "held <name> epoch <n> by <holder>" on stdout.
struct Holders {
    children: Vec<Child>,
    lines: mpsc::Receiver<(usize, String)>,
}

impl Holders {
    fn start(etcd: &EtcdProcess, name: &str, count: usize) -> Holders {
        let (tx, lines) = mpsc::channel();
        let mut children = Vec::new();
        for i in 0..count {
            let mut child = Command::new(cairn_bin())
                .args([
                    "lease-hold",
                    "--etcd",
                    &etcd.url,
                    name,
                    "--holder",
                    &format!("node-{i}"),
                    "--ttl-s",
                    "2",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let out = child.stdout.take().unwrap();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send((i, line)).is_err() {
                        return;
                    }
                }
            });
            children.push(child);
        }
        Holders { children, lines }
    }

    /// The next "held" line: (holder index, epoch), within `limit`.
    fn next_holder(&self, limit: Duration) -> (usize, u64) {
        let (i, line) = self
            .lines
            .recv_timeout(limit)
            .expect("no holder took the lease in time");
        let epoch = line
            .split_whitespace()
            .nth(3)
            .and_then(|e| e.parse().ok())
            .expect(&line);
        (i, epoch)
    }
}

impl Drop for Holders {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn killing_the_lease_holder_hands_the_lease_on_with_a_higher_epoch() {
    let etcd = EtcdProcess::spawn();
    let mut holders = Holders::start(&etcd, "rbd/image-1", 3);
    let (first, epoch1) = holders.next_holder(Duration::from_secs(20));
    // The others are refused while it renews.
    assert!(
        holders.lines.recv_timeout(Duration::from_secs(4)).is_err(),
        "two holders at once"
    );
    let killed_at = Instant::now();
    holders.children[first].kill().unwrap();
    holders.children[first].wait().unwrap();
    let (second, epoch2) = holders.next_holder(Duration::from_secs(15));
    let waited = killed_at.elapsed();
    assert_ne!(first, second);
    assert!(epoch2 > epoch1, "epoch went from {epoch1} to {epoch2}");
    // Not before the lease ran out: the holder renewed every TTL/3, so its lease ended between
    // 2/3 and all of the 2 s TTL after the kill (etcd's expiry is not earlier than the TTL).
    assert!(
        waited >= Duration::from_millis(1_200),
        "taken after only {waited:?}"
    );
    eprintln!(
        "holder {first} (epoch {epoch1}) killed; holder {second} took it with epoch {epoch2} after {waited:?}"
    );
}

fn status(etcd: &EtcdProcess) -> serde_json::Value {
    let out = Command::new(cairn_bin())
        .args(["status", "--json", "--etcd", &etcd.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn nodes_register_and_take_a_published_ring_without_restarting() {
    let etcd = EtcdProcess::spawn();
    let opts = ClusterOptions {
        extra_config: etcd_node_config(&etcd),
        ..ClusterOptions::default()
    };
    let mut cluster = TestCluster::start(opts);
    wait_for(
        Duration::from_secs(20),
        "three nodes up in `cairn status`",
        || {
            let s = status(&etcd);
            s["nodes"]
                .as_array()
                .is_some_and(|n| n.len() == 3 && n.iter().all(|n| n["up"] == true))
        },
    );

    // A new ring version: one device's weight changes.
    let mut builder: RingBuilder = cluster.builder.clone();
    builder.set_weight(0, 150.0).unwrap();
    builder.pretend_min_part_hours_passed();
    builder
        .rebalance(RebalanceOptions {
            seed: 2,
            now_minutes: 0,
        })
        .unwrap();
    let ring = cairn_ring::PartitionRing::compile(&builder).unwrap();
    let old = cluster.ring.version();
    assert!(ring.version() > old);
    let path = cluster.dir.path().join("object-v2.ring");
    std::fs::write(&path, ring.to_bytes().unwrap()).unwrap();
    // ring-tool publishes it (`cairn ring-publish` does the same, used below).
    let out = Command::new(cairn_tests::workspace_bin("ring-tool"))
        .arg(&path)
        .args(["publish", "--etcd", &etcd.url, "--kind", "object"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pids: Vec<Option<u32>> = (0..3).map(|i| cluster.pid(i)).collect();
    let object_ring_version = |i: usize| -> Option<u64> {
        cluster
            .metrics(i)
            .lines()
            .find(|l| l.starts_with("cairn_node_ring_version{kind=\"object\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    wait_for(
        Duration::from_secs(20),
        "every node reporting the new ring version",
        || (0..3).all(|i| object_ring_version(i) == Some(ring.version())),
    );
    // Same processes: nothing restarted.
    assert_eq!(pids, (0..3).map(|i| cluster.pid(i)).collect::<Vec<_>>());
    // ... and say so in their heartbeats, which `cairn status` shows.
    wait_for(
        Duration::from_secs(10),
        "`cairn status` showing the new ring on every node",
        || {
            status(&etcd)["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["rings"]["object"].as_u64() == Some(ring.version()))
        },
    );
    // An older ring is refused by the store itself.
    let out = Command::new(cairn_bin())
        .args(["ring-publish", "--etcd", &etcd.url, "--kind", "object"])
        .arg(&cluster.ring_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not newer"));

    // A killed node shows as down once its heartbeat lease (3 s) runs out.
    cluster.kill(2);
    wait_for(
        Duration::from_secs(15),
        "node 2 down in `cairn status`",
        || {
            let s = status(&etcd);
            s["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["up"] == false)
                .count()
                == 1
        },
    );
    let s = status(&etcd);
    let down = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["up"] == false)
        .unwrap();
    assert!(
        down["last_heartbeat_unix_ms"]
            .as_u64()
            .is_some_and(|t| t > 0),
        "a down node keeps when it was last seen: {down}"
    );
    eprintln!(
        "ring {old} -> {} taken by 3 running nodes; node 2 seen down after kill",
        ring.version()
    );
}

#[test]
fn init_creates_a_cluster_once_and_join_issues_certificates_from_its_ca() {
    let etcd = EtcdProcess::spawn();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(cairn_bin())
            .args(args)
            .args(["--etcd", &etcd.url])
            .output()
            .unwrap()
    };
    let out_dir = dir.path().join("ca");
    let init = run(&["init", "--out", out_dir.to_str().unwrap()]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let again = run(&["init", "--out", dir.path().join("ca2").to_str().unwrap()]);
    assert!(
        !again.status.success(),
        "a second init replaced the cluster"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a cluster"));
    let node_dir = dir.path().join("n1");
    let join = run(&[
        "node-join",
        "--name",
        "node-1",
        "--ip",
        "127.0.0.1",
        "--out",
        node_dir.to_str().unwrap(),
    ]);
    assert!(
        join.status.success(),
        "{}",
        String::from_utf8_lossy(&join.stderr)
    );
    // The node's certificate chains to the CA `init` wrote out: a TLS identity accepts both.
    let ca_pem = std::fs::read_to_string(out_dir.join("ca.pem")).unwrap();
    let cert = cairn_net::NodeCert {
        node_name: "node-1".into(),
        cert_pem: std::fs::read_to_string(node_dir.join("node-1.pem")).unwrap(),
        key_pem: std::fs::read_to_string(node_dir.join("node-1.key")).unwrap(),
    };
    cairn_net::TlsIdentity::from_pem(&ca_pem, &cert).unwrap();
    assert_eq!(
        std::fs::read_to_string(node_dir.join("ca.pem")).unwrap(),
        ca_pem
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(node_dir.join("node-1.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the node key is private");
    assert!(String::from_utf8_lossy(&join.stdout).contains("hash_prefix"));

    // The admin credentials init printed work against the identity store it filled, with the
    // master key it wrote; the store itself holds neither the password nor the S3 secret.
    let printed = String::from_utf8_lossy(&init.stdout).to_string();
    let word_after = |label: &str| {
        let rest = &printed[printed.find(label).unwrap() + label.len()..];
        rest.split_whitespace().next().unwrap().to_string()
    };
    let password = word_after("password:");
    let access_key = word_after("access_key");
    let secret_key = word_after("secret_key");
    let key_hex = std::fs::read_to_string(out_dir.join("identity.key")).unwrap();
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&key_hex[2 * i..2 * i + 2], 16).unwrap();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use cairn_meta::MetaStore;
        let config = cairn_meta::EtcdConfig {
            endpoints: vec![etcd.url.clone()],
            op_timeout_ms: 5_000,
            connect_timeout_ms: 5_000,
        };
        let store = cairn_meta::EtcdStore::connect(&config).await.unwrap();
        let identity = cairn_meta::IdentityStore::new(store.clone(), key);
        let who = identity
            .authenticate_password("admin", &password)
            .await
            .unwrap();
        assert!(
            who.roles.contains(&cairn_meta::identity::Role::Admin),
            "{who:?}"
        );
        assert!(
            identity
                .authenticate_password("admin", "wrong")
                .await
                .is_err()
        );
        let (owner, secret) = identity.s3_secret(&access_key).await.unwrap().unwrap();
        assert_eq!(
            (secret.expose(), owner.user_name.as_str()),
            (secret_key.as_str(), "admin")
        );
        let all = store
            .range(
                &cairn_meta::KeyRange::Prefix(bytes::Bytes::from_static(b"/cairn/")),
                10_000,
            )
            .await
            .unwrap();
        for kv in all {
            let v = String::from_utf8_lossy(&kv.value);
            assert!(
                !v.contains(&password) && !v.contains(&secret_key),
                "a secret stored in clear at {:?}",
                kv.key
            );
        }
    });
}
