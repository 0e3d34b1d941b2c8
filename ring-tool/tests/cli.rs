//! Drives the real `ring-tool` binary the way an operator's script would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn ring_tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ring-tool"))
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = ring_tool().args(args).output().unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn ok(args: &[&str]) -> Run {
    let r = run(args);
    assert!(
        r.code == 0 || r.code == 1,
        "{args:?} exited {}: {}{}",
        r.code,
        r.stdout,
        r.stderr
    );
    r
}

fn json(args: &[&str]) -> Value {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--json");
    let r = ok(&all);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", r.stdout))
}

fn builder_in(dir: &Path) -> String {
    dir.join("object.builder").to_string_lossy().into_owned()
}

/// A small cluster: 2 zones × 3 nodes × 2 devices, added with swift-ring-builder syntax.
fn small_cluster(b: &str) {
    ok(&[b, "create", "8", "3", "1"]);
    let mut args: Vec<String> = vec![b.into(), "add".into()];
    for z in 1..=2 {
        for n in 1..=3 {
            for d in ["sda", "sdb"] {
                args.push(format!("r1z{z}-10.0.{z}.{n}:6200/{d}"));
                args.push("100".into());
            }
        }
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&refs);
}

#[test]
fn operator_walkthrough_with_swift_syntax() {
    let dir = tempfile::tempdir().unwrap();
    let b = builder_in(dir.path());
    small_cluster(&b);

    let first = json(&[&b, "rebalance", "--seed", "1"]);
    assert_eq!(first["assigned"], 256 * 3);
    assert_eq!(first["moved"], 0);
    assert_eq!(first["dispersion"], 0.0);
    assert!(first["balance"].as_f64().unwrap() < 1.0);
    let ring = dir.path().join("object.ring");
    assert!(ring.exists(), "rebalance writes the ring file");
    assert!(
        dir.path().join("backups").exists(),
        "rebalance keeps a backup"
    );

    let show = json(&[&b, "show"]);
    assert_eq!(show["summary"]["devices"], 12);
    assert_eq!(show["summary"]["zones"], 2);
    assert_eq!(show["summary"]["ring_file_up_to_date"], true);
    assert_eq!(show["summary"]["changed_since_rebalance"], false);
    assert_eq!(show["devices"].as_array().unwrap().len(), 12);
    let text = ok(&[&b]).stdout; // no command means show
    assert!(text.contains("256 partitions, 3.000000 replicas"), "{text}");
    assert!(text.contains("Devices:"), "{text}");

    // Inside min_part_hours nothing may move; pretend it passed and the new node fills up.
    // (Several pairs with --json: scripts and bench/ring add devices this way.)
    let added = json(&[
        &b,
        "add",
        "r1z1-10.0.1.9:6200/sda",
        "100",
        "r1z2-10.0.2.9:6200/sda",
        "100",
    ]);
    assert_eq!(added["added"].as_array().unwrap().len(), 2);
    assert_eq!(
        json(&[&b, "show"])["summary"]["changed_since_rebalance"],
        true
    );
    let blocked = run(&[&b, "rebalance", "--json"]);
    assert_eq!(
        blocked.code, 1,
        "nothing movable is a warning: {}",
        blocked.stdout
    );
    let v: Value = serde_json::from_str(&blocked.stdout).unwrap();
    assert_eq!(v["moved"], 0);
    ok(&[&b, "pretend_min_part_hours_passed"]);
    let grown = json(&[&b, "rebalance"]);
    let moved = grown["moved"].as_u64().unwrap();
    assert!(
        moved > 0 && moved <= 256,
        "one replica per partition at most: {moved}"
    );

    // Dashed and underscored spellings, search values, set_info, remove.
    ok(&[&b, "set_weight", "d0", "50"]);
    ok(&[&b, "set-weight", "r1z2-10.0.2.1:6200/sdb", "150"]);
    ok(&[&b, "set_info", "d1", "10.0.9.9:6201/sdz_moved"]);
    let found = json(&[&b, "search", "10.0.9.9"]);
    assert_eq!(found["devices"][0]["device"], "sdz");
    assert_eq!(found["devices"][0]["meta"], "moved");
    let many = run(&[&b, "remove", "z1"]);
    assert_eq!(many.code, 2, "a search matching many needs --yes");
    assert!(many.stderr.contains("--yes"), "{}", many.stderr);
    ok(&[&b, "remove", "d2"]);
    let validate = run(&[&b, "validate"]);
    assert_eq!(
        validate.code, 2,
        "pending removal is reported: {}",
        validate.stdout
    );
    ok(&[&b, "pretend_min_part_hours_passed"]);
    let after = json(&[&b, "rebalance"]);
    assert_eq!(after["removed_devices"], serde_json::json!([2]));
    ok(&[&b, "validate"]);
    let ring_path = ring.to_string_lossy().into_owned();
    ok(&[&ring_path, "validate"]);

    // Dispersion report per tier, write_ring to another path, overload.
    let disp = json(&[&b, "dispersion", "--verbose"]);
    assert!(disp["tiers"].as_array().unwrap().len() > 12);
    let out = dir.path().join("copy.ring").to_string_lossy().into_owned();
    ok(&[&b, "write_ring", "--output", &out]);
    let shown = json(&[&out, "show"]);
    assert_eq!(shown["summary"]["kind"], "ring");
    ok(&[&b, "set_overload", "10%"]);
    assert_eq!(json(&[&b, "show"])["summary"]["overload"], 10.0);
}

#[test]
fn lookup_names_partitions_primaries_and_handoffs() {
    let dir = tempfile::tempdir().unwrap();
    let b = builder_in(dir.path());
    small_cluster(&b);
    ok(&[&b, "rebalance"]);
    let ring = dir
        .path()
        .join("object.ring")
        .to_string_lossy()
        .into_owned();
    let hash = ["--hash-prefix", "p", "--hash-suffix", "s"];
    let mut args = vec![ring.as_str(), "lookup", "/AUTH_a/c/o"];
    args.extend(hash);
    let one = json(&args);
    let mut args = vec![ring.as_str(), "lookup", "AUTH_a", "c", "o"];
    args.extend(hash);
    let same = json(&args);
    assert_eq!(
        one["partition"], same["partition"],
        "path and parts name the same object"
    );
    assert_eq!(one["primaries"].as_array().unwrap().len(), 3);
    assert_eq!(one["handoffs"].as_array().unwrap().len(), 3);
    let primaries: Vec<&Value> = one["primaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["id"])
        .collect();
    assert!(
        one["handoffs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| !primaries.contains(&&h["id"]))
    );
    let by_part = json(&[
        &ring,
        "lookup",
        "--partition",
        &one["partition"].to_string(),
    ]);
    assert_eq!(by_part["primaries"], one["primaries"]);

    let no_secret = run(&[&ring, "lookup", "/AUTH_a/c/o"]);
    assert_eq!(no_secret.code, 2);
    assert!(
        no_secret.stderr.contains("--hash-prefix"),
        "{}",
        no_secret.stderr
    );
    let out_of_range = run(&[&ring, "lookup", "--partition", "256"]);
    assert_eq!(out_of_range.code, 2);
}

#[test]
fn bad_input_gets_a_precise_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = builder_in(dir.path());

    let missing = run(&[&b, "show"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("create"), "{}", missing.stderr);

    small_cluster(&b);
    let before = std::fs::read(&b).unwrap();
    for (args, needle) in [
        (
            vec![b.as_str(), "add", "r1z1-10.0.0.1/sda", "100"],
            "no port",
        ),
        (
            vec![b.as_str(), "add", "r1z1-10.0.1.1:6200/sda", "100"],
            "already exists",
        ),
        (
            vec![b.as_str(), "add", "r1z1-10.0.0.1:6200/sdq", "heavy"],
            "not a number",
        ),
        (
            vec![b.as_str(), "add", "r1z1-10.0.0.1:6200/sdq", "-5"],
            ">= 0",
        ),
        (vec![b.as_str(), "set_weight", "d0", "-5", "--json"], ">= 0"),
        (
            vec![
                b.as_str(),
                "add",
                "--id",
                "65534",
                "--zone",
                "1",
                "--ip",
                "10.9.9.9",
                "--port",
                "6200",
                "--device",
                "sdq",
                "--weight",
                "1",
            ],
            "above the largest id",
        ),
        (
            vec![
                b.as_str(),
                "add",
                "--id",
                "7",
                "r1z1-10.0.0.1:6200/sdq",
                "100",
            ],
            "not both",
        ),
        (
            vec![b.as_str(), "set_weight", "d99", "10"],
            "no device matches",
        ),
        (vec![b.as_str(), "set_overload", "eleven"], "not a number"),
        (vec![b.as_str(), "create", "8", "3", "1"], "already exists"),
        (vec![b.as_str(), "frobnicate"], "unrecognized subcommand"),
    ] {
        let r = run(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stdout);
        assert!(
            r.stderr.contains(needle),
            "{args:?}: expected {needle:?} in {}",
            r.stderr
        );
    }
    assert_eq!(
        std::fs::read(&b).unwrap(),
        before,
        "failed commands left the builder untouched"
    );

    // Corrupt, truncated and foreign files are refused with the reason.
    let corrupt = dir.path().join("corrupt.builder");
    let mut bytes = before.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&corrupt, &bytes).unwrap();
    let r = run(&[corrupt.to_str().unwrap(), "show"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("checksum mismatch"), "{}", r.stderr);
    let truncated = dir.path().join("short.builder");
    std::fs::write(&truncated, &before[..before.len() - 10]).unwrap();
    let r = run(&[truncated.to_str().unwrap(), "show"]);
    assert!(r.stderr.contains("truncated"), "{}", r.stderr);
    let foreign = dir.path().join("swift.builder");
    std::fs::write(&foreign, [0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6]).unwrap();
    let r = run(&[foreign.to_str().unwrap(), "show"]);
    assert!(r.stderr.contains("gzip"), "{}", r.stderr);
}

#[test]
fn simulate_reports_balance_dispersion_and_moves() {
    let v = json(&[
        "simulate",
        "--regions",
        "2",
        "--zones",
        "2",
        "--nodes",
        "4",
        "--devices",
        "2",
        "--part-power",
        "10",
        "--grow",
        "10",
        "--lookups",
        "1000",
    ]);
    assert_eq!(v["first"]["devices"], 32);
    assert_eq!(v["first"]["dispersion"], 0.0);
    assert!(v["first"]["balance"].as_f64().unwrap() < 1.0);
    let grow = &v["grow"];
    let (moved, ideal) = (
        grow["moved"].as_f64().unwrap(),
        grow["ideal_moved"].as_f64().unwrap(),
    );
    assert!(
        moved >= ideal * 0.98 && moved <= ideal * 1.05 + 8.0,
        "moved {moved}, ideal {ideal}"
    );
    assert!(v["lookup_ns"].as_f64().unwrap() > 0.0);
    let saved: PathBuf = tempfile::tempdir().unwrap().keep().join("sim.builder");
    ok(&[
        "simulate",
        "--regions",
        "1",
        "--zones",
        "1",
        "--nodes",
        "3",
        "--devices",
        "1",
        "--part-power",
        "6",
        "--output",
        saved.to_str().unwrap(),
    ]);
    ok(&[saved.to_str().unwrap(), "validate"]);
}

#[test]
fn json_flag_works_anywhere_and_commands_dedupe() {
    let dir = tempfile::tempdir().unwrap();
    let b = builder_in(dir.path());
    small_cluster(&b);
    for args in [
        vec!["--json", b.as_str(), "show"],
        vec![b.as_str(), "--json", "show"],
        vec![b.as_str(), "--json"],
    ] {
        let r = ok(&args);
        let v: Value = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", r.stdout));
        assert_eq!(v["summary"]["devices"], 12, "{args:?}");
    }
    let r = ok(&[&b, "--json", "rebalance"]);
    assert!(
        serde_json::from_str::<Value>(&r.stdout).is_ok(),
        "{}",
        r.stdout
    );
    // Two search values naming the same device remove it once.
    let removed = json(&[&b, "remove", "d1", "r1z1-10.0.1.1:6200/sdb"]);
    assert_eq!(removed["marked_for_removal"], serde_json::json!([1]));
}

#[test]
fn simulate_refuses_topologies_beyond_the_device_limit() {
    let r = run(&[
        "simulate",
        "--regions",
        "65536",
        "--zones",
        "65536",
        "--nodes",
        "1",
        "--devices",
        "1",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("more than a ring holds"), "{}", r.stderr);
}

#[test]
fn show_says_why_a_ring_file_is_unusable() {
    let dir = tempfile::tempdir().unwrap();
    let b = builder_in(dir.path());
    small_cluster(&b);
    ok(&[&b, "rebalance"]);
    let ring = dir.path().join("object.ring");
    let mut bytes = std::fs::read(&ring).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&ring, bytes).unwrap();
    let shown = json(&[&b, "show"]);
    let problem = shown["summary"]["ring_file_problem"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(problem.contains("checksum mismatch"), "{problem}");
}
