//! A real QEMU guest (TCG, no KVM) boots through the BIOS from a clone of a Cairn image served
//! over NBD, writes a file and powers off; the file is then in the clone and nowhere else.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::up::{CairnUp, run, run_ok, text};

const T: Duration = Duration::from_secs(300);
/// The boot takes seconds under TCG here; the bound is for slow, loaded machines.
const BOOT_LIMIT: Duration = Duration::from_secs(240);

/// `scripts/guest-image.sh` into a cache shared by runs: the guest disk, built once.
fn guest_image() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/guest-image.sh");
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let out_dir = Path::new(&home).join(".cache/cairn-guest/image");
    // Up to a download of the kernel package (~70 MB) on a cold cache.
    let out = run_ok(Command::new("bash").arg(&script).arg(&out_dir), T);
    let image = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(image, out_dir.join("guest.raw"), "{}", text(&out));
    image
}

/// `cairn image ...` against the cluster, asserting success.
fn cairn(up: &CairnUp, args: &[&str], files: &[&Path]) {
    let out = run(
        Command::new(cairn_tests::cairn_bin())
            .args(args)
            .args(files)
            .arg("--endpoints")
            .arg(up.endpoints_path()),
        T,
    );
    assert!(
        out.status.success(),
        "cairn {args:?} {files:?}: {}\n{}",
        text(&out),
        up.log_tail(30)
    );
}

fn mtools(tool: &str, image: &Path, args: &[&str]) -> std::process::Output {
    run(
        Command::new(tool)
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(image)
            .args(args),
        T,
    )
}

/// The content of `name` in the FAT filesystem of a raw disk image, if it is there.
fn fat_file(image: &Path, name: &str) -> Option<String> {
    let out = mtools("mtype", image, &[&format!("::/{name}")]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

/// Boots the guest from `url` (BIOS, virtio-blk, nothing else attached); returns the serial
/// log, the time it took, and whether QEMU exited by itself with success.
fn boot(url: &str, serial: &Path) -> (String, Duration, bool) {
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "256",
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
            "-monitor",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-drive")
        .arg(format!("file={url},format=raw,if=virtio"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 (scripts/packages.sh installs qemu-system-x86)");
    let deadline = started + BOOT_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // Only this child, by its PID.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let elapsed = started.elapsed();
    let mut log = fs::read_to_string(serial).unwrap_or_default();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    match status {
        Some(s) if s.success() => {}
        Some(s) => log += &format!("\n--- qemu exited with {s}; stderr:\n{stderr}"),
        None => log += &format!("\n--- qemu killed after {BOOT_LIMIT:?}; stderr:\n{stderr}"),
    }
    (log, elapsed, status.is_some_and(|s| s.success()))
}

#[test]
fn qemu_guest_boots_from_a_clone_over_nbd_and_writes_into_it() {
    let test_started = Instant::now();
    let up = CairnUp::start();
    let tmp = tempfile::tempdir().unwrap();

    // The base image: the cached guest disk plus a token only this run knows.
    let base_raw = tmp.path().join("base.raw");
    fs::copy(guest_image(), &base_raw).unwrap();
    let token = format!("cairn-{:016x}", rand::random::<u64>());
    let token_file = tmp.path().join("token.txt");
    fs::write(&token_file, &token).unwrap();
    let out = mtools(
        "mcopy",
        &base_raw,
        &[token_file.to_str().unwrap(), "::/token.txt"],
    );
    assert!(out.status.success(), "mcopy: {}", text(&out));
    assert_eq!(fat_file(&base_raw, "hello.txt"), None);

    cairn(&up, &["image", "import"], &[&base_raw, Path::new("base")]);
    up.admin(&["image", "snap", "create", "base@gold"]);
    up.admin(&["image", "snap", "protect", "base@gold"]);
    up.admin(&["image", "clone", "base@gold", "vm"]);

    let serial = tmp.path().join("serial.log");
    let (log, boot_time, exited) = boot(&up.nbd("vm"), &serial);
    let marker = format!("CAIRN-GUEST-DONE {token}");
    assert!(
        exited && log.lines().any(|l| l.trim_end() == marker),
        "the guest did not finish (no {marker:?} on its console) in {boot_time:?}:\n{log}\n\
         --- cairn up log:\n{}",
        up.log_tail(40)
    );
    eprintln!("guest boot under TCG, power-on to power-off: {boot_time:?}");

    // The file the guest wrote is in the clone...
    let vm_raw = tmp.path().join("vm.raw");
    cairn(&up, &["image", "export", "vm"], &[&vm_raw]);
    assert_eq!(
        fat_file(&vm_raw, "hello.txt").as_deref(),
        Some(format!("hello from the guest: {token}\n").as_str()),
        "serial log:\n{log}"
    );
    // ...which holds only what the guest changed, not a copy of the parent.
    let info = up.admin(&["image", "info", "vm"]);
    let allocated = info["allocated_bytes"].as_u64().unwrap();
    assert!(allocated > 0 && allocated < 4 << 20, "{info}");
    eprintln!("the clone holds {allocated} bytes of its own");

    // Copy-on-write: the parent snapshot and the base image are what was imported.
    let original = fs::read(&base_raw).unwrap();
    for name in ["base@gold", "base"] {
        let raw = tmp.path().join(format!("{}.raw", name.replace('@', "-")));
        cairn(&up, &["image", "export", name], &[&raw]);
        assert_eq!(fat_file(&raw, "hello.txt"), None, "{name} has the file");
        assert_eq!(fat_file(&raw, "token.txt"), Some(token.clone()), "{name}");
        assert!(fs::read(&raw).unwrap() == original, "{name} changed");
    }
    eprintln!("whole test: {:?}", test_started.elapsed());
}
