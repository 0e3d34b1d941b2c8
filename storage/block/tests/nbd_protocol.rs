//! NBD server against real clients (qemu-img, qemu-io, nbdinfo, nbdcopy, fio) and a raw
//! socket client for the corners real clients never exercise (errors, garbage frames).
//!
//! The export is an in-memory sparse device: unwritten 4 KiB blocks are real holes, so
//! `base:allocation` and hole replies have something to show.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_block::nbd::proto;
use cairn_block::nbd::{Export, Exports, Extent, IoError, NbdConfig, NbdServer, Span, TlsConfig};

const BLOCK: u64 = 4096;
const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------------
// In-memory sparse export

#[derive(Debug)]
struct MemExport {
    size: u64,
    read_only: bool,
    blocks: Mutex<BTreeMap<u64, Vec<u8>>>,
}

impl MemExport {
    fn new(size: u64, read_only: bool) -> Self {
        Self {
            size,
            read_only,
            blocks: Mutex::new(BTreeMap::new()),
        }
    }

    fn read_sync(&self, offset: u64, len: u64) -> Vec<Span> {
        let blocks = self.blocks.lock().unwrap();
        let mut spans: Vec<Span> = Vec::new();
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let b = at / BLOCK;
            let within = at % BLOCK;
            let n = (BLOCK - within).min(end - at);
            match blocks.get(&b) {
                Some(data) => {
                    let piece = &data[within as usize..(within + n) as usize];
                    match spans.last_mut() {
                        Some(Span::Data(prev)) => {
                            let mut v = prev.to_vec();
                            v.extend_from_slice(piece);
                            *prev = Bytes::from(v);
                        }
                        _ => spans.push(Span::Data(Bytes::copy_from_slice(piece))),
                    }
                }
                None => match spans.last_mut() {
                    Some(Span::Hole(h)) => *h += n,
                    _ => spans.push(Span::Hole(n)),
                },
            }
            at += n;
        }
        spans
    }

    fn bytes(&self, offset: u64, len: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for s in self.read_sync(offset, len) {
            match s {
                Span::Data(b) => out.extend_from_slice(&b),
                Span::Hole(n) => out.resize(out.len() + n as usize, 0),
            }
        }
        out
    }

    /// Writes `data` (or zeros; `punch` drops whole blocks instead of storing zeros).
    fn write_sync(&self, offset: u64, data: Option<&[u8]>, len: u64, punch: bool) {
        let mut blocks = self.blocks.lock().unwrap();
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let b = at / BLOCK;
            let within = at % BLOCK;
            let n = (BLOCK - within).min(end - at);
            if data.is_none() && punch && n == BLOCK {
                blocks.remove(&b);
            } else if data.is_some() || blocks.contains_key(&b) || !punch {
                let block = blocks.entry(b).or_insert_with(|| vec![0; BLOCK as usize]);
                let dst = &mut block[within as usize..(within + n) as usize];
                match data {
                    Some(d) => dst.copy_from_slice(&d[(at - offset) as usize..][..n as usize]),
                    None => dst.fill(0),
                }
            }
            at += n;
        }
    }
}

impl Export for MemExport {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn block_sizes(&self) -> (u32, u32, u32) {
        (1, 4096, 32 << 20)
    }
    fn multi_conn(&self) -> bool {
        true
    }
    async fn read(&self, offset: u64, len: u32) -> Result<Vec<Span>, IoError> {
        Ok(self.read_sync(offset, u64::from(len)))
    }
    async fn write(&self, offset: u64, data: Bytes, _fua: bool) -> Result<(), IoError> {
        self.write_sync(offset, Some(&data), data.len() as u64, false);
        Ok(())
    }
    async fn trim(&self, offset: u64, len: u32, _fua: bool) -> Result<(), IoError> {
        self.write_sync(offset, None, u64::from(len), true);
        Ok(())
    }
    async fn write_zeroes(
        &self,
        offset: u64,
        len: u32,
        may_punch: bool,
        _fua: bool,
    ) -> Result<(), IoError> {
        self.write_sync(offset, None, u64::from(len), may_punch);
        Ok(())
    }
    async fn flush(&self) -> Result<(), IoError> {
        Ok(())
    }
    async fn cache(&self, _offset: u64, _len: u32) -> Result<(), IoError> {
        Ok(())
    }
    async fn block_status(&self, offset: u64, len: u32) -> Result<Vec<Extent>, IoError> {
        Ok(self
            .read_sync(offset, u64::from(len))
            .into_iter()
            .map(|s| match s {
                Span::Data(b) => Extent {
                    len: b.len() as u64,
                    hole: false,
                    zero: false,
                },
                Span::Hole(n) => Extent {
                    len: n,
                    hole: true,
                    zero: true,
                },
            })
            .collect())
    }
}

#[derive(Debug, Default)]
struct MemExports {
    exports: HashMap<String, (Arc<MemExport>, String)>,
}

impl MemExports {
    fn with(mut self, name: &str, size: u64, read_only: bool, description: &str) -> Self {
        let e = Arc::new(MemExport::new(size, read_only));
        self.exports.insert(name.into(), (e, description.into()));
        self
    }
    fn get(&self, name: &str) -> Arc<MemExport> {
        self.exports[name].0.clone()
    }
}

impl Exports for MemExports {
    type Export = MemExport;
    async fn open(&self, name: &str) -> Result<Arc<MemExport>, String> {
        self.exports
            .get(name)
            .map(|e| e.0.clone())
            .ok_or_else(|| format!("no export {name:?}"))
    }
    async fn list(&self) -> Vec<(String, String)> {
        let mut l: Vec<_> = self
            .exports
            .iter()
            .map(|(n, (_, d))| (n.clone(), d.clone()))
            .collect();
        l.sort();
        l
    }
    fn default_name(&self) -> Option<String> {
        Some("disk".into())
    }
}

fn exports() -> Arc<MemExports> {
    Arc::new(
        MemExports::default()
            .with("disk", 64 * MIB, false, "scratch disk")
            .with("ro", 16 * MIB, true, "read-only disk"),
    )
}

// ---------------------------------------------------------------------------------------------
// Harness

struct TestServer {
    rt: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serve: Option<tokio::task::JoinHandle<()>>,
    exports: Arc<MemExports>,
}

impl TestServer {
    fn start(config: NbdConfig) -> Self {
        Self::start_with(exports(), config)
    }

    fn start_with(exports: Arc<MemExports>, config: NbdConfig) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = NbdServer::new(exports.clone(), config).unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serve = rt.spawn(server.serve(listener, async move {
            let _ = rx.await;
        }));
        Self {
            rt: Some(rt),
            addr,
            stop: Some(tx),
            serve: Some(serve),
            exports,
        }
    }

    fn uri(&self, name: &str) -> String {
        format!("nbd://{}/{name}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// Runs a client to completion, killing it after `timeout`.
fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

fn run_ok(cmd: &mut Command, timeout: Duration) -> String {
    let out = run(cmd, timeout);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const T: Duration = Duration::from_secs(60);

/// Deterministic test data with zero runs, so conversions produce both data and holes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = vec![0u8; len];
    for (i, chunk) in v.chunks_mut(65536).enumerate() {
        if i % 5 == 2 {
            continue; // leave zeros
        }
        for b in chunk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    v
}

fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

// ---------------------------------------------------------------------------------------------
// Real clients

#[test]
fn qemu_img_info_reports_size() {
    let s = TestServer::start(NbdConfig::default());
    let out = run_ok(Command::new("qemu-img").args(["info", &s.uri("disk")]), T);
    assert!(out.contains("virtual size: 64 MiB"), "{out}");
    // The default export ("") resolves to "disk".
    let out = run_ok(
        Command::new("qemu-img").args(["info", &format!("nbd://{}", s.addr)]),
        T,
    );
    assert!(out.contains("virtual size: 64 MiB"), "{out}");
    let out = run(Command::new("qemu-img").args(["info", &s.uri("nope")]), T);
    assert!(!out.status.success());
}

#[test]
fn qemu_io_write_then_read_pattern() {
    let s = TestServer::start(NbdConfig::default());
    let out = run_ok(
        Command::new("qemu-io").args([
            "-f",
            "raw",
            "-c",
            "write -P 0xab 4096 8192",
            "-c",
            "read -P 0xab 4096 8192",
            "-c",
            "write -z 65536 65536",
            "-c",
            "read -P 0 65536 65536",
            "-c",
            "flush",
            &s.uri("disk"),
        ]),
        T,
    );
    assert!(!out.contains("failed"), "{out}");
    let disk = s.exports.get("disk");
    assert_eq!(disk.bytes(4096, 8192), vec![0xab; 8192]);
    assert_eq!(disk.bytes(0, 4096), vec![0; 4096]);
}

#[test]
fn qemu_img_convert_roundtrip_and_compare() {
    let s = TestServer::start(NbdConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.raw");
    let back = dir.path().join("back.raw");
    std::fs::write(&src, pattern(16 * MIB as usize, 7)).unwrap();
    let uri = s.uri("disk");
    let src_s = src.to_str().unwrap();
    // The target is 64 MiB and the source 16 MiB: -n writes into the existing export.
    run_ok(
        Command::new("qemu-img").args(["convert", "-n", "-f", "raw", "-O", "raw", src_s, &uri]),
        T,
    );
    run_ok(
        Command::new("qemu-img").args([
            "convert",
            "-f",
            "raw",
            "-O",
            "raw",
            &uri,
            back.to_str().unwrap(),
        ]),
        T,
    );
    let back_data = std::fs::read(&back).unwrap();
    assert_eq!(back_data.len() as u64, 64 * MIB);
    assert!(back_data[..16 * MIB as usize] == std::fs::read(&src).unwrap()[..]);
    assert!(back_data[16 * MIB as usize..].iter().all(|&b| b == 0));
    // compare checks the common prefix and that the rest of the larger image is zero.
    run_ok(
        Command::new("qemu-img").args(["compare", "-f", "raw", "-F", "raw", src_s, &uri]),
        T,
    );
}

#[test]
fn nbdinfo_lists_exports() {
    let s = TestServer::start(NbdConfig::default());
    let out = run_ok(
        Command::new("nbdinfo").args(["--list", &format!("nbd://{}", s.addr)]),
        T,
    );
    assert!(
        out.contains("export=\"disk\"") || out.contains("disk"),
        "{out}"
    );
    assert!(out.contains("scratch disk"), "{out}");
    assert!(out.contains("read-only disk"), "{out}");
    let out = run_ok(Command::new("nbdinfo").args([&s.uri("ro")]), T);
    assert!(out.contains("is_read_only: true"), "{out}");
    assert!(out.contains("can_multi_conn: true"), "{out}");
    assert!(out.contains("can_fast_zero: true"), "{out}");
    assert!(out.contains("block_size_maximum: 33554432"), "{out}");
}

/// Parses `nbdinfo --map` lines into (offset, length, type).
fn map(uri: &str) -> Vec<(u64, u64, u32)> {
    let out = run_ok(Command::new("nbdinfo").args(["--map", uri]), T);
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((
                w.next()?.parse().ok()?,
                w.next()?.parse().ok()?,
                w.next()?.parse().ok()?,
            ))
        })
        .collect()
}

#[test]
fn nbdinfo_map_shows_holes_and_data() {
    let s = TestServer::start(NbdConfig::default());
    let uri = s.uri("disk");
    assert_eq!(map(&uri), vec![(0, 64 * MIB, 3)]);
    run_ok(
        Command::new("qemu-io").args([
            "-f",
            "raw",
            "-c",
            "write -P 0x11 1M 256K",
            "-c",
            "write -P 0x22 4M 64K",
            "-c",
            "discard 1088K 64K",
            "-c",
            "write -z -u 4M 64K",
            &uri,
        ]),
        T,
    );
    let m = map(&uri);
    assert_eq!(
        m,
        vec![
            (0, MIB, 3),
            (MIB, 64 * 1024, 0),
            (MIB + 64 * 1024, 64 * 1024, 3),
            (MIB + 128 * 1024, 128 * 1024, 0),
            (MIB + 256 * 1024, 64 * MIB - MIB - 256 * 1024, 3),
        ],
        "{m:?}"
    );
}

#[test]
fn nbdcopy_in_and_out_64_mib() {
    let s = TestServer::start(NbdConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.raw");
    let out = dir.path().join("out.raw");
    std::fs::write(&src, pattern(64 * MIB as usize, 42)).unwrap();
    let uri = s.uri("disk");
    run_ok(
        Command::new("nbdcopy").args([src.to_str().unwrap(), &uri]),
        T,
    );
    run_ok(
        Command::new("nbdcopy").args([&uri, out.to_str().unwrap()]),
        T,
    );
    assert_eq!(sha256_file(&src), sha256_file(&out));
    // Zero runs in the source became holes on the way in.
    assert!(map(&uri).iter().any(|&(_, _, t)| t & 1 == 1));
}

#[test]
fn fio_randwrite_verify() {
    let s = TestServer::start(NbdConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(
        Command::new("fio").current_dir(dir.path()).args([
            "--name=nbd",
            "--ioengine=nbd",
            &format!("--uri={}", s.uri("disk")),
            "--rw=randwrite",
            "--bs=4k",
            "--iodepth=32",
            "--verify=crc32c",
            "--size=32m",
            "--do_verify=1",
            "--verify_fatal=1",
        ]),
        Duration::from_secs(120),
    );
    // The verify phase reads everything back; fio exits non-zero on a mismatch.
    assert!(
        out.contains("write: IOPS=") && out.contains("read: IOPS="),
        "{out}"
    );
    assert!(!out.contains("verify: bad"), "{out}");
}

#[test]
fn read_only_export_refuses_writes() {
    let s = TestServer::start(NbdConfig::default());
    let out = run(
        Command::new("qemu-io").args(["-f", "raw", "-c", "write -P 1 0 4096", &s.uri("ro")]),
        T,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .to_lowercase();
    assert!(
        text.contains("read-only") || text.contains("permission") || text.contains("not permitted"),
        "{text}"
    );
    // The raw protocol answer, not just qemu's own refusal.
    let mut c = RawClient::connect(s.addr, "ro", true);
    assert_eq!(c.write(0, &[1; 512]), proto::EPERM);
    assert_eq!(c.cmd(proto::CMD_FLAG_FUA, 4, 0, 512).0, proto::EPERM);
    assert!(s.exports.get("ro").blocks.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// TLS

struct Certs {
    _dir: tempfile::TempDir,
    server: std::path::PathBuf,
    client: std::path::PathBuf,
}

fn make_certs() -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let dir = tempfile::tempdir().unwrap();
    let server = dir.path().join("server");
    let client = dir.path().join("client");
    std::fs::create_dir_all(&server).unwrap();
    std::fs::create_dir_all(&client).unwrap();

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cairn test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |client_auth: bool| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![if client_auth {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (scert, skey) = leaf(false);
    let (ccert, ckey) = leaf(true);
    for d in [&server, &client] {
        std::fs::write(d.join("ca-cert.pem"), ca_cert.pem()).unwrap();
    }
    std::fs::write(server.join("server-cert.pem"), scert).unwrap();
    std::fs::write(server.join("server-key.pem"), skey).unwrap();
    std::fs::write(client.join("client-cert.pem"), ccert).unwrap();
    std::fs::write(client.join("client-key.pem"), ckey).unwrap();
    Certs {
        _dir: dir,
        server,
        client,
    }
}

#[test]
fn tls_with_client_certificates() {
    let certs = make_certs();
    let config = NbdConfig {
        tls: Some(TlsConfig::from_dir(&certs.server)),
        tls_required: true,
        ..NbdConfig::default()
    };
    let s = TestServer::start(config);
    let client_dir = certs.client.to_str().unwrap();

    // libnbd: nbds:// insists on TLS and verifies the server against ca-cert.pem.
    let uri = format!("nbds://{}/disk?tls-certificates={client_dir}", s.addr);
    let out = run_ok(Command::new("nbdinfo").arg(&uri), T);
    assert!(out.contains("export-size: 67108864"), "{out}");

    // qemu: tls-creds-x509 object, data round trip through the TLS connection.
    let obj = format!("tls-creds-x509,id=tls0,dir={client_dir},endpoint=client");
    let opts = format!(
        "driver=nbd,host=127.0.0.1,port={},export=disk,tls-creds=tls0",
        s.addr.port()
    );
    let out = run_ok(
        Command::new("qemu-io").args([
            "--object",
            &obj,
            "--image-opts",
            &opts,
            "-c",
            "write -P 0x5a 0 1M",
            "-c",
            "read -P 0x5a 0 1M",
        ]),
        T,
    );
    assert!(!out.contains("failed"), "{out}");
    let out = run_ok(
        Command::new("qemu-img").args(["info", "--object", &obj, "--image-opts", &opts]),
        T,
    );
    assert!(out.contains("virtual size: 64 MiB"), "{out}");

    // Plain text is refused with TLS_REQD, which qemu reports and fails on.
    let out = run(Command::new("qemu-img").args(["info", &s.uri("disk")]), T);
    assert!(!out.status.success());
    let mut c = RawClient::handshake_only(s.addr);
    assert_eq!(c.option(proto::OPT_LIST, &[]).0, proto::REP_ERR_TLS_REQD);

    // A client without a certificate is rejected by the verifier.
    let anon = tempfile::tempdir().unwrap();
    std::fs::copy(
        certs.client.join("ca-cert.pem"),
        anon.path().join("ca-cert.pem"),
    )
    .unwrap();
    let uri = format!(
        "nbds://{}/disk?tls-certificates={}",
        s.addr,
        anon.path().display()
    );
    let out = run(Command::new("nbdinfo").arg(&uri), T);
    assert!(!out.status.success());
}

// ---------------------------------------------------------------------------------------------
// Raw protocol client

struct RawClient {
    s: TcpStream,
    cookie: u64,
    structured: bool,
}

impl RawClient {
    fn handshake_only(addr: SocketAddr) -> Self {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut g = [0u8; 18];
        s.read_exact(&mut g).unwrap();
        assert_eq!(g, proto::greeting());
        s.write_all(&(proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES).to_be_bytes())
            .unwrap();
        Self {
            s,
            cookie: 0,
            structured: false,
        }
    }

    /// Sends an option and reads replies up to ACK or an error; returns (final type, replies).
    fn option(&mut self, opt: u32, data: &[u8]) -> (u32, Vec<(u32, Vec<u8>)>) {
        let mut f = proto::IHAVEOPT.to_be_bytes().to_vec();
        f.extend_from_slice(&opt.to_be_bytes());
        f.extend_from_slice(&(data.len() as u32).to_be_bytes());
        f.extend_from_slice(data);
        self.s.write_all(&f).unwrap();
        let mut replies = Vec::new();
        for _ in 0..100 {
            let mut h = [0u8; 20];
            self.s.read_exact(&mut h).unwrap();
            assert_eq!(&h[..8], &proto::OPTION_REPLY_MAGIC.to_be_bytes());
            let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
            let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
            let mut d = vec![0u8; len as usize];
            self.s.read_exact(&mut d).unwrap();
            if kind == proto::REP_ACK || kind & (1 << 31) != 0 {
                return (kind, replies);
            }
            replies.push((kind, d));
        }
        panic!("too many option replies");
    }

    fn connect(addr: SocketAddr, name: &str, structured: bool) -> Self {
        let mut c = Self::handshake_only(addr);
        if structured {
            assert_eq!(c.option(proto::OPT_STRUCTURED_REPLY, &[]).0, proto::REP_ACK);
            let mut q = (name.len() as u32).to_be_bytes().to_vec();
            q.extend_from_slice(name.as_bytes());
            q.extend_from_slice(&1u32.to_be_bytes());
            q.extend_from_slice(&(proto::BASE_ALLOCATION.len() as u32).to_be_bytes());
            q.extend_from_slice(proto::BASE_ALLOCATION.as_bytes());
            let (k, r) = c.option(proto::OPT_SET_META_CONTEXT, &q);
            assert_eq!((k, r.len()), (proto::REP_ACK, 1));
            c.structured = true;
        }
        let mut go = (name.len() as u32).to_be_bytes().to_vec();
        go.extend_from_slice(name.as_bytes());
        go.extend_from_slice(&0u16.to_be_bytes());
        let (k, _) = c.option(proto::OPT_GO, &go);
        assert_eq!(k, proto::REP_ACK);
        c
    }

    fn send(&mut self, flags: u16, cmd: u16, offset: u64, len: u32, payload: &[u8]) -> u64 {
        self.cookie += 1;
        let mut b = proto::REQUEST_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&cmd.to_be_bytes());
        b.extend_from_slice(&self.cookie.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(payload);
        self.s.write_all(&b).unwrap();
        self.cookie
    }

    /// Reads one complete reply: (error, data with holes filled, block-status descriptors).
    fn reply(&mut self, cookie: u64, read_len: u32, read_off: u64) -> (u32, Vec<u8>, Vec<u32>) {
        let mut magic = [0u8; 4];
        self.s.read_exact(&mut magic).unwrap();
        let magic = u32::from_be_bytes(magic);
        if magic == proto::SIMPLE_REPLY_MAGIC {
            let mut h = [0u8; 12];
            self.s.read_exact(&mut h).unwrap();
            assert_eq!(u64::from_be_bytes(h[4..].try_into().unwrap()), cookie);
            let err = u32::from_be_bytes(h[..4].try_into().unwrap());
            let mut data = vec![0u8; if err == 0 { read_len as usize } else { 0 }];
            self.s.read_exact(&mut data).unwrap();
            return (err, data, vec![]);
        }
        assert_eq!(magic, proto::STRUCTURED_REPLY_MAGIC);
        let mut data = vec![0u8; read_len as usize];
        let mut status = Vec::new();
        let mut err = 0;
        let mut first = true;
        for _ in 0..100_000 {
            if !first {
                let mut m = [0u8; 4];
                self.s.read_exact(&mut m).unwrap();
                assert_eq!(u32::from_be_bytes(m), proto::STRUCTURED_REPLY_MAGIC);
            }
            first = false;
            let mut h = [0u8; 16];
            self.s.read_exact(&mut h).unwrap();
            let flags = u16::from_be_bytes(h[..2].try_into().unwrap());
            let kind = u16::from_be_bytes(h[2..4].try_into().unwrap());
            assert_eq!(u64::from_be_bytes(h[4..12].try_into().unwrap()), cookie);
            let len = u32::from_be_bytes(h[12..16].try_into().unwrap());
            let mut p = vec![0u8; len as usize];
            self.s.read_exact(&mut p).unwrap();
            match kind {
                proto::REPLY_TYPE_OFFSET_DATA => {
                    let off = u64::from_be_bytes(p[..8].try_into().unwrap()) - read_off;
                    data[off as usize..off as usize + p.len() - 8].copy_from_slice(&p[8..]);
                }
                proto::REPLY_TYPE_OFFSET_HOLE => {}
                proto::REPLY_TYPE_BLOCK_STATUS => {
                    status = p[4..]
                        .chunks(4)
                        .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
                        .collect();
                }
                proto::REPLY_TYPE_ERROR => err = u32::from_be_bytes(p[..4].try_into().unwrap()),
                proto::REPLY_TYPE_NONE => {}
                other => panic!("unexpected chunk type {other}"),
            }
            if flags & proto::REPLY_FLAG_DONE != 0 {
                return (err, data, status);
            }
        }
        panic!("reply never finished");
    }

    fn cmd(&mut self, flags: u16, cmd: u16, offset: u64, len: u32) -> (u32, Vec<u8>, Vec<u32>) {
        let c = self.send(flags, cmd, offset, len, &[]);
        let read_len = if cmd == 0 { len } else { 0 };
        self.reply(c, read_len, offset)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> u32 {
        let c = self.send(0, 1, offset, data.len() as u32, data);
        self.reply(c, 0, offset).0
    }
}

#[test]
fn raw_protocol_errors_and_replies() {
    let s = TestServer::start(NbdConfig::default());
    let size = 64 * MIB;
    let mut c = RawClient::connect(s.addr, "disk", true);
    assert_eq!(c.write(8192, &[7; 4096]), 0);
    // Structured read across a hole and data.
    let (e, d, _) = c.cmd(0, 0, 0, 16384);
    assert_eq!(e, 0);
    assert_eq!(&d[8192..12288], &[7; 4096][..]);
    assert!(d[..8192].iter().chain(&d[12288..]).all(|&b| b == 0));
    // DF: one chunk, same bytes.
    assert_eq!(c.cmd(proto::CMD_FLAG_DF, 0, 0, 16384).1, d);
    // Block status, full and REQ_ONE.
    let (e, _, st) = c.cmd(0, 7, 0, 16384);
    assert_eq!((e, st), (0, vec![8192, 3, 4096, 0, 4096, 3]));
    assert_eq!(c.cmd(proto::CMD_FLAG_REQ_ONE, 7, 0, 16384).2, vec![8192, 3]);
    // Errors.
    assert_eq!(c.cmd(0, 0, size - 1, 2).0, proto::EINVAL);
    assert_eq!(c.write(size - 1, &[1, 2]), proto::ENOSPC);
    assert_eq!(c.cmd(0, 6, size, 1).0, proto::ENOSPC);
    assert_eq!(c.cmd(0, 4, size, 1).0, proto::EINVAL);
    assert_eq!(c.cmd(0, 42, 0, 1).0, proto::EINVAL);
    assert_eq!(c.cmd(1 << 12, 0, 0, 1).0, proto::EINVAL);
    assert_eq!(c.cmd(0, 0, 0, 33 << 20).0, proto::EINVAL);
    // The connection survived all of that.
    assert_eq!(c.cmd(0, 3, 0, 0).0, 0);
    assert_eq!(c.cmd(0, 0, 8192, 4096).1, vec![7; 4096]);

    // Simple replies: holes arrive as zeros; BLOCK_STATUS without a context is EINVAL.
    let mut simple = RawClient::connect(s.addr, "disk", false);
    let (e, d, _) = simple.cmd(0, 0, 4096, 8192);
    assert_eq!(e, 0);
    assert_eq!(&d[4096..], &[7; 4096][..]);
    assert!(d[..4096].iter().all(|&b| b == 0));
    assert_eq!(simple.cmd(0, 7, 0, 4096).0, proto::EINVAL);
    assert_eq!(simple.cmd(proto::CMD_FLAG_DF, 0, 0, 4096).0, proto::EINVAL);

    // Options: unknown → UNSUP, extended headers → UNSUP, unknown export → UNKNOWN, LIST.
    let mut h = RawClient::handshake_only(s.addr);
    assert_eq!(h.option(99, &[]).0, proto::REP_ERR_UNSUP);
    assert_eq!(
        h.option(proto::OPT_EXTENDED_HEADERS, &[]).0,
        proto::REP_ERR_UNSUP
    );
    assert_eq!(h.option(proto::OPT_STARTTLS, &[]).0, proto::REP_ERR_UNSUP);
    let mut go = 4u32.to_be_bytes().to_vec();
    go.extend_from_slice(b"nope");
    go.extend_from_slice(&0u16.to_be_bytes());
    assert_eq!(h.option(proto::OPT_INFO, &go).0, proto::REP_ERR_UNKNOWN);
    assert_eq!(h.option(proto::OPT_GO, &go[..5]).0, proto::REP_ERR_INVALID);
    let (k, list) = h.option(proto::OPT_LIST, &[]);
    assert_eq!((k, list.len()), (proto::REP_ACK, 2));
    // LIST_META_CONTEXT before structured replies is invalid; after, "base:" lists allocation.
    let mut q = 0u32.to_be_bytes().to_vec();
    q.extend_from_slice(&1u32.to_be_bytes());
    q.extend_from_slice(&5u32.to_be_bytes());
    q.extend_from_slice(b"base:");
    assert_eq!(
        h.option(proto::OPT_LIST_META_CONTEXT, &q).0,
        proto::REP_ERR_INVALID
    );
    assert_eq!(h.option(proto::OPT_STRUCTURED_REPLY, &[]).0, proto::REP_ACK);
    let (k, r) = h.option(proto::OPT_LIST_META_CONTEXT, &q);
    assert_eq!(k, proto::REP_ACK);
    assert_eq!(&r[0].1[4..], proto::BASE_ALLOCATION.as_bytes());
    // SET with the bare namespace selects nothing.
    assert_eq!(
        h.option(proto::OPT_SET_META_CONTEXT, &q),
        (proto::REP_ACK, vec![])
    );
    // Old-style EXPORT_NAME with NO_ZEROES: 10 bytes, then transmission works.
    let mut f = proto::IHAVEOPT.to_be_bytes().to_vec();
    f.extend_from_slice(&proto::OPT_EXPORT_NAME.to_be_bytes());
    f.extend_from_slice(&4u32.to_be_bytes());
    f.extend_from_slice(b"disk");
    h.s.write_all(&f).unwrap();
    let mut r = [0u8; 10];
    h.s.read_exact(&mut r).unwrap();
    assert_eq!(u64::from_be_bytes(r[..8].try_into().unwrap()), size);
    h.structured = true;
    assert_eq!(h.cmd(0, 0, 8192, 4096).1, vec![7; 4096]);
    // DISC: the server closes after in-flight requests.
    h.send(0, 2, 0, 0, &[]);
    let mut buf = [0u8; 1];
    assert_eq!(h.s.read(&mut buf).unwrap(), 0);
}

/// Pipelines many requests before reading any reply, as qemu and fio do.
#[test]
fn pipelined_requests_complete_out_of_order_safely() {
    let s = TestServer::start(NbdConfig {
        max_inflight_requests: 8,
        ..NbdConfig::default()
    });
    let mut c = RawClient::connect(s.addr, "disk", true);
    let writer = c.s.try_clone().unwrap();
    let n = 200u64;
    let t = std::thread::spawn(move || {
        let mut w = writer;
        for i in 0..n {
            let mut b = proto::REQUEST_MAGIC.to_be_bytes().to_vec();
            b.extend_from_slice(&0u16.to_be_bytes());
            b.extend_from_slice(&1u16.to_be_bytes());
            b.extend_from_slice(&(i + 1).to_be_bytes());
            b.extend_from_slice(&(i * 4096).to_be_bytes());
            b.extend_from_slice(&4096u32.to_be_bytes());
            b.extend_from_slice(&[i as u8; 4096]);
            w.write_all(&b).unwrap();
        }
    });
    let mut seen = std::collections::HashSet::new();
    for _ in 0..n {
        let mut h = [0u8; 16];
        c.s.read_exact(&mut h).unwrap();
        assert_eq!(
            u32::from_be_bytes(h[..4].try_into().unwrap()),
            proto::SIMPLE_REPLY_MAGIC
        );
        assert_eq!(u32::from_be_bytes(h[4..8].try_into().unwrap()), 0);
        assert!(seen.insert(u64::from_be_bytes(h[8..].try_into().unwrap())));
    }
    t.join().unwrap();
    let disk = s.exports.get("disk");
    for i in 0..n {
        assert_eq!(disk.bytes(i * 4096, 4096), vec![i as u8; 4096]);
    }
}

// ---------------------------------------------------------------------------------------------
// Garbage on the wire

/// Garbage frames, sent on their own connections, close only those connections; a client
/// that keeps working meanwhile still reads back what it wrote.
#[test]
fn garbage_frames_close_only_their_connection() {
    let s = TestServer::start(NbdConfig {
        handshake_timeout: Duration::from_secs(2),
        ..NbdConfig::default()
    });
    let addr = s.addr;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let good = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut c = RawClient::connect(addr, "disk", true);
            let mut rounds = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) && rounds < 100_000 {
                let off = (rounds % 256) * 4096 + 32 * MIB;
                let data = vec![(rounds % 251) as u8; 4096];
                assert_eq!(c.write(off, &data), 0);
                assert_eq!(c.cmd(0, 0, off, 4096).1, data);
                rounds += 1;
            }
            rounds
        })
    };

    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Valid prefixes: client flags, an option, a request header.
    let mut valid_opt = proto::IHAVEOPT.to_be_bytes().to_vec();
    valid_opt.extend_from_slice(&proto::OPT_GO.to_be_bytes());
    valid_opt.extend_from_slice(&10u32.to_be_bytes());
    valid_opt.extend_from_slice(&[0, 0, 0, 4, b'd', b'i', b's', b'k', 0, 0]);
    for round in 0..60 {
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut g = [0u8; 18];
        sock.read_exact(&mut g).unwrap();
        let mut frame = match round % 4 {
            // Random bytes instead of client flags.
            0 => (0..(next() % 64))
                .map(|_| next() as u8)
                .collect::<Vec<u8>>(),
            // Valid flags, then a truncated or corrupted GO option.
            1 | 2 => {
                let mut f = 3u32.to_be_bytes().to_vec();
                let mut o = valid_opt.clone();
                if round % 4 == 2 {
                    let at = (next() as usize) % o.len();
                    o[at] ^= (next() as u8) | 1;
                }
                o.truncate((next() as usize) % (o.len() + 1));
                f.extend_from_slice(&o);
                f
            }
            // A full handshake, then a garbage request header or an oversized write.
            _ => {
                let mut f = 3u32.to_be_bytes().to_vec();
                f.extend_from_slice(&valid_opt);
                if next() % 2 == 0 {
                    f.extend((0..28).map(|_| next() as u8));
                } else {
                    let mut r = proto::REQUEST_MAGIC.to_be_bytes().to_vec();
                    r.extend_from_slice(&[0, 0, 0, 1]);
                    r.extend_from_slice(&[0; 16]);
                    r.extend_from_slice(&(64u32 << 20).to_be_bytes());
                    f.extend_from_slice(&r);
                }
                f
            }
        };
        if next() % 3 == 0 {
            frame.extend((0..(next() % 100)).map(|_| next() as u8));
        }
        let _ = sock.write_all(&frame);
        let _ = sock.shutdown(std::net::Shutdown::Write);
        // The server must close (or time out the handshake); drain until EOF.
        let mut sink = Vec::new();
        // A reset is as good as a close; only a timeout means the server kept it open.
        if let Err(e) = sock.read_to_end(&mut sink) {
            let kind = e.kind();
            assert!(
                !matches!(
                    kind,
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "round {round}: connection left open"
            );
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = good.join().unwrap();
    assert!(rounds > 0);
    // The server still accepts and serves new clients.
    let mut c = RawClient::connect(addr, "disk", false);
    assert_eq!(c.cmd(0, 3, 0, 0).0, 0);
}

#[test]
fn connection_limit_and_handshake_timeout() {
    let s = TestServer::start(NbdConfig {
        max_connections: 1,
        handshake_timeout: Duration::from_millis(500),
        ..NbdConfig::default()
    });
    // A silent client is cut off by the handshake timeout.
    let mut idle = TcpStream::connect(s.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // While it holds the only slot, another connection is closed straight away.
    std::thread::sleep(Duration::from_millis(100));
    let mut second = TcpStream::connect(s.addr).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(second.read_to_end(&mut buf).unwrap_or(0), 0);
    let start = Instant::now();
    let mut buf = Vec::new();
    let _ = idle.read_to_end(&mut buf);
    assert_eq!(buf.len(), 18, "greeting, then close");
    assert!(start.elapsed() < Duration::from_secs(5));
    // The slot is free again.
    std::thread::sleep(Duration::from_millis(100));
    let mut c = RawClient::connect(s.addr, "disk", false);
    assert_eq!(c.cmd(0, 3, 0, 0).0, 0);
}

#[test]
fn idle_timeout_and_graceful_shutdown() {
    let config = NbdConfig {
        idle_timeout: Some(Duration::from_millis(300)),
        ..NbdConfig::default()
    };
    let s = TestServer::start(config);
    // An idle client in transmission is closed after the idle timeout.
    let mut idle = RawClient::connect(s.addr, "disk", false);
    let mut buf = Vec::new();
    let start = Instant::now();
    assert_eq!(idle.s.read_to_end(&mut buf).unwrap_or(0), 0);
    assert!(start.elapsed() < Duration::from_secs(5));

    drop(s);

    // Shutdown: serve returns, connected clients see the connection close.
    let mut s = TestServer::start(NbdConfig::default());
    let mut c = RawClient::connect(s.addr, "disk", true);
    assert_eq!(c.write(0, &[9; 4096]), 0);
    s.stop.take().unwrap().send(()).unwrap();
    let serve = s.serve.take().unwrap();
    let rt = s.rt.as_ref().unwrap();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), serve).await })
        .expect("serve returns after shutdown")
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(c.s.read_to_end(&mut buf).unwrap_or(0), 0);
    assert_eq!(s.exports.get("disk").bytes(0, 4096), vec![9; 4096]);
}
