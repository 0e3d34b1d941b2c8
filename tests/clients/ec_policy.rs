//! Storage policies through the clients people use, against a real `cairn up` (policies
//! `replicated`, the default, and `ec42`, Reed-Solomon 4+2 over six devices): choosing a
//! policy when a bucket or container is created, seeing it, refusals, and object I/O in
//! erasure-coded buckets and containers (aws cli, boto3, s3cmd, rclone, swift CLI).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cairn_tests::up::{
    CairnUp, python_with_current_boto3, random_file, run, run_ok, s3cmd, same_file, text, tool,
};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);
const MIB: usize = 1024 * 1024;
/// Object sizes around the EC policy's 1 MiB segment.
const SIZES: [usize; 6] = [0, 1, MIB - 1, MIB + 1, 2 * MIB, 9 * MIB + 4321];

/// A container's (bucket's) policy as `swift stat` shows it.
fn policy_of(up: &CairnUp, dir: &Path, container: &str) -> String {
    let out = run_ok(&mut up.swift_cli(dir, &["stat", container]), CLIENT_TIMEOUT);
    let stat = String::from_utf8_lossy(&out.stdout).to_string();
    stat.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("X-Storage-Policy")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("swift stat {container} shows no policy:\n{stat}"))
}

/// `(token, storage url)` of the admin's Swift account.
fn swift_auth(up: &CairnUp, dir: &Path) -> (String, String) {
    let out = run_ok(&mut up.swift_cli(dir, &["auth"]), CLIENT_TIMEOUT);
    let auth = String::from_utf8_lossy(&out.stdout).to_string();
    let find = |k: &str| {
        auth.lines()
            .find_map(|l| l.strip_prefix(&format!("export {k}=")))
            .unwrap()
            .trim_matches('"')
            .to_string()
    };
    (find("OS_AUTH_TOKEN"), find("OS_STORAGE_URL"))
}

/// curl: `(status, body)`.
fn curl(args: &[&str]) -> (u16, String) {
    let out = run_ok(
        Command::new(tool("curl"))
            .args(["-s", "-w", "\n%{http_code}"])
            .args(args),
        CLIENT_TIMEOUT,
    );
    let all = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = all.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[test]
fn boto3_policy_choice_ec_objects_and_multipart() {
    let up = CairnUp::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/ec_policy_boto3.py");
    let mut cmd = Command::new(python_with_current_boto3());
    cmd.arg(&script)
        .arg(up.endpoints_path())
        .env_remove("AWS_CA_BUNDLE");
    let out = run(&mut cmd, Duration::from_secs(900));
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("ALL EC POLICY BOTO3 CHECKS PASSED"),
        "boto3 EC policy checks failed:\n{}\n--- cairn up log (end)\n{}",
        text(&out),
        up.log_tail(60)
    );
}

#[test]
fn aws_cli_on_an_ec_bucket() {
    let up = CairnUp::start();
    let work = tempfile::tempdir().unwrap();
    let bad = run(
        &mut up.aws(&[
            "s3api",
            "create-bucket",
            "--bucket",
            "aws-bad",
            "--create-bucket-configuration",
            "LocationConstraint=mars-1",
        ]),
        CLIENT_TIMEOUT,
    );
    assert!(
        !bad.status.success()
            && String::from_utf8_lossy(&bad.stderr).contains("InvalidLocationConstraint"),
        "{}",
        text(&bad)
    );
    run_ok(
        &mut up.aws(&[
            "s3api",
            "create-bucket",
            "--bucket",
            "aws-ec",
            "--create-bucket-configuration",
            "LocationConstraint=ec42",
        ]),
        CLIENT_TIMEOUT,
    );
    run_ok(&mut up.aws(&["s3", "mb", "s3://aws-plain"]), CLIENT_TIMEOUT);
    assert_eq!(policy_of(&up, work.path(), "aws-ec"), "ec42");
    assert_eq!(policy_of(&up, work.path(), "aws-plain"), "replicated");
    let loc = run_ok(
        &mut up.aws(&["s3api", "get-bucket-location", "--bucket", "aws-ec"]),
        CLIENT_TIMEOUT,
    );
    let loc: serde_json::Value = serde_json::from_slice(&loc.stdout).unwrap();
    assert!(
        loc["LocationConstraint"].is_null() || loc["LocationConstraint"] == up.s3("region"),
        "{loc}"
    );

    for size in SIZES {
        let name = format!("f{size}");
        let src = work.path().join(&name);
        random_file(&src, size);
        let key = format!("s3://aws-ec/dir/{name}");
        run_ok(
            &mut up.aws(&[
                "s3",
                "cp",
                src.to_str().unwrap(),
                &key,
                "--only-show-errors",
            ]),
            CLIENT_TIMEOUT,
        );
        let head = run_ok(
            &mut up.aws(&[
                "s3api",
                "head-object",
                "--bucket",
                "aws-ec",
                "--key",
                &format!("dir/{name}"),
            ]),
            CLIENT_TIMEOUT,
        );
        let head: serde_json::Value = serde_json::from_slice(&head.stdout).unwrap();
        assert_eq!(head["ContentLength"], size, "{head}");
        let back = work.path().join(format!("{name}.back"));
        run_ok(
            &mut up.aws(&[
                "s3",
                "cp",
                &key,
                back.to_str().unwrap(),
                "--only-show-errors",
            ]),
            CLIENT_TIMEOUT,
        );
        same_file(&src, &back);
        if size > 10 {
            // Across the first segment boundary when the object has one.
            let (a, b) = (size / 2 - 5, (size / 2 + MIB).min(size - 1));
            let ranged = work.path().join(format!("{name}.range"));
            run_ok(
                &mut up.aws(&[
                    "s3api",
                    "get-object",
                    "--bucket",
                    "aws-ec",
                    "--key",
                    &format!("dir/{name}"),
                    "--range",
                    &format!("bytes={a}-{b}"),
                    ranged.to_str().unwrap(),
                ]),
                CLIENT_TIMEOUT,
            );
            assert_eq!(
                fs::read(&ranged).unwrap(),
                fs::read(&src).unwrap()[a..=b],
                "range {a}-{b} of {size} bytes"
            );
        }
    }
    let ls = run_ok(
        &mut up.aws(&["s3", "ls", "s3://aws-ec", "--recursive"]),
        CLIENT_TIMEOUT,
    );
    let listed = String::from_utf8_lossy(&ls.stdout).to_string();
    for size in SIZES {
        assert!(
            listed.contains(&format!("{size} dir/f{size}")),
            "{size}: {listed}"
        );
    }
    run_ok(
        &mut up.aws(&["s3", "rm", "s3://aws-ec", "--recursive"]),
        CLIENT_TIMEOUT,
    );
    let ls = run_ok(
        &mut up.aws(&["s3", "ls", "s3://aws-ec", "--recursive"]),
        CLIENT_TIMEOUT,
    );
    assert!(ls.stdout.is_empty(), "{}", text(&ls));
    run_ok(&mut up.aws(&["s3", "rb", "s3://aws-ec"]), CLIENT_TIMEOUT);
}

#[test]
fn s3cmd_and_rclone_on_ec_buckets() {
    let up = CairnUp::start();
    let work = tempfile::tempdir().unwrap();
    let cfg = up.s3cmd_config(work.path());
    let s3cmd = |args: &[&str]| s3cmd(&cfg, args);
    let src = work.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    for size in SIZES {
        random_file(&src.join(format!("f{size}")), size);
    }
    random_file(&src.join("sub/big"), 12 * MIB + 1);
    // s3cmd signs with --bucket-location as the region, so the header names the policy.
    run_ok(
        &mut s3cmd(&[
            "mb",
            "--add-header=x-cairn-storage-policy:ec42",
            "s3://s3cmd-ec",
        ]),
        CLIENT_TIMEOUT,
    );
    assert_eq!(policy_of(&up, work.path(), "s3cmd-ec"), "ec42");
    for name in ["f0", "f1", "f1048577", "sub/big"] {
        run_ok(
            &mut s3cmd(&[
                "put",
                "--multipart-chunk-size-mb=5",
                src.join(name).to_str().unwrap(),
                &format!("s3://s3cmd-ec/{name}"),
            ]),
            CLIENT_TIMEOUT,
        );
        let got = work.path().join(name.replace('/', "_") + ".back");
        run_ok(
            &mut s3cmd(&[
                "get",
                &format!("s3://s3cmd-ec/{name}"),
                got.to_str().unwrap(),
            ]),
            CLIENT_TIMEOUT,
        );
        same_file(&src.join(name), &got);
    }
    // The 12 MiB put was multipart: its parts went to the bucket's segments container.
    assert_eq!(policy_of(&up, work.path(), "s3cmd-ec+segments"), "ec42");
    let ls = run_ok(&mut s3cmd(&["ls", "s3://s3cmd-ec/sub/"]), CLIENT_TIMEOUT);
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains("s3://s3cmd-ec/sub/big"),
        "{}",
        text(&ls)
    );

    let rclone = |args: &[&str]| up.rclone(args);
    run_ok(
        &mut up.aws(&[
            "s3api",
            "create-bucket",
            "--bucket",
            "rclone-ec",
            "--create-bucket-configuration",
            "LocationConstraint=ec42",
        ]),
        CLIENT_TIMEOUT,
    );
    let src_s = src.to_str().unwrap();
    run_ok(
        &mut rclone(&[
            "copy",
            src_s,
            "cairn:rclone-ec/data",
            "--s3-upload-cutoff",
            "5M",
            "--s3-chunk-size",
            "5M",
        ]),
        CLIENT_TIMEOUT,
    );
    run_ok(
        &mut rclone(&["check", src_s, "cairn:rclone-ec/data"]),
        CLIENT_TIMEOUT,
    );
    // `check --download` compares the bytes, not only sizes and hashes.
    run_ok(
        &mut rclone(&["check", "--download", src_s, "cairn:rclone-ec/data"]),
        CLIENT_TIMEOUT,
    );
    assert_eq!(policy_of(&up, work.path(), "rclone-ec"), "ec42");
}

#[test]
fn swift_cli_on_an_ec_container() {
    let up = CairnUp::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let swift = |args: &[&str]| up.swift_cli(dir, args);

    // /info lists the policies, only the default one marked.
    let info_url = format!("{}/info", up.s3("endpoint"));
    let (code, body) = curl(&[&info_url]);
    assert_eq!(code, 200, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    let policies = info["swift"]["policies"].as_array().unwrap();
    assert_eq!(
        policies
            .iter()
            .map(|p| p["name"].clone())
            .collect::<Vec<_>>(),
        ["replicated", "ec42"]
    );
    assert_eq!(policies[0]["default"], true);
    assert!(policies[1].get("default").is_none(), "{info}");

    // Creating with a policy (swift post creates a missing container with a PUT).
    run_ok(
        &mut swift(&["post", "-H", "X-Storage-Policy: ec42", "cont"]),
        CLIENT_TIMEOUT,
    );
    run_ok(
        &mut swift(&["post", "-H", "X-Storage-Policy: EC42", "cont_segments"]),
        CLIENT_TIMEOUT,
    );
    let stat = run_ok(&mut swift(&["stat", "cont"]), CLIENT_TIMEOUT);
    assert!(
        String::from_utf8_lossy(&stat.stdout).contains("Policy: ec42"),
        "{}",
        text(&stat)
    );
    assert_eq!(policy_of(&up, dir, "cont_segments"), "ec42");
    run_ok(&mut swift(&["post", "plain"]), CLIENT_TIMEOUT);
    assert_eq!(policy_of(&up, dir, "plain"), "replicated");

    // Refusals: an unknown policy, and another policy for an existing container.
    let bad = run(
        &mut swift(&["post", "-H", "X-Storage-Policy: gold", "nope"]),
        CLIENT_TIMEOUT,
    );
    let err = String::from_utf8_lossy(&bad.stderr).to_string();
    assert!(
        !bad.status.success() && err.contains("400") && err.contains("Invalid X-Storage-Policy"),
        "{}",
        text(&bad)
    );
    let (token, storage_url) = swift_auth(&up, dir);
    let put = |container: &str, policy: Option<&str>| {
        let mut args = vec![
            "-X".to_string(),
            "PUT".into(),
            "-H".into(),
            format!("X-Auth-Token: {token}"),
        ];
        if let Some(p) = policy {
            args.push("-H".into());
            args.push(format!("X-Storage-Policy: {p}"));
        }
        args.push(format!("{storage_url}/{container}"));
        curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (code, body) = put("nope", Some("gold"));
    assert_eq!(
        (code, body.as_str()),
        (400, "Invalid X-Storage-Policy 'gold'")
    );
    assert_eq!(put("cont", Some("replicated")).0, 409);
    assert_eq!(put("plain", Some("ec42")).0, 409);
    assert_eq!(put("cont", Some("ec42")).0, 202);
    assert_eq!(put("cont", None).0, 202);
    assert_eq!(policy_of(&up, dir, "cont"), "ec42");
    assert_eq!(policy_of(&up, dir, "plain"), "replicated");
    let (code, _) = curl(&[
        "-I",
        "-H",
        &format!("X-Auth-Token: {token}"),
        &format!("{storage_url}/nope"),
    ]);
    assert_eq!(code, 404, "a refused PUT created nothing");

    // Objects of every size, and a 9 MiB SLO in 1 MiB segments.
    for size in SIZES {
        let name = format!("f{size}");
        random_file(&dir.join(&name), size);
        run_ok(&mut swift(&["upload", "cont", &name]), CLIENT_TIMEOUT);
    }
    random_file(&dir.join("large"), 9 * MIB + 1);
    run_ok(
        &mut swift(&[
            "upload",
            "--use-slo",
            "--segment-size",
            "1048576",
            "cont",
            "large",
        ]),
        CLIENT_TIMEOUT,
    );
    let stat = run_ok(&mut swift(&["stat", "cont", "large"]), CLIENT_TIMEOUT);
    let stat = String::from_utf8_lossy(&stat.stdout).to_string();
    assert!(
        stat.contains(&format!("Content Length: {}", 9 * MIB + 1)),
        "{stat}"
    );
    let names: Vec<String> = SIZES
        .iter()
        .map(|s| format!("f{s}"))
        .chain(["large".to_string()])
        .collect();
    for name in &names {
        let out = dir.join(format!("{name}.back"));
        run_ok(
            &mut swift(&["download", "cont", name, "-o", out.to_str().unwrap()]),
            CLIENT_TIMEOUT,
        );
        same_file(&dir.join(name), &out);
    }
    let segs = run_ok(&mut swift(&["list", "cont_segments"]), CLIENT_TIMEOUT);
    assert_eq!(
        String::from_utf8_lossy(&segs.stdout)
            .lines()
            .filter(|l| l.starts_with("large/slo/"))
            .count(),
        10,
        "{}",
        text(&segs)
    );
    // A ranged read across segments of the SLO.
    let (a, b) = (MIB - 3, 3 * MIB + 2);
    let ranged = dir.join("large.range");
    let (code, _) = curl(&[
        "-H",
        &format!("X-Auth-Token: {token}"),
        "-H",
        &format!("Range: bytes={a}-{b}"),
        "-o",
        ranged.to_str().unwrap(),
        &format!("{storage_url}/cont/large"),
    ]);
    assert_eq!(code, 206);
    assert_eq!(
        fs::read(&ranged).unwrap(),
        fs::read(dir.join("large")).unwrap()[a..=b]
    );

    // Without a segments container, swift makes one with the upload container's policy.
    run_ok(
        &mut swift(&["post", "-H", "X-Storage-Policy: ec42", "auto"]),
        CLIENT_TIMEOUT,
    );
    run_ok(
        &mut swift(&[
            "upload",
            "--use-slo",
            "--segment-size",
            "2000000",
            "auto",
            "large",
        ]),
        CLIENT_TIMEOUT,
    );
    assert_eq!(policy_of(&up, dir, "auto_segments"), "ec42");
    let out = dir.join("auto.back");
    run_ok(
        &mut swift(&["download", "auto", "large", "-o", out.to_str().unwrap()]),
        CLIENT_TIMEOUT,
    );
    same_file(&dir.join("large"), &out);

    let list = run_ok(&mut swift(&["list", "cont"]), CLIENT_TIMEOUT);
    let mut want = names.clone();
    want.sort();
    assert_eq!(
        String::from_utf8_lossy(&list.stdout)
            .lines()
            .collect::<Vec<_>>(),
        want
    );
    run_ok(&mut swift(&["delete", "cont"]), CLIENT_TIMEOUT);
    let list = run(&mut swift(&["list", "cont_segments"]), CLIENT_TIMEOUT);
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains("large/slo"),
        "SLO segments remain after delete: {}",
        text(&list)
    );
}
