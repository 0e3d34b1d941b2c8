//! `cairn up` as a test fixture: a real all-in-one process on a free port, its endpoints, and
//! helpers to run real clients (aws, boto3, s3cmd, rclone, swift) against it.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cairn_bin;

/// A running `cairn up`; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct CairnUp {
    pub dir: PathBuf,
    pub endpoints: Value,
    child: Option<Child>,
    log: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl CairnUp {
    /// Starts a fresh cluster in a temporary directory.
    pub fn start() -> CairnUp {
        CairnUp::start_with(&[])
    }

    /// Starts a fresh cluster with extra `cairn up` flags (e.g. `--https`).
    pub fn start_with(extra: &[&str]) -> CairnUp {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut up = CairnUp::start_in_with(&dir, extra);
        up._tmp = Some(tmp);
        up
    }

    /// Starts (or restarts) the cluster kept in `dir`.
    pub fn start_in(dir: &Path) -> CairnUp {
        CairnUp::start_in_with(dir, &[])
    }

    fn start_in_with(dir: &Path, extra: &[&str]) -> CairnUp {
        fs::create_dir_all(dir).unwrap();
        // One loopback address per cluster (kept across restarts): clusters of parallel tests
        // never race for the same ports.
        let host_file = dir.with_extension("host");
        let host = fs::read_to_string(&host_file).unwrap_or_else(|_| {
            use rand::Rng;
            let mut rng = rand::thread_rng();
            let h = format!(
                "127.{}.{}.{}",
                rng.gen_range(1..=254),
                rng.gen_range(1..=254),
                rng.gen_range(1..=254)
            );
            fs::write(&host_file, &h).unwrap();
            h
        });
        let log = dir.with_extension("log");
        let logf = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let start_len = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let child = Command::new(cairn_bin())
            .args([
                "up",
                "--s3-port",
                "0",
                "--expirer-interval-s",
                "1",
                "--nbd-port",
                "0",
                "--host",
                &host,
                "--data-dir",
            ])
            .arg(dir)
            .args(extra)
            .env(
                "CAIRN_LOG",
                std::env::var("CAIRN_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .unwrap();
        let mut up = CairnUp {
            dir: dir.to_path_buf(),
            endpoints: Value::Null,
            child: Some(child),
            log,
            _tmp: None,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut text = String::new();
            if let Ok(mut f) = fs::File::open(&up.log) {
                let _ = f.read_to_string(&mut text);
            }
            let fresh = text
                .get(usize::try_from(start_len).unwrap()..)
                .unwrap_or("");
            if fresh.contains("cairn-up ready") {
                break;
            }
            if let Some(status) = up.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("cairn up exited with {status}:\n{fresh}");
            }
            assert!(
                Instant::now() < deadline,
                "cairn up not ready in 60 s:\n{fresh}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let text = fs::read_to_string(dir.join("endpoints.json")).unwrap();
        up.endpoints = serde_json::from_str(&text).unwrap();
        up
    }

    /// The end of the cluster's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn endpoints_path(&self) -> PathBuf {
        self.dir.join("endpoints.json")
    }

    pub fn s3(&self, key: &str) -> String {
        self.endpoints["s3"][key].as_str().unwrap().to_string()
    }

    pub fn swift(&self, key: &str) -> String {
        self.endpoints["swift"][key].as_str().unwrap().to_string()
    }

    /// The NBD URL of export `name` (an image, or `image@snapshot`).
    pub fn nbd(&self, name: &str) -> String {
        format!("{}/{name}", self.endpoints["nbd"].as_str().unwrap())
    }

    /// Kills the process with SIGKILL (a crash) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process cleanly (as Ctrl-C would) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!("cairn up did not stop within 20 s of SIGTERM");
        }
    }

    /// A `cairn` admin command against this cluster (`cairn project|user|key ...`).
    pub fn admin(&self, args: &[&str]) -> Value {
        let out = Command::new(cairn_bin())
            .args(args)
            .arg("--endpoints")
            .arg(self.endpoints_path())
            .output()
            .unwrap();
        assert!(out.status.success(), "cairn {args:?}: {}", text(&out));
        // Several JSON documents may follow each other; the last is the interesting one.
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let mut last = Value::Null;
        for v in serde_json::Deserializer::from_str(&stdout).into_iter::<Value>() {
            last = v.unwrap();
        }
        last
    }

    /// Creates a second project with a member user and an S3 key; returns the key file.
    pub fn other_tenant(&self, name: &str) -> PathBuf {
        self.admin(&["project", "create", name]);
        self.admin(&[
            "user",
            "create",
            name,
            "--password",
            "tenant-pass-123",
            "--project",
            name,
        ]);
        let key = self.admin(&["key", "create", name, "--project", name]);
        let path = self.dir.join(format!("{name}-key.json"));
        fs::write(&path, key.to_string()).unwrap();
        path
    }

    /// Environment for S3 CLI clients (aws, rclone) with the admin's key.
    pub fn s3_env(&self, cmd: &mut Command) {
        cmd.env("AWS_ACCESS_KEY_ID", self.s3("access_key"))
            .env("AWS_SECRET_ACCESS_KEY", self.s3("secret_key"))
            .env("AWS_DEFAULT_REGION", self.s3("region"))
            .env_remove("AWS_CA_BUNDLE")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    }
}

impl Drop for CairnUp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a command to completion (bounded by `timeout`), asserting success.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Output {
    let out = run(cmd, timeout);
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    out
}

/// Runs a command to completion, killing it after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
    }
}

/// The Python with a current boto3 from PyPI (`scripts/packages.sh` makes it), else the
/// system's.
pub fn python_with_current_boto3() -> PathBuf {
    if let Ok(p) = std::env::var("CAIRN_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let venv = Path::new(&home).join(".cache/cairn-venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// A tool the test command installs; a missing one fails the test with the fix.
pub fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: run scripts/packages.sh (the README's test command does)");
}

/// Writes `bytes` random bytes to `path`.
pub fn random_file(path: &Path, bytes: usize) {
    use rand::RngCore;
    let mut data = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut data);
    fs::write(path, data).unwrap();
}

/// Asserts that two files hold the same bytes.
pub fn same_file(a: &Path, b: &Path) {
    let (x, y) = (fs::read(a).unwrap(), fs::read(b).unwrap());
    assert!(
        x == y,
        "{} ({} bytes) and {} ({} bytes) differ",
        a.display(),
        x.len(),
        b.display(),
        y.len()
    );
}

/// s3cmd with a config written by [`CairnUp::s3cmd_config`].
pub fn s3cmd(cfg: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(tool("s3cmd"));
    c.arg("-c").arg(cfg).args(args);
    c
}

impl CairnUp {
    /// The aws CLI against this cluster's S3 endpoint, with its credentials.
    pub fn aws(&self, args: &[&str]) -> Command {
        let mut c = Command::new(tool("aws"));
        self.s3_env(&mut c);
        c.arg("--endpoint-url").arg(self.s3("endpoint")).args(args);
        c
    }

    /// The swift CLI, run in `dir`, with this cluster's v1 credentials.
    pub fn swift_cli(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(tool("swift"));
        c.current_dir(dir)
            .env("ST_AUTH", self.swift("auth_url"))
            .env("ST_USER", self.swift("user"))
            .env("ST_KEY", self.swift("key"))
            .args(args);
        c
    }

    /// Writes an s3cmd config for this cluster (path-style, SigV4) to `dir/s3cfg`.
    pub fn s3cmd_config(&self, dir: &Path) -> PathBuf {
        let host = self
            .s3("endpoint")
            .trim_start_matches("http://")
            .to_string();
        let cfg = dir.join("s3cfg");
        fs::write(
            &cfg,
            format!(
                "[default]\naccess_key = {}\nsecret_key = {}\nhost_base = {host}\nhost_bucket = {host}\nuse_https = False\nsignature_v2 = False\nbucket_location = {}\n",
                self.s3("access_key"),
                self.s3("secret_key"),
                self.s3("region")
            ),
        )
        .unwrap();
        cfg
    }

    /// rclone with a remote `cairn:` for this cluster, configured from the environment.
    pub fn rclone(&self, args: &[&str]) -> Command {
        let mut c = Command::new(tool("rclone"));
        self.s3_env(&mut c);
        c.env("RCLONE_CONFIG", "/dev/null")
            .env("RCLONE_CONFIG_CAIRN_TYPE", "s3")
            .env("RCLONE_CONFIG_CAIRN_PROVIDER", "Other")
            .env("RCLONE_CONFIG_CAIRN_ENDPOINT", self.s3("endpoint"))
            .env("RCLONE_CONFIG_CAIRN_ACCESS_KEY_ID", self.s3("access_key"))
            .env(
                "RCLONE_CONFIG_CAIRN_SECRET_ACCESS_KEY",
                self.s3("secret_key"),
            )
            .env("RCLONE_CONFIG_CAIRN_REGION", self.s3("region"))
            .env("RCLONE_CONFIG_CAIRN_FORCE_PATH_STYLE", "true")
            .args(args);
        c
    }
}
