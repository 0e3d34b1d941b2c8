//! `cairn`: the one binary — the all-in-one cluster (`cairn up`), storage nodes (`cairn node`),
//! the S3/Swift gateway, the NBD server (`cairn nbd serve`), and the admin and image commands.

use std::path::PathBuf;

use anyhow::Context;
use cairn_node::config::NodeConfig;
use clap::{Parser, Subcommand};
use tracing::info;

mod allocator;

#[global_allocator]
static ALLOCATOR: allocator::SplitAllocator = allocator::SplitAllocator;

#[derive(Parser, Debug)]
#[command(name = "cairn", version, about = "Cairn: a storage-centric cloud")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Projects (= S3 owners = Swift accounts), through a gateway's admin API.
    Project {
        #[command(flatten)]
        target: cairn_gateway::admin_cli::AdminTarget,
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Users and their roles, through a gateway's admin API.
    User {
        #[command(flatten)]
        target: cairn_gateway::admin_cli::AdminTarget,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Block images (thin, snapshots, clones), through a gateway's admin API; import and
    /// export through its NBD server.
    Image {
        #[command(flatten)]
        target: cairn_gateway::admin_cli::AdminTarget,
        /// The NBD server for import/export (default: the endpoints file's).
        #[arg(long, global = true)]
        nbd: Option<String>,
        #[command(subcommand)]
        command: cairn_gateway::image_cli::ImageCommand,
    },
    /// S3 access keys, through a gateway's admin API.
    Key {
        #[command(flatten)]
        target: cairn_gateway::admin_cli::AdminTarget,
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// The all-in-one local cluster: three storage nodes, the control plane and the S3/Swift
    /// gateway in one process. The first start creates it under --data-dir; later starts
    /// reuse it. Prints the endpoints and credentials and writes <data-dir>/endpoints.json.
    Up {
        #[arg(long, default_value = "cairn-data")]
        data_dir: PathBuf,
        /// The gateway's (S3 and Swift) port on --host; 0 picks a free one.
        #[arg(long, default_value_t = 8080)]
        s3_port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// Seconds between passes of the object expirer (X-Delete-At).
        #[arg(long, default_value_t = 60)]
        expirer_interval_s: u64,
        /// The NBD server's port on --host (every image an export); 0 picks a free one.
        #[arg(long, default_value_t = 10809)]
        nbd_port: u16,
        /// Send the gateway's and NBD server's calls to the nodes over TCP+TLS, as between
        /// hosts, instead of calling them inside the process.
        #[arg(long)]
        no_local_calls: bool,
        /// Serve S3 and Swift over HTTPS (certificate from the cluster CA, whose certificate
        /// `endpoints.json` names as `s3.ca_bundle`) instead of plain HTTP.
        #[arg(long)]
        https: bool,
    },
    /// Object operations straight through the cluster client (an operator's tool until the
    /// S3/Swift gateway exists), authenticated with a node's certificate from its config.
    Object {
        /// A node config naming the rings, hash secrets and a certificate.
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        command: ObjectCommand,
    },
    /// Create a cluster in the control-plane store: its id, hash secrets and certificate
    /// authority. Refuses if the store already holds a cluster.
    Init {
        #[command(flatten)]
        meta: MetaArgs,
        #[arg(long, default_value = "cairn")]
        cluster: String,
        /// Where to write ca.pem (the CA certificate nodes trust).
        #[arg(long)]
        out: PathBuf,
    },
    /// Give a new node its certificate from the cluster CA kept in the control plane; writes
    /// <NAME>.pem, <NAME>.key and ca.pem into OUT and prints the cluster's hash settings.
    NodeJoin {
        #[command(flatten)]
        meta: MetaArgs,
        #[arg(long)]
        name: String,
        /// An address the node serves on (repeatable).
        #[arg(long = "ip", required = true)]
        ips: Vec<std::net::IpAddr>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Show the cluster: nodes (up/down, last heartbeat), devices, capacity and usage, rings.
    Status {
        #[command(flatten)]
        meta: MetaArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Publish a compiled ring: nodes watching the store take it without a restart.
    RingPublish {
        #[command(flatten)]
        meta: MetaArgs,
        /// `object` or `container` (account listings share the container ring).
        #[arg(long)]
        kind: String,
        /// The compiled ring file (`ring-tool ... rebalance` writes it).
        ring: PathBuf,
    },
    /// Take a writer lease and keep it until killed, printing its fencing epoch (a tool for
    /// operators and tests; the block layer takes its leases in-process).
    LeaseHold {
        #[command(flatten)]
        meta: MetaArgs,
        name: String,
        #[arg(long)]
        holder: String,
        #[arg(long, default_value_t = 3)]
        ttl_s: u64,
        /// Give up after this many seconds without getting it.
        #[arg(long, default_value_t = 60)]
        wait_s: u64,
    },
    /// The cluster certificate authority: node-to-node TLS trusts exactly its certificates.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// The NBD server on its own (`cairn up` runs one too).
    Nbd {
        #[command(subcommand)]
        command: NbdCommand,
    },
    /// Run a storage node: serve its devices and run the replicator and auditor.
    Node {
        /// The node's TOML config.
        #[arg(long, short)]
        config: PathBuf,
        /// Only check the config (and that rings and certificates load), then exit.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Subcommand, Debug)]
enum NbdCommand {
    /// Serve every image of the cluster as an NBD export (`NAME` read-write with one writer
    /// per image, `NAME@SNAP` read-only) until SIGINT/SIGTERM.
    Serve {
        /// A node config naming the rings, hash secrets and a certificate the cluster trusts;
        /// its `[meta]` section names the control-plane store unless --etcd/--meta-dir do.
        #[arg(long, short)]
        config: PathBuf,
        /// etcd client URLs, comma-separated.
        #[arg(long, value_delimiter = ',', conflicts_with = "meta_dir")]
        etcd: Vec<String>,
        /// The embedded store's directory (only while no other process has it open).
        #[arg(long)]
        meta_dir: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:10809")]
        listen: std::net::SocketAddr,
        /// Offer STARTTLS with qemu's tls-creds-x509 layout: server-cert.pem, server-key.pem
        /// and, to require client certificates, ca-cert.pem.
        #[arg(long)]
        tls_dir: Option<PathBuf>,
        /// Refuse clients that do not start TLS.
        #[arg(long)]
        tls_required: bool,
    },
}

/// Which control-plane store a command talks to.
#[derive(clap::Args, Debug)]
struct MetaArgs {
    /// etcd client URLs, comma-separated.
    #[arg(long, value_delimiter = ',', conflicts_with = "meta_dir")]
    etcd: Vec<String>,
    /// The embedded store's directory (only while no node process has it open).
    #[arg(long)]
    meta_dir: Option<PathBuf>,
}

impl MetaArgs {
    async fn open(&self) -> anyhow::Result<cairn_meta::AnyMetaStore> {
        Ok(cairn_meta::AnyMetaStore::open(&self.config()?).await?)
    }

    fn config(&self) -> anyhow::Result<cairn_meta::MetaConfig> {
        Ok(match (&self.meta_dir, self.etcd.is_empty()) {
            (Some(dir), true) => cairn_meta::MetaConfig::Embedded { dir: dir.clone() },
            (None, false) => cairn_meta::MetaConfig::Etcd(cairn_meta::EtcdConfig {
                endpoints: self.etcd.clone(),
                op_timeout_ms: 5_000,
                connect_timeout_ms: 5_000,
            }),
            _ => {
                anyhow::bail!("name the control-plane store: --etcd URL[,URL...] or --meta-dir DIR")
            }
        })
    }
}

async fn run_init(meta: MetaArgs, cluster: String, out: PathBuf) -> anyhow::Result<()> {
    use std::io::Write;
    let store = meta.open().await?;
    let new = cairn_gateway::cluster::create_cluster(&store, &cluster).await?;
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("ca.pem"), &new.ca.cert_pem)?;
    // The identity master key (which encrypts S3 secrets at rest) stays out of the store: it
    // is written next to the CA certificate, readable by its owner only, for the gateway.
    write_secret(
        &out.join("identity.key"),
        &hex::encode(new.identity_master_key),
    )?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "cluster {:?} created (id {:?}); CA certificate in {}",
        new.record.name,
        new.record.id,
        out.join("ca.pem").display()
    )?;
    writeln!(
        stdout,
        "node.toml [cluster] hash_prefix = {:?} hash_suffix = {:?}",
        new.record.hash_prefix, new.record.hash_suffix
    )?;
    // Shown once; only a hash (password) and ciphertext (S3 secret) are kept.
    let a = &new.admin;
    writeln!(
        stdout,
        "admin user: {}  password: {}  project: {} ({})",
        a.user_name, a.password, a.project_name, a.project_id
    )?;
    writeln!(
        stdout,
        "admin S3 key: access_key {}  secret_key {}",
        a.access_key, a.secret_key
    )?;
    writeln!(
        stdout,
        "identity master key: {} (keep it with the gateway's config)",
        out.join("identity.key").display()
    )?;
    Ok(())
}

async fn run_node_join(
    meta: MetaArgs,
    name: String,
    ips: Vec<std::net::IpAddr>,
    out: PathBuf,
) -> anyhow::Result<()> {
    use std::io::Write;
    let store = meta.open().await?;
    let (cluster, ca) = cairn_gateway::cluster::load_cluster(&store).await?;
    let node = ca.issue_node(&name, &ips)?;
    std::fs::create_dir_all(&out)?;
    write_secret(&out.join(format!("{name}.key")), &node.key_pem)?;
    std::fs::write(out.join(format!("{name}.pem")), &node.cert_pem)?;
    std::fs::write(out.join("ca.pem"), &ca.cert_pem)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{name}: certificate in {}", out.display())?;
    writeln!(
        stdout,
        "node.toml [cluster] hash_prefix = {:?} hash_suffix = {:?}",
        cluster.hash_prefix, cluster.hash_suffix
    )?;
    Ok(())
}

async fn run_status(meta: MetaArgs, json: bool) -> anyhow::Result<()> {
    use cairn_meta::{KeyRange, MetaStore};
    use cairn_node::control::{ALIVE_PREFIX, NODES_PREFIX, NodeStatus};
    use std::io::Write;
    let store = meta.open().await?;
    // Registrations carry what a node last reported; presence keys (on its lease) say it lives.
    let registered: std::collections::BTreeMap<String, NodeStatus> = store
        .range(
            &KeyRange::Prefix(NODES_PREFIX.as_bytes().to_vec().into()),
            10_000,
        )
        .await?
        .into_iter()
        .filter_map(|kv| {
            let name = String::from_utf8_lossy(&kv.key[NODES_PREFIX.len()..]).to_string();
            Some((name, serde_json::from_slice(&kv.value).ok()?))
        })
        .collect();
    let alive: std::collections::BTreeSet<String> = store
        .range(
            &KeyRange::Prefix(ALIVE_PREFIX.as_bytes().to_vec().into()),
            10_000,
        )
        .await?
        .into_iter()
        .map(|kv| String::from_utf8_lossy(&kv.key[ALIVE_PREFIX.len()..]).to_string())
        .collect();
    let mut rings = serde_json::Map::new();
    for kind in ["object", "container"] {
        if let Some((r, _)) = cairn_meta::rings::ring_record(&store, kind).await? {
            rings.insert(kind.into(), serde_json::json!({"version": r.version, "checksum": r.checksum, "bytes": r.size_bytes}));
        }
    }
    let nodes: Vec<serde_json::Value> = registered
        .iter()
        .map(|(name, reg)| {
            let up = alive.contains(name);
            let last = reg;
            serde_json::json!({
                "name": name,
                "up": up,
                "rpc": last.rpc.to_string(),
                "last_heartbeat_unix_ms": last.heartbeat_unix_ms,
                "rings": last.rings,
                "devices": last.devices,
            })
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"nodes": nodes, "rings": rings}))?
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<16} {:<5} {:<22} {:>10} {:>10} {:<24} rings",
        "node", "state", "rpc", "total GiB", "free GiB", "last seen"
    )?;
    let now = cairn_gateway::cluster::unix_ms()?;
    for (name, reg) in &registered {
        let up = alive.contains(name);
        let last = reg;
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let total: u64 = last.devices.iter().map(|d| d.total_bytes).sum();
        let free: u64 = last.devices.iter().map(|d| d.free_bytes).sum();
        // A down node's registration keeps its last heartbeat time.
        let seen = format!(
            "{:.1} s ago",
            now.saturating_sub(last.heartbeat_unix_ms) as f64 / 1000.0
        );
        let versions: Vec<String> = last.rings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let state = if up { "up" } else { "down" };
        writeln!(
            out,
            "{name:<16} {state:<5} {:<22} {:>10.1} {:>10.1} {seen:<24} {}",
            last.rpc,
            gib(total),
            gib(free),
            versions.join(" ")
        )?;
        for d in &last.devices {
            writeln!(
                out,
                "  device {:<10} {} {:>10.1} {:>10.1}",
                d.name,
                if d.up { "up  " } else { "FAILED" },
                gib(d.total_bytes),
                gib(d.free_bytes)
            )?;
        }
    }
    for (kind, r) in &rings {
        writeln!(out, "published ring {kind}: version {}", r["version"])?;
    }
    Ok(())
}

async fn run_ring_publish(meta: MetaArgs, kind: String, ring: PathBuf) -> anyhow::Result<()> {
    let bytes = std::fs::read(&ring).with_context(|| format!("reading {}", ring.display()))?;
    // Check the file before anyone else has to: nodes refuse a corrupt ring anyway.
    let parsed = cairn_ring::PartitionRing::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid ring", ring.display()))?;
    let store = meta.open().await?;
    cairn_meta::rings::publish_ring(&store, &kind, parsed.version(), &bytes).await?;
    info!(%kind, version = parsed.version(), bytes = bytes.len(), "ring published");
    Ok(())
}

async fn run_lease_hold(
    meta: MetaArgs,
    name: String,
    holder: String,
    ttl_s: u64,
    wait_s: u64,
) -> anyhow::Result<()> {
    use std::io::Write;
    let store = meta.open().await?;
    let leases = cairn_meta::WriterLeases::new(store);
    let ttl = std::time::Duration::from_secs(ttl_s);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait_s);
    let held = loop {
        match leases.acquire(&name, &holder, ttl).await? {
            cairn_meta::Acquire::Held(h) => break h,
            cairn_meta::Acquire::Busy(b) => {
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "{name} still held by {} after {wait_s} s",
                    b.holder
                );
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
        }
    };
    // Tests and scripts read this line.
    writeln!(
        std::io::stdout().lock(),
        "held {} epoch {} by {}",
        held.name,
        held.epoch,
        held.holder
    )?;
    loop {
        tokio::time::sleep(ttl / 3).await;
        leases.renew(&held).await.context("lost the lease")?;
    }
}

#[derive(Subcommand, Debug)]
enum ProjectCommand {
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    List,
    Delete {
        /// Name or id.
        project: String,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user; with --project, also grant it --role there.
    Create {
        name: String,
        #[arg(long, env = "CAIRN_NEW_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long)]
        project: Option<String>,
        /// admin, member or reader.
        #[arg(long, default_value = "member")]
        role: String,
    },
    List,
    Delete {
        user: String,
    },
    /// Grant ROLE on PROJECT.
    Grant {
        user: String,
        #[arg(long)]
        project: String,
        #[arg(long)]
        role: String,
    },
    /// Revoke ROLE on PROJECT.
    Revoke {
        user: String,
        #[arg(long)]
        project: String,
        #[arg(long)]
        role: String,
    },
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Create an S3 key pair for USER acting in PROJECT (the secret is shown once).
    Create {
        user: String,
        #[arg(long)]
        project: String,
    },
    List {
        user: String,
    },
    Delete {
        access_key: String,
    },
}

async fn run_admin(
    target: cairn_gateway::admin_cli::AdminTarget,
    call: impl FnOnce() -> Vec<(&'static str, String, Option<serde_json::Value>)>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let client = cairn_gateway::admin_cli::AdminClient::connect(&target).await?;
    let mut out = std::io::stdout().lock();
    for (method, path, body) in call() {
        let v = client.call(method, &path, body).await?;
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    }
    Ok(())
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn project_calls(c: ProjectCommand) -> Vec<(&'static str, String, Option<serde_json::Value>)> {
    match c {
        ProjectCommand::Create { name, description } => vec![(
            "POST",
            "projects".into(),
            Some(serde_json::json!({ "name": name, "description": description })),
        )],
        ProjectCommand::List => vec![("GET", "projects".into(), None)],
        ProjectCommand::Delete { project } => {
            vec![("DELETE", format!("projects/{}", enc(&project)), None)]
        }
    }
}

fn user_calls(c: UserCommand) -> Vec<(&'static str, String, Option<serde_json::Value>)> {
    match c {
        UserCommand::Create {
            name,
            password,
            project,
            role,
        } => {
            let mut calls = vec![(
                "POST",
                "users".to_string(),
                Some(
                    serde_json::json!({ "name": name, "password": password, "default_project": project }),
                ),
            )];
            if let Some(p) = project {
                calls.push((
                    "PUT",
                    format!(
                        "projects/{}/users/{}/roles/{}",
                        enc(&p),
                        enc(&name),
                        enc(&role)
                    ),
                    None,
                ));
            }
            calls
        }
        UserCommand::List => vec![("GET", "users".into(), None)],
        UserCommand::Delete { user } => vec![("DELETE", format!("users/{}", enc(&user)), None)],
        UserCommand::Grant {
            user,
            project,
            role,
        } => vec![(
            "PUT",
            format!(
                "projects/{}/users/{}/roles/{}",
                enc(&project),
                enc(&user),
                enc(&role)
            ),
            None,
        )],
        UserCommand::Revoke {
            user,
            project,
            role,
        } => vec![(
            "DELETE",
            format!(
                "projects/{}/users/{}/roles/{}",
                enc(&project),
                enc(&user),
                enc(&role)
            ),
            None,
        )],
    }
}

fn key_calls(c: KeyCommand) -> Vec<(&'static str, String, Option<serde_json::Value>)> {
    match c {
        KeyCommand::Create { user, project } => vec![(
            "POST",
            format!("users/{}/keys", enc(&user)),
            Some(serde_json::json!({ "project": project })),
        )],
        KeyCommand::List { user } => vec![("GET", format!("users/{}/keys", enc(&user)), None)],
        KeyCommand::Delete { access_key } => {
            vec![("DELETE", format!("keys/{}", enc(&access_key)), None)]
        }
    }
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Create a cluster CA: writes ca.pem and ca.key (mode 0600) into DIR.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// The cluster's name (recorded in the CA certificate).
        #[arg(long, default_value = "cairn")]
        cluster: String,
    },
    /// Issue a node certificate: writes <NAME>.pem and <NAME>.key into OUT.
    Issue {
        /// The directory holding ca.pem and ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        #[arg(long, default_value = "cairn")]
        cluster: String,
        /// The node's name (a DNS name; peers see it in logs and spans).
        #[arg(long)]
        name: String,
        /// An address the node serves on (repeatable); peers verify the address they dial.
        #[arg(long = "ip", required = true)]
        ips: Vec<std::net::IpAddr>,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum ObjectCommand {
    /// Store FILE as ACCOUNT/CONTAINER/OBJECT.
    Put { path: String, file: PathBuf },
    /// Write ACCOUNT/CONTAINER/OBJECT to FILE (stdout if omitted).
    Get { path: String, file: Option<PathBuf> },
    /// Delete ACCOUNT/CONTAINER/OBJECT.
    Rm { path: String },
    /// List ACCOUNT/CONTAINER.
    Ls {
        path: String,
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long)]
        delimiter: Option<String>,
    },
}

fn split_path(path: &str, parts: usize) -> anyhow::Result<Vec<String>> {
    let v: Vec<String> = path
        .trim_start_matches('/')
        .splitn(parts, '/')
        .map(str::to_string)
        .collect();
    anyhow::ensure!(
        v.len() == parts && v.iter().all(|p| !p.is_empty()),
        "expected {} path parts (ACCOUNT/CONTAINER{}), got {path:?}",
        parts,
        if parts == 3 { "/OBJECT" } else { "" }
    );
    Ok(v)
}

async fn run_object(config: PathBuf, command: ObjectCommand) -> anyhow::Result<()> {
    use std::io::Write;
    let cfg = NodeConfig::load(&config)?;
    let client = cairn_node::node::cluster_client(&cfg)
        .await?
        .with_policies(cfg.policies().map_err(anyhow::Error::msg)?);
    match command {
        ObjectCommand::Put { path, file } => {
            let p = split_path(&path, 3)?;
            let data = tokio::fs::read(&file)
                .await
                .with_context(|| format!("reading {}", file.display()))?;
            let put = cairn_node::ObjectPut {
                account: p[0].clone(),
                container: p[1].clone(),
                object: p[2].clone(),
                size_bytes: data.len() as u64,
                content_type: "application/octet-stream".into(),
                user_meta: Default::default(),
                digest: None,
            };
            let w = client
                .put_object(put, cairn_net::Body::Full(data.into()))
                .await?;
            info!(timestamp = %w.timestamp, strict = w.strict, "stored");
        }
        ObjectCommand::Get { path, file } => {
            let p = split_path(&path, 3)?;
            let (meta, body) = client
                .get_object(&p[0], &p[1], &p[2], None)
                .await?
                .with_context(|| format!("{path}: no such object"))?;
            let mut body = body;
            let mut out: Box<dyn Write> = match &file {
                Some(f) => Box::new(std::fs::File::create(f)?),
                None => Box::new(std::io::stdout().lock()),
            };
            while let Some(chunk) = body.next_chunk().await {
                out.write_all(&chunk?)?;
            }
            out.flush()?;
            info!(etag = %meta.etag, bytes = meta.size_bytes, "fetched");
        }
        ObjectCommand::Rm { path } => {
            let p = split_path(&path, 3)?;
            client.delete_object(&p[0], &p[1], &p[2]).await?;
        }
        ObjectCommand::Ls {
            path,
            prefix,
            delimiter,
        } => {
            let p = split_path(&path, 2)?;
            let mut marker = None;
            let mut out = std::io::stdout().lock();
            loop {
                let query = cairn_engine::ListQuery {
                    prefix: prefix.clone(),
                    delimiter: delimiter.clone(),
                    marker: marker.clone(),
                    limit: 1_000,
                    ..Default::default()
                };
                let page = client.list_objects(&p[0], &p[1], query).await?;
                for item in &page.items {
                    match item {
                        cairn_engine::ListItem::Entry(e) => {
                            writeln!(out, "{}\t{}\t{}", e.size_bytes, e.etag, e.name)?
                        }
                        cairn_engine::ListItem::Prefix(p) => writeln!(out, "-\t-\t{p}")?,
                    }
                }
                if !page.truncated {
                    break;
                }
                marker = page
                    .next_marker
                    .or_else(|| page.items.last().map(|i| i.marker().to_string()));
            }
        }
    }
    Ok(())
}

fn write_secret(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (refusing to overwrite a key)", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn run_ca(command: CaCommand) -> anyhow::Result<()> {
    match command {
        CaCommand::Init { dir, cluster } => {
            std::fs::create_dir_all(&dir)?;
            let ca = cairn_net::ClusterCa::generate(&cluster)?;
            write_secret(&dir.join("ca.key"), &ca.key_pem)?;
            std::fs::write(dir.join("ca.pem"), &ca.cert_pem)?;
            info!(dir = %dir.display(), "cluster CA created");
        }
        CaCommand::Issue {
            ca_dir,
            cluster,
            name,
            ips,
            out,
        } => {
            let cert_pem =
                std::fs::read_to_string(ca_dir.join("ca.pem")).context("reading ca.pem")?;
            let key_pem =
                std::fs::read_to_string(ca_dir.join("ca.key")).context("reading ca.key")?;
            let ca = cairn_net::ClusterCa::from_pem(&cluster, &cert_pem, &key_pem)?;
            let node = ca.issue_node(&name, &ips)?;
            std::fs::create_dir_all(&out)?;
            write_secret(&out.join(format!("{name}.key")), &node.key_pem)?;
            std::fs::write(out.join(format!("{name}.pem")), &node.cert_pem)?;
            info!(%name, ?ips, out = %out.display(), "node certificate issued");
        }
    }
    Ok(())
}

async fn run_node(config: PathBuf, check: bool) -> anyhow::Result<()> {
    let cfg = NodeConfig::load(&config)?;
    if check {
        cairn_node::node::load_rings(&cfg).await?;
        cairn_node::node::load_identity(&cfg).await?;
        info!(config = %config.display(), "config, rings and certificates are valid");
        return Ok(());
    }
    let node = cairn_node::start_node(&cfg, cairn_gateway::node_engine::open_device)
        .await
        .context("starting the node")?;
    // Scripts and tests read this line to learn the bound addresses.
    eprintln!(
        "cairn-node ready rpc={} metrics={}",
        node.rpc_addr,
        node.metrics_addr.map(|a| a.to_string()).unwrap_or_default()
    );
    wait_for_signal().await?;
    info!("shutting down");
    node.shutdown();
    Ok(())
}

async fn run_up(opts: cairn_gateway::up::UpOptions) -> anyhow::Result<()> {
    use std::io::Write;
    let data_dir = opts.data_dir.clone();
    let up = cairn_gateway::up::start(opts).await?;
    let e = &up.endpoints;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "cairn up: 3 storage nodes and the gateway are serving")?;
        writeln!(out, "  S3       endpoint   {}", e.s3.endpoint)?;
        writeln!(out, "           region     {}", e.s3.region)?;
        writeln!(out, "           access key {}", e.s3.access_key)?;
        writeln!(out, "           secret key {}", e.s3.secret_key)?;
        if let Some(ca) = &e.s3.ca_bundle {
            writeln!(out, "           CA bundle  {ca}")?;
        }
        writeln!(out, "  Swift    auth url   {}", e.swift.auth_url)?;
        writeln!(out, "           user       {}", e.swift.user)?;
        writeln!(out, "           key        {}", e.swift.key)?;
        writeln!(
            out,
            "  NBD      exports    nbd://{}/IMAGE (cairn image create NAME --size 10G)",
            up.nbd.local_addr
        )?;
        writeln!(
            out,
            "  storage policies: {}",
            cairn_gateway::up::describe_policies(&up.policies)
        )?;
        if up.policies.iter().count() > 1 {
            writeln!(
                out,
                "           choose one per bucket or container when creating it: S3 header \
                 `x-cairn-storage-policy: NAME` (or LocationConstraint NAME), Swift header \
                 `X-Storage-Policy: NAME`"
            )?;
        }
        writeln!(
            out,
            "  written to {}",
            data_dir.join("endpoints.json").display()
        )?;
        writeln!(
            out,
            "  Ctrl-C stops the cluster; its data stays in {}",
            data_dir.display()
        )?;
        out.flush()?;
    }
    // Tests read this line from stderr.
    eprintln!(
        "cairn-up ready s3={} nbd=nbd://{}",
        e.s3.endpoint, up.nbd.local_addr
    );
    wait_for_signal().await?;
    info!("shutting down");
    up.nbd.shutdown().await;
    up.gateway.shutdown().await;
    for node in up.nodes {
        node.shutdown();
    }
    Ok(())
}

async fn run_nbd_serve(opts: cairn_gateway::nbd_serve::NbdServeOptions) -> anyhow::Result<()> {
    use std::io::Write;
    let nbd = cairn_gateway::nbd_serve::serve(opts).await?;
    writeln!(
        std::io::stdout().lock(),
        "cairn nbd: exports on nbd://{}/IMAGE",
        nbd.local_addr
    )?;
    wait_for_signal().await?;
    info!("stopping: finishing in-flight requests and releasing writer leases");
    nbd.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Node { config, check } => run_node(config, check).await,
            Command::Project { target, command } => {
                run_admin(target, || project_calls(command)).await
            }
            Command::User { target, command } => run_admin(target, || user_calls(command)).await,
            Command::Key { target, command } => run_admin(target, || key_calls(command)).await,
            Command::Image {
                target,
                nbd,
                command,
            } => cairn_gateway::image_cli::run(target, nbd, command).await,
            Command::Up {
                data_dir,
                s3_port,
                host,
                region,
                expirer_interval_s,
                nbd_port,
                no_local_calls,
                https,
            } => {
                run_up(cairn_gateway::up::UpOptions {
                    data_dir,
                    listen: std::net::SocketAddr::new(host, s3_port),
                    region,
                    expirer_interval: std::time::Duration::from_secs(expirer_interval_s.max(1)),
                    nbd_listen: std::net::SocketAddr::new(host, nbd_port),
                    local_calls: !no_local_calls,
                    https,
                })
                .await
            }
            Command::Ca { command } => run_ca(command),
            Command::Nbd {
                command:
                    NbdCommand::Serve {
                        config,
                        etcd,
                        meta_dir,
                        listen,
                        tls_dir,
                        tls_required,
                    },
            } => {
                let meta = MetaArgs { etcd, meta_dir };
                let meta = if meta.etcd.is_empty() && meta.meta_dir.is_none() {
                    None
                } else {
                    Some(meta.config()?)
                };
                run_nbd_serve(cairn_gateway::nbd_serve::NbdServeOptions {
                    node_config: config,
                    meta,
                    listen,
                    tls: tls_dir.map(cairn_block::nbd::TlsConfig::from_dir),
                    tls_required,
                })
                .await
            }
            Command::Init { meta, cluster, out } => run_init(meta, cluster, out).await,
            Command::Status { meta, json } => run_status(meta, json).await,
            Command::NodeJoin {
                meta,
                name,
                ips,
                out,
            } => run_node_join(meta, name, ips, out).await,
            Command::RingPublish { meta, kind, ring } => run_ring_publish(meta, kind, ring).await,
            Command::LeaseHold {
                meta,
                name,
                holder,
                ttl_s,
                wait_s,
            } => run_lease_hold(meta, name, holder, ttl_s, wait_s).await,
            Command::Object { config, command } => run_object(config, command).await,
        }
    })
}
