//! The clients people use, unchanged, against a real `cairn up`: aws cli, boto3 (current from
//! PyPI and Debian's), s3cmd, rclone and the swift CLI; plus a restart keeping data.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cairn_tests::up::{
    CairnUp, python_with_current_boto3, random_file, run, run_ok, s3cmd, same_file, text, tool,
};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn aws_cli_buckets_objects_and_a_100_mib_multipart_upload() {
    let up = CairnUp::start();
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("big.bin");
    random_file(&big, 100 * 1024 * 1024);
    run_ok(
        &mut up.aws(&["s3", "mb", "s3://aws-cli-bucket"]),
        CLIENT_TIMEOUT,
    );
    run_ok(
        &mut up.aws(&[
            "s3",
            "cp",
            big.to_str().unwrap(),
            "s3://aws-cli-bucket/dir/big.bin",
            "--only-show-errors",
        ]),
        CLIENT_TIMEOUT,
    );
    let head = run_ok(
        &mut up.aws(&[
            "s3api",
            "head-object",
            "--bucket",
            "aws-cli-bucket",
            "--key",
            "dir/big.bin",
        ]),
        CLIENT_TIMEOUT,
    );
    let head: serde_json::Value = serde_json::from_slice(&head.stdout).unwrap();
    assert_eq!(head["ContentLength"], 100 * 1024 * 1024);
    let etag = head["ETag"].as_str().unwrap();
    assert!(
        etag.contains('-'),
        "a 100 MiB aws s3 cp is a multipart upload: ETag {etag}"
    );
    let back = work.path().join("back.bin");
    run_ok(
        &mut up.aws(&[
            "s3",
            "cp",
            "s3://aws-cli-bucket/dir/big.bin",
            back.to_str().unwrap(),
            "--only-show-errors",
        ]),
        CLIENT_TIMEOUT,
    );
    same_file(&big, &back);
    let ranged = work.path().join("ranged.bin");
    run_ok(
        &mut up.aws(&[
            "s3api",
            "get-object",
            "--bucket",
            "aws-cli-bucket",
            "--key",
            "dir/big.bin",
            "--range",
            "bytes=8388600-8388620",
            ranged.to_str().unwrap(),
        ]),
        CLIENT_TIMEOUT,
    );
    assert_eq!(
        fs::read(&ranged).unwrap(),
        fs::read(&big).unwrap()[8_388_600..8_388_621]
    );
    let ls = run_ok(
        &mut up.aws(&["s3", "ls", "s3://aws-cli-bucket", "--recursive"]),
        CLIENT_TIMEOUT,
    );
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains("104857600 dir/big.bin"),
        "{}",
        text(&ls)
    );
    let rb = run(
        &mut up.aws(&["s3", "rb", "s3://aws-cli-bucket"]),
        CLIENT_TIMEOUT,
    );
    assert!(
        String::from_utf8_lossy(&rb.stderr).contains("BucketNotEmpty"),
        "{}",
        text(&rb)
    );
    run_ok(
        &mut up.aws(&["s3", "rm", "s3://aws-cli-bucket/dir/big.bin"]),
        CLIENT_TIMEOUT,
    );
    run_ok(
        &mut up.aws(&["s3", "rb", "s3://aws-cli-bucket"]),
        CLIENT_TIMEOUT,
    );
}

/// `list_keys`: keys in the paginated-listing check (the issue asks for 2,500 once).
/// `up_flags`: extra `cairn up` flags.
fn boto3_suite(python: &Path, list_keys: usize, up_flags: &[&str]) {
    let up = CairnUp::start_with(up_flags);
    let other = up.other_tenant("tenant-b");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/s3_boto3.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .arg(up.endpoints_path())
        .arg(&other)
        .env("LIST_KEYS", list_keys.to_string())
        .env_remove("AWS_CA_BUNDLE");
    let out = run(&mut cmd, Duration::from_secs(900));
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("ALL BOTO3 CHECKS PASSED"),
        "boto3 suite failed:\n{}\n--- cairn up log (end)\n{}",
        text(&out),
        up.log_tail(60)
    );
}

#[test]
fn boto3_current_from_pypi() {
    boto3_suite(&python_with_current_boto3(), 2500, &[]);
}

/// Over HTTPS a current botocore sends every upload as `aws-chunked` with an unsigned payload
/// and its checksum in a trailer (its default since 1.36; over plain HTTP it signs the
/// payload instead).
#[test]
fn boto3_current_over_https() {
    boto3_suite(&python_with_current_boto3(), 300, &["--https"]);
}

#[test]
fn boto3_from_debian() {
    boto3_suite(Path::new("/usr/bin/python3"), 300, &[]);
}

#[test]
fn s3cmd_and_rclone_sync_and_check() {
    let up = CairnUp::start();
    let work = tempfile::tempdir().unwrap();
    let cfg = up.s3cmd_config(work.path());
    let s3cmd = |args: &[&str]| s3cmd(&cfg, args);
    let src = work.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    for (name, size) in [("a", 1000), ("b", 300_000), ("sub/c", 12_000_000)] {
        random_file(&src.join(name), size);
    }
    run_ok(&mut s3cmd(&["mb", "s3://s3cmd-bucket"]), CLIENT_TIMEOUT);
    run_ok(
        &mut s3cmd(&[
            "put",
            "--multipart-chunk-size-mb=5",
            src.join("sub/c").to_str().unwrap(),
            "s3://s3cmd-bucket/c",
        ]),
        CLIENT_TIMEOUT,
    );
    let got = work.path().join("c.back");
    run_ok(
        &mut s3cmd(&["get", "s3://s3cmd-bucket/c", got.to_str().unwrap()]),
        CLIENT_TIMEOUT,
    );
    same_file(&src.join("sub/c"), &got);
    let ls = run_ok(&mut s3cmd(&["ls", "s3://s3cmd-bucket"]), CLIENT_TIMEOUT);
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains("s3://s3cmd-bucket/c"),
        "{}",
        text(&ls)
    );
    run_ok(&mut s3cmd(&["del", "s3://s3cmd-bucket/c"]), CLIENT_TIMEOUT);
    run_ok(&mut s3cmd(&["rb", "s3://s3cmd-bucket"]), CLIENT_TIMEOUT);

    let rclone = |args: &[&str]| up.rclone(args);
    let src_s = src.to_str().unwrap();
    run_ok(
        &mut rclone(&["mkdir", "cairn:rclone-bucket"]),
        CLIENT_TIMEOUT,
    );
    run_ok(
        &mut rclone(&[
            "sync",
            src_s,
            "cairn:rclone-bucket/data",
            "--s3-upload-cutoff",
            "5M",
            "--s3-chunk-size",
            "5M",
        ]),
        CLIENT_TIMEOUT,
    );
    run_ok(
        &mut rclone(&["check", src_s, "cairn:rclone-bucket/data"]),
        CLIENT_TIMEOUT,
    );
    fs::remove_file(src.join("a")).unwrap();
    fs::write(src.join("new"), b"new file").unwrap();
    run_ok(
        &mut rclone(&["sync", src_s, "cairn:rclone-bucket/data"]),
        CLIENT_TIMEOUT,
    );
    run_ok(
        &mut rclone(&["check", src_s, "cairn:rclone-bucket/data"]),
        CLIENT_TIMEOUT,
    );
    let ls = run_ok(
        &mut rclone(&["lsf", "-R", "cairn:rclone-bucket/data"]),
        CLIENT_TIMEOUT,
    );
    let listed = String::from_utf8_lossy(&ls.stdout).to_string();
    assert!(
        !listed.lines().any(|l| l == "a") && listed.contains("new"),
        "{listed}"
    );
}

#[test]
fn swift_cli_upload_slo_download_list_stat_post_tempurl() {
    let up = CairnUp::start();
    let work = tempfile::tempdir().unwrap();
    let swift = |args: &[&str]| up.swift_cli(work.path(), args);
    random_file(&work.path().join("small"), 200_000);
    random_file(&work.path().join("large"), 3_500_000);
    run_ok(&mut swift(&["upload", "cont", "small"]), CLIENT_TIMEOUT);
    run_ok(
        &mut swift(&[
            "upload",
            "--use-slo",
            "--segment-size",
            "1000000",
            "cont",
            "large",
        ]),
        CLIENT_TIMEOUT,
    );
    run_ok(
        &mut swift(&[
            "upload",
            "--segment-size",
            "1000000",
            "cont",
            "large",
            "--object-name",
            "dlo",
        ]),
        CLIENT_TIMEOUT,
    );
    let stat = run_ok(&mut swift(&["stat", "cont", "large"]), CLIENT_TIMEOUT);
    let stat = String::from_utf8_lossy(&stat.stdout).to_string();
    assert!(stat.contains("Content Length: 3500000"), "{stat}");
    for (obj, local) in [("small", "small"), ("large", "large"), ("dlo", "large")] {
        let out = work.path().join(format!("{obj}.back"));
        run_ok(
            &mut swift(&["download", "cont", obj, "-o", out.to_str().unwrap()]),
            CLIENT_TIMEOUT,
        );
        same_file(&work.path().join(local), &out);
    }
    let list = run_ok(&mut swift(&["list"]), CLIENT_TIMEOUT);
    let list = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        list.lines().any(|l| l == "cont") && list.contains("cont_segments"),
        "{list}"
    );
    let list = run_ok(&mut swift(&["list", "cont"]), CLIENT_TIMEOUT);
    assert_eq!(String::from_utf8_lossy(&list.stdout), "dlo\nlarge\nsmall\n");
    run_ok(
        &mut swift(&["post", "-m", "color:blue", "cont", "small"]),
        CLIENT_TIMEOUT,
    );
    let stat = run_ok(&mut swift(&["stat", "cont", "small"]), CLIENT_TIMEOUT);
    assert!(
        String::from_utf8_lossy(&stat.stdout).contains("Meta Color: blue"),
        "{}",
        text(&stat)
    );
    run_ok(
        &mut swift(&["post", "-m", "team:storage", "cont"]),
        CLIENT_TIMEOUT,
    );
    let stat = run_ok(&mut swift(&["stat", "cont"]), CLIENT_TIMEOUT);
    let stat = String::from_utf8_lossy(&stat.stdout).to_string();
    assert!(
        stat.contains("Meta Team: storage") && stat.contains("Objects: 3"),
        "{stat}"
    );

    // TempURL: an account key, a signed GET URL for anyone, refused once altered.
    run_ok(
        &mut swift(&["post", "-m", "Temp-URL-Key:tempsecret"]),
        CLIENT_TIMEOUT,
    );
    let auth = run_ok(&mut swift(&["auth"]), CLIENT_TIMEOUT);
    let auth = String::from_utf8_lossy(&auth.stdout).to_string();
    let storage_url = auth
        .lines()
        .find_map(|l| l.strip_prefix("export OS_STORAGE_URL="))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let path = format!(
        "{}/cont/small",
        storage_url
            .split_once("/v1/")
            .map(|(_, p)| format!("/v1/{p}"))
            .unwrap()
    );
    for digest in ["sha1", "sha256"] {
        let signed = run_ok(
            &mut swift(&[
                "tempurl",
                "--digest",
                digest,
                "GET",
                "600",
                &path,
                "tempsecret",
            ]),
            CLIENT_TIMEOUT,
        );
        let signed = String::from_utf8_lossy(&signed.stdout).trim().to_string();
        let base = storage_url.split_once("/v1/").unwrap().0;
        let url = format!("{base}{signed}");
        let got = work.path().join(format!("tempurl-{digest}"));
        run_ok(
            Command::new(tool("curl")).args(["-sf", "-o", got.to_str().unwrap(), &url]),
            CLIENT_TIMEOUT,
        );
        same_file(&work.path().join("small"), &got);
        let bad = url.replace("temp_url_expires=", "temp_url_expires=1");
        let code = run_ok(
            Command::new(tool("curl")).args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &bad]),
            CLIENT_TIMEOUT,
        );
        assert_eq!(String::from_utf8_lossy(&code.stdout), "401");
    }
    // X-Delete-After: hidden once due, then reclaimed by the expirer (1 s passes here).
    run_ok(
        &mut swift(&[
            "upload",
            "-H",
            "X-Delete-After: 8",
            "--object-name",
            "ephemeral",
            "cont",
            "small",
        ]),
        CLIENT_TIMEOUT,
    );
    let stat = run_ok(&mut swift(&["stat", "cont", "ephemeral"]), CLIENT_TIMEOUT);
    assert!(
        String::from_utf8_lossy(&stat.stdout).contains("200000"),
        "{}",
        text(&stat)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let list = run_ok(&mut swift(&["list", "cont"]), CLIENT_TIMEOUT);
        let gone_from_listing = !String::from_utf8_lossy(&list.stdout).contains("ephemeral");
        let head = run(&mut swift(&["stat", "cont", "ephemeral"]), CLIENT_TIMEOUT);
        if gone_from_listing && !head.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expired object still listed 40 s after upload"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    run_ok(&mut swift(&["delete", "cont", "large"]), CLIENT_TIMEOUT);
    let list = run_ok(&mut swift(&["list", "cont_segments"]), CLIENT_TIMEOUT);
    let segs = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        !segs.contains("large/slo"),
        "SLO segments remain after delete: {segs}"
    );
}

#[test]
fn restart_keeps_data_and_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut up = CairnUp::start_in(&dir);
    let first = up.endpoints.clone();
    let work = tempfile::tempdir().unwrap();
    let f = work.path().join("f");
    random_file(&f, 2_000_000);
    run_ok(
        &mut up.aws(&["s3", "mb", "s3://restart-bucket"]),
        CLIENT_TIMEOUT,
    );
    run_ok(
        &mut up.aws(&["s3", "cp", f.to_str().unwrap(), "s3://restart-bucket/f"]),
        CLIENT_TIMEOUT,
    );
    up.stop();
    let up = CairnUp::start_in(&dir);
    assert_eq!(up.endpoints["s3"]["access_key"], first["s3"]["access_key"]);
    assert_eq!(up.endpoints["swift"]["key"], first["swift"]["key"]);
    let back = work.path().join("back");
    run_ok(
        &mut up.aws(&["s3", "cp", "s3://restart-bucket/f", back.to_str().unwrap()]),
        CLIENT_TIMEOUT,
    );
    same_file(&f, &back);
}

#[test]
fn swift_tenancy_acls_and_refusals() {
    let up = CairnUp::start();
    up.other_tenant("tenant-b");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/swift_acl.py");
    let out = run(
        Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(up.endpoints_path())
            .args(["tenant-b", "tenant-b", "tenant-pass-123"]),
        CLIENT_TIMEOUT,
    );
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("ALL SWIFT ACL CHECKS PASSED"),
        "swift ACL checks failed:\n{}\n--- cairn up log (end)\n{}",
        text(&out),
        up.log_tail(40)
    );
}
