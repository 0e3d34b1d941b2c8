//! The block layer's fault tests on real processes: three `cairn node` processes, a real etcd
//! for the image catalog and writer leases, and `cairn nbd serve` processes in front.
//!
//! - a storage node killed with SIGKILL during fio's writes: I/O goes on, fio's verify passes,
//!   and after the node comes back stale, reads still return the newest data;
//! - an NBD server killed after a FLUSH: everything flushed is there for the next server;
//! - a writer that lost its lease while frozen (SIGSTOP) comes back with a stale epoch: the
//!   new writer's data stands and the stale writer's writes are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use cairn_block::BlockService;
use cairn_meta::{EtcdConfig, EtcdStore};
use cairn_tests::up::{run, run_ok, text};
use cairn_tests::{ClusterOptions, EtcdProcess, TestCluster, cairn_bin};

const T: Duration = Duration::from_secs(300);
/// The writer lease TTL of the block layer is 15 s; a takeover waits at most this long.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(60);

/// A `cairn nbd serve` process; SIGKILLed on drop.
struct NbdServe {
    child: Option<Child>,
    addr: String,
    log: PathBuf,
}

impl NbdServe {
    fn start(cluster: &TestCluster, etcd: &EtcdProcess, tag: &str) -> NbdServe {
        let log = cluster.dir.path().join(format!("nbd-{tag}.log"));
        let logf = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(cairn_bin())
            .args([
                "nbd",
                "serve",
                "--etcd",
                &etcd.url,
                "--listen",
                "127.0.0.1:0",
            ])
            .arg("--config")
            .arg(&cluster.nodes[0].config)
            .env("CAIRN_LOG", "info,cairn_block=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(logf)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "cairn nbd serve did not start:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        let addr = line
            .split("nbd://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        NbdServe {
            child: Some(child),
            addr,
            log,
        }
    }

    fn url(&self, image: &str) -> String {
        format!("nbd://{}/{image}", self.addr)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn signal(&self, sig: &str) {
        run_ok(Command::new("kill").args([sig, &self.pid().to_string()]), T);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for NbdServe {
    fn drop(&mut self) {
        // SIGKILL ends a stopped (SIGSTOP) process too.
        self.kill9();
    }
}

/// Three node processes and etcd; `images` are created through the block service in-process
/// (as an operator's tool would), before any server opens them.
fn cluster_with_images(images: &[(&str, u64)]) -> (EtcdProcess, TestCluster) {
    let etcd = EtcdProcess::spawn();
    let cluster = TestCluster::start(ClusterOptions::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EtcdStore::connect(&EtcdConfig {
            endpoints: vec![etcd.url.clone()],
            op_timeout_ms: 5_000,
            connect_timeout_ms: 5_000,
        })
        .await
        .unwrap();
        let block = BlockService::new(Arc::new(cluster.client()), store, "test-setup");
        for (name, size) in images {
            block.create(name, *size, None).await.unwrap();
        }
    });
    (etcd, cluster)
}

/// RPC requests a node has served (every kind and outcome).
const SERVED: &str = "cairn_node_rpc_requests_total";

fn fio(url: &str, verify_only: bool) -> Command {
    let mut c = Command::new("fio");
    c.args([
        "--name=verify",
        "--ioengine=nbd",
        "--rw=randwrite",
        "--bs=4k",
        "--iodepth=32",
        "--size=24m",
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_fatal=1",
        "--verify_state_save=0",
        "--output-format=terse",
    ])
    .arg(format!("--uri={url}"));
    if verify_only {
        // The same job (fio's seeds are fixed): read everything back and check it.
        c.arg("--verify_only");
    }
    c
}

#[test]
fn fio_goes_on_when_a_storage_node_is_killed_and_reads_stay_right_after_it_returns_stale() {
    let (_etcd, mut cluster) = cluster_with_images(&[("fio", 256 << 20)]);
    let nbd = NbdServe::start(&cluster, &_etcd, "a");
    let url = nbd.url("fio");
    let served_before = cluster.metric(1, SERVED);
    let child = fio(&url, false)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let fio_pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    // Kill a node once writes are flowing: it has served a few hundred more requests.
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.metric(1, SERVED) < served_before + 300.0 {
        assert!(
            Instant::now() < deadline,
            "no writes reached node 1 within 60 s:\n{}",
            nbd.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.kill(1);
    let out = match rx.recv_timeout(T) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &fio_pid.to_string()])
                .status();
            panic!("fio did not finish within {T:?}:\n{}", nbd.log_tail());
        }
    };
    assert!(
        out.status.success(),
        "fio with a node killed: {}\n{}",
        text(&out),
        nbd.log_tail()
    );
    // The killed node comes back without the writes it missed; another node dies. Every read
    // now needs the stale node's answer, and the newest piece must still win.
    cluster.restart(1);
    cluster.kill(2);
    let out = run(&mut fio(&url, true), T);
    assert!(
        out.status.success(),
        "verify with a stale replica in the read quorum: {}\n{}",
        text(&out),
        nbd.log_tail()
    );
}

fn qemu_io(url: &str, cmds: &[&str]) -> (bool, String) {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw"]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    c.arg(url);
    let out = run(&mut c, T);
    let t = text(&out);
    (out.status.success() && !t.contains("failed"), t)
}

/// Retries a qemu-io run until the image's previous writer lease has expired (bounded).
fn qemu_io_once_writable(nbd: &NbdServe, url: &str, cmds: &[&str]) -> String {
    let deadline = Instant::now() + TAKEOVER_LIMIT;
    loop {
        let (ok, t) = qemu_io(url, cmds);
        if ok {
            return t;
        }
        assert!(
            t.contains("open for writing") || t.contains("Requested export not available"),
            "unexpected failure: {t}\n{}",
            nbd.log_tail()
        );
        assert!(
            Instant::now() < deadline,
            "no takeover within {TAKEOVER_LIMIT:?}: {t}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn flushed_writes_survive_a_killed_nbd_server() {
    let (etcd, cluster) = cluster_with_images(&[("vm", 32 << 20)]);
    let mut first = NbdServe::start(&cluster, &etcd, "first");
    // qemu-io flushes before it exits: everything below is acknowledged and flushed.
    let (ok, t) = qemu_io(
        &first.url("vm"),
        &["write -P 0x5a 0 6M", "write -P 0xa5 10M 5M", "flush"],
    );
    assert!(ok, "{t}\n{}", first.log_tail());
    first.kill9();
    let second = NbdServe::start(&cluster, &etcd, "second");
    qemu_io_once_writable(
        &second,
        &second.url("vm"),
        &[
            "read -P 0x5a 0 6M",
            "read -P 0xa5 10M 5M",
            "read -P 0 6M 4M",
        ],
    );
}

/// qemu-io as an interactive shell: one connection kept open across steps. It takes one
/// command per read of its stdin and prints its prompt (no newline) when ready for the next,
/// so commands go one at a time and the prompt ends each answer.
struct QemuIoShell {
    child: Child,
    stdin: ChildStdin,
    output: mpsc::Receiver<Vec<u8>>,
}

const PROMPT: &str = "qemu-io> ";

impl QemuIoShell {
    fn open(url: &str) -> QemuIoShell {
        let mut child = Command::new("qemu-io")
            .args(["-f", "raw", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let (tx, output) = mpsc::channel();
        for mut out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = out.read(&mut buf) {
                    if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            });
        }
        let mut shell = QemuIoShell {
            child,
            stdin,
            output,
        };
        let banner = shell.until_prompt("open");
        assert!(!banner.contains("qemu-io:"), "qemu-io {url}: {banner}");
        shell
    }

    fn until_prompt(&mut self, what: &str) -> String {
        let deadline = Instant::now() + T;
        let mut seen = String::new();
        while !seen.ends_with(PROMPT) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => panic!("qemu-io `{what}`: no prompt within {T:?}; saw:\n{seen}"),
            }
        }
        // stderr has its own pipe: an error printed just before the prompt may trail it.
        while let Ok(chunk) = self.output.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        seen
    }

    /// Runs one command and returns what it printed.
    fn command(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.until_prompt(cmd)
    }
}

impl Drop for QemuIoShell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_writer_frozen_past_its_lease_is_fenced_when_it_comes_back() {
    let (etcd, cluster) = cluster_with_images(&[("vm", 16 << 20)]);
    let old = NbdServe::start(&cluster, &etcd, "old");
    let new = NbdServe::start(&cluster, &etcd, "new");
    let mut shell = QemuIoShell::open(&old.url("vm"));
    let out = shell.command("write -P 0x11 0 64k");
    assert!(out.contains("wrote 65536/65536"), "{out}");
    let out = shell.command("flush");
    assert!(!out.contains("failed"), "{out}");

    // The old writer freezes (a VM host stalls, a process is stopped); its lease runs out and
    // the new server takes the image with a higher epoch, fencing the old one.
    old.signal("-STOP");
    let t = qemu_io_once_writable(
        &new,
        &new.url("vm"),
        &["write -P 0x22 0 64k", "flush", "read -P 0x22 0 64k"],
    );
    assert!(t.contains("wrote 65536/65536"), "{t}");

    // The old writer wakes up still believing it holds the image: its writes are refused.
    old.signal("-CONT");
    let out = shell.command("write -P 0x33 0 64k");
    assert!(
        out.contains("failed") && !out.contains("wrote 65536/65536"),
        "a stale writer's write was acknowledged: {out}\n{}",
        old.log_tail()
    );
    let log = std::fs::read_to_string(&old.log).unwrap();
    assert!(
        log.contains("fenced") || log.contains("lease lost"),
        "the old server does not say why it refused:\n{}",
        old.log_tail()
    );
    drop(shell);

    // Only the new writer's data is in the image.
    let (ok, t) = qemu_io(&new.url("vm"), &["read -P 0x22 0 64k"]);
    assert!(ok, "{t}\n{}", new.log_tail());
}
