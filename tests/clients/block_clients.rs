//! Real NBD clients (qemu-img, qemu-io, nbdinfo, nbdcopy, fio) against the images a real
//! `cairn up` exports, and what must survive a crash of that process.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_tests::up::{CairnUp, run, run_ok, text};

const T: Duration = Duration::from_secs(300);

fn qemu_io(url: &str, cmds: &[&str]) -> String {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw"]);
    if url.contains('@') {
        // Snapshots are read-only exports: qemu refuses to open them for writing.
        c.arg("-r");
    }
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    c.arg(url);
    let out = run_ok(&mut c, T);
    let t = text(&out);
    assert!(
        !t.contains("Pattern verification failed") && !t.contains("failed"),
        "qemu-io {cmds:?} on {url}: {t}"
    );
    t
}

fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path), T);
    text(&out).split_whitespace().next().unwrap().to_string()
}

fn random_file(path: &Path, mib: u64) {
    run_ok(
        Command::new("dd")
            .args(["if=/dev/urandom", "bs=1M", "status=none"])
            .arg(format!("count={mib}"))
            .arg(format!("of={}", path.display())),
        T,
    );
}

fn map(url: &str) -> Vec<(u64, u64, String)> {
    let out = run_ok(Command::new("nbdinfo").args(["--map", url]), T);
    text(&out)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.parse().ok()?,
                f.get(1)?.parse().ok()?,
                f[3..].join(" "),
            ))
        })
        .collect()
}

#[test]
fn qemu_tools_write_across_objects_map_holes_and_convert() {
    let up = CairnUp::start();
    up.admin(&["image", "create", "disk", "--size", "64M"]);
    let url = up.nbd("disk");
    let info = text(&run_ok(Command::new("qemu-img").args(["info", &url]), T));
    assert!(info.contains("67108864 bytes"), "{info}");
    // Across the first object boundary (4 MiB objects) and inside the third object.
    qemu_io(
        &url,
        &[
            "write -P 0xab 4192256 8192",
            "write -P 0xcd 9437184 65536",
            "read -P 0xab 4192256 8192",
            "read -P 0xcd 9437184 65536",
            "read -P 0 0 4192256",
        ],
    );
    let m = map(&url);
    assert_eq!(m[0], (0, 4192256, "hole,zero".into()), "{m:?}");
    assert_eq!(m[1], (4192256, 8192, "data".into()), "{m:?}");
    assert!(
        m.contains(&(9437184, 65536, "data".into())),
        "{m:?}\n{}",
        up.log_tail(40)
    );
    // Discard frees and reads back zeros; write-zeroes too.
    qemu_io(
        &url,
        &[
            "discard 9437184 65536",
            "read -P 0 9437184 65536",
            "write -z -u 4192256 4096",
            "read -P 0 4192256 4096",
            "read -P 0xab 4196352 4096",
        ],
    );
    let m = map(&url);
    assert!(m.contains(&(4196352, 4096, "data".into())), "{m:?}");
    assert!(
        !m.iter().any(|(o, _, k)| *o == 9437184 && k == "data"),
        "{m:?}"
    );
    let info = up.admin(&["image", "info", "disk"]);
    assert_eq!(info["allocated_bytes"], 4096, "{info}");

    // qcow2 in through `cairn image import`, compared by qemu-img; exported back as qcow2.
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("src.raw");
    random_file(&raw, 8);
    let qcow = tmp.path().join("src.qcow2");
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&qcow),
        T,
    );
    let out = run(
        Command::new(cairn_tests::cairn_bin())
            .args(["image", "import"])
            .arg(&qcow)
            .arg("imported")
            .arg("--endpoints")
            .arg(up.endpoints_path()),
        T,
    );
    assert!(out.status.success(), "import: {}", text(&out));
    run_ok(
        Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(&raw)
            .arg(up.nbd("imported")),
        T,
    );
    let back = tmp.path().join("back.qcow2");
    let out = run(
        Command::new(cairn_tests::cairn_bin())
            .args(["image", "export", "imported"])
            .arg(&back)
            .args(["--format", "qcow2", "--endpoints"])
            .arg(up.endpoints_path()),
        T,
    );
    assert!(out.status.success(), "export: {}", text(&out));
    run_ok(
        Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "qcow2"])
            .arg(&raw)
            .arg(&back),
        T,
    );
}

#[test]
fn nbdcopy_one_gib_in_and_out() {
    let up = CairnUp::start();
    up.admin(&["image", "create", "big", "--size", "1G"]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src.raw");
    random_file(&src, 1024);
    let url = up.nbd("big");
    run_ok(Command::new("nbdcopy").arg(&src).arg(&url), T);
    let dst = tmp.path().join("dst.raw");
    run_ok(Command::new("nbdcopy").arg(&url).arg(&dst), T);
    assert_eq!(sha256(&src), sha256(&dst));
    let info = up.admin(&["image", "info", "big"]);
    assert_eq!(info["allocated_bytes"], 1u64 << 30, "{info}");
    up.admin(&["image", "rm", "big"]);
    let list = up.admin(&["image", "ls"]);
    assert_eq!(list, serde_json::json!([]));
}

#[test]
fn fio_random_writes_at_depth_32_verify() {
    let up = CairnUp::start();
    up.admin(&["image", "create", "fio", "--size", "256M"]);
    let out = run(
        Command::new("fio")
            .args([
                "--name=verify",
                "--ioengine=nbd",
                "--rw=randwrite",
                "--bs=4k",
                "--iodepth=32",
                "--size=16m",
                "--verify=crc32c",
                "--do_verify=1",
                "--verify_fatal=1",
                "--verify_state_save=0",
                "--output-format=terse",
            ])
            .arg(format!("--uri={}", up.nbd("fio"))),
        T,
    );
    assert!(
        out.status.success(),
        "fio: {}\n{}",
        text(&out),
        up.log_tail(30)
    );
}

#[test]
fn snapshots_clones_rollback_and_diff_byte_for_byte() {
    let up = CairnUp::start();
    up.admin(&["image", "create", "base", "--size", "16M"]);
    let base = up.nbd("base");
    qemu_io(&base, &["write -P 0x11 0 6M"]);
    up.admin(&["image", "snap", "create", "base@s1"]);
    qemu_io(&base, &["write -P 0x22 1M 4M", "discard 5M 1M"]);
    // The snapshot still reads its point-in-time content; the head the new one.
    qemu_io(
        &up.nbd("base@s1"),
        &["read -P 0x11 0 6M", "read -P 0 6M 10M"],
    );
    qemu_io(
        &base,
        &[
            "read -P 0x11 0 1M",
            "read -P 0x22 1M 4M",
            "read -P 0 5M 11M",
        ],
    );
    let refused = run(
        Command::new("qemu-io")
            .args(["-f", "raw", "-c", "write -P 1 0 4k"])
            .arg(up.nbd("base@s1")),
        T,
    );
    assert!(
        !refused.status.success() || text(&refused).contains("failed"),
        "snapshot export accepted a write: {}",
        text(&refused)
    );
    let diff = up.admin(&["image", "diff", "base", "--from-snap", "s1"]);
    assert_eq!(
        diff,
        serde_json::json!([
            { "offset": 1 << 20, "len_bytes": 4 << 20, "data": true },
            { "offset": 5 << 20, "len_bytes": 1 << 20, "data": false },
        ])
    );
    // Clone of the protected snapshot: reads fall through, writes stay in the clone.
    up.admin(&["image", "snap", "protect", "base@s1"]);
    up.admin(&["image", "clone", "base@s1", "child"]);
    let child = up.nbd("child");
    qemu_io(
        &child,
        &[
            "write -P 0x33 4M 8k",
            "read -P 0x11 0 4M",
            "read -P 0x33 4M 8k",
            "read -P 0x11 4202496 2088960",
        ],
    );
    qemu_io(&base, &["read -P 0x22 4M 8k"]);
    let unprotect = run(
        Command::new(cairn_tests::cairn_bin())
            .args(["image", "snap", "unprotect", "base@s1", "--endpoints"])
            .arg(up.endpoints_path()),
        T,
    );
    assert!(
        !unprotect.status.success(),
        "unprotect with a clone succeeded"
    );
    up.admin(&["image", "flatten", "child"]);
    up.admin(&["image", "snap", "unprotect", "base@s1"]);
    qemu_io(
        &child,
        &[
            "read -P 0x11 0 4M",
            "read -P 0x33 4M 8k",
            "read -P 0x11 4202496 2088960",
            "read -P 0 6M 10M",
        ],
    );
    // Rollback makes the head the snapshot again.
    up.admin(&["image", "snap", "rollback", "base@s1"]);
    qemu_io(&base, &["read -P 0x11 0 6M", "read -P 0 6M 10M"]);
    up.admin(&["image", "snap", "rm", "base@s1"]);
    qemu_io(&base, &["read -P 0x11 0 6M"]);
    // Shrink and grow: the cut-off tail reads as zeros after growing back.
    up.admin(&["image", "resize", "base", "--size", "2M"]);
    up.admin(&["image", "resize", "base", "--size", "16M"]);
    qemu_io(&base, &["read -P 0x11 0 2M", "read -P 0 2M 14M"]);
}

#[test]
fn flushed_writes_survive_a_crash_and_the_next_writer_takes_over() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut up = CairnUp::start_in(&dir);
    up.admin(&["image", "create", "vm", "--size", "32M"]);
    // qemu-io flushes before it exits: everything it wrote is acknowledged and flushed.
    qemu_io(
        &up.nbd("vm"),
        &["write -P 0x5a 0 8M", "write -P 0xa5 12M 3M"],
    );
    up.kill9();
    let up = CairnUp::start_in(&dir);
    // The crashed process's writer lease runs out (15 s TTL); then a new writer takes the
    // image over with a higher epoch and fences the old one out.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = run(
            Command::new("qemu-io")
                .args([
                    "-f",
                    "raw",
                    "-c",
                    "read -P 0x5a 0 8M",
                    "-c",
                    "read -P 0xa5 12M 3M",
                    "-c",
                    "write -P 1 20M 4k",
                ])
                .arg(up.nbd("vm")),
            T,
        );
        let t = text(&out);
        if out.status.success() && !t.contains("failed") {
            break;
        }
        assert!(
            t.contains("open for writing") || t.contains("Requested export not available"),
            "unexpected failure: {t}\n{}",
            up.log_tail(20)
        );
        assert!(Instant::now() < deadline, "no takeover within 60 s: {t}");
        std::thread::sleep(Duration::from_secs(1));
    }
    let info = up.admin(&["image", "info", "vm"]);
    assert!(
        info["writer"].is_null() || info["writer"].as_str().unwrap().contains("epoch 2"),
        "{info}"
    );
}
