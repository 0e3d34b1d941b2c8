//! `cairn image ...`: block images through a gateway's image admin API, and import/export
//! through its NBD server (with `qemu-img`, which reads and writes raw and qcow2 and skips
//! zeros, so imports stay thin).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::admin_cli::{AdminClient, AdminTarget};

#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Create a thin image.
    Create {
        name: String,
        /// Size, e.g. 10G, 512M, or bytes.
        #[arg(long)]
        size: String,
        /// Object size as a power of two (22 = 4 MiB, the default).
        #[arg(long)]
        order: Option<u8>,
    },
    /// List images.
    Ls,
    /// Size, objects, allocated bytes, snapshots, parent, writer.
    Info { name: String },
    /// Grow or shrink.
    Resize {
        name: String,
        #[arg(long)]
        size: String,
    },
    /// Delete an image and free its objects (it must have no snapshots or clones).
    Rm { name: String },
    /// Snapshots.
    Snap {
        #[command(subcommand)]
        command: SnapCommand,
    },
    /// Clone a protected snapshot: `cairn image clone PARENT@SNAP CHILD`.
    Clone { source: String, name: String },
    /// Copy the parent's data into a clone and detach it.
    Flatten { name: String },
    /// Changed extents between two snapshots (or the beginning / the head), as JSON.
    Diff {
        name: String,
        #[arg(long)]
        from_snap: Option<String>,
        #[arg(long)]
        to_snap: Option<String>,
    },
    /// Create NAME from a raw or qcow2 file (format detected), skipping zeros.
    Import { file: PathBuf, name: String },
    /// Write NAME (or NAME@SNAP) to a file.
    Export {
        name: String,
        file: PathBuf,
        /// raw or qcow2.
        #[arg(long, default_value = "raw")]
        format: String,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum SnapCommand {
    /// `cairn image snap create IMAGE@SNAP`
    Create {
        spec: String,
    },
    Ls {
        image: String,
    },
    Rm {
        spec: String,
    },
    Rollback {
        spec: String,
    },
    Protect {
        spec: String,
    },
    Unprotect {
        spec: String,
    },
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn split_spec(spec: &str) -> anyhow::Result<(String, String)> {
    match spec.split_once('@') {
        Some((i, s)) if !i.is_empty() && !s.is_empty() => Ok((enc(i), enc(s))),
        _ => bail!("expected IMAGE@SNAPSHOT, got {spec:?}"),
    }
}

/// The NBD server's base URL (`nbd://host:port`) from `--nbd` or the endpoints file.
fn nbd_base(target: &AdminTarget, nbd: Option<&str>) -> anyhow::Result<String> {
    if let Some(n) = nbd {
        return Ok(n.trim_end_matches('/').to_string());
    }
    let file: Value = serde_json::from_slice(
        &std::fs::read(&target.endpoints)
            .with_context(|| format!("reading {}", target.endpoints.display()))?,
    )?;
    file["nbd"]
        .as_str()
        .map(str::to_string)
        .context("the endpoints file names no NBD server; pass --nbd nbd://HOST:PORT")
}

fn print(v: &Value) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

/// Runs qemu-img; `capture` keeps its output (else it goes to the terminal: the progress bar).
async fn qemu_img_with(args: &[&str], capture: bool) -> anyhow::Result<Vec<u8>> {
    let out = tokio::process::Command::new("qemu-img")
        .args(args)
        .stdin(Stdio::null())
        .stdout(if capture {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("running qemu-img (apt-get install qemu-utils)")?;
    if !out.status.success() {
        bail!("qemu-img {} failed: {}", args.join(" "), out.status);
    }
    Ok(out.stdout)
}

async fn qemu_img(args: &[&str]) -> anyhow::Result<Vec<u8>> {
    qemu_img_with(args, true).await
}

/// The file's format and virtual size, as qemu-img sees them.
async fn probe(file: &Path) -> anyhow::Result<(String, u64)> {
    let path = file.to_str().context("file name is not UTF-8")?;
    let info: Value = serde_json::from_slice(&qemu_img(&["info", "--output=json", path]).await?)?;
    let format = info["format"].as_str().context("qemu-img gave no format")?;
    if format != "raw" && format != "qcow2" {
        bail!("{} is {format}; import takes raw or qcow2", file.display());
    }
    let size = info["virtual-size"]
        .as_u64()
        .context("qemu-img gave no size")?;
    Ok((format.to_string(), size))
}

pub async fn run(
    target: AdminTarget,
    nbd: Option<String>,
    cmd: ImageCommand,
) -> anyhow::Result<()> {
    let client = AdminClient::connect(&target).await?;
    match cmd {
        ImageCommand::Create { name, size, order } => print(
            &client
                .call(
                    "POST",
                    "images",
                    Some(json!({ "name": name, "size": size, "order": order })),
                )
                .await?,
        ),
        ImageCommand::Ls => print(&client.call("GET", "images", None).await?),
        ImageCommand::Info { name } => print(
            &client
                .call("GET", &format!("images/{}", enc(&name)), None)
                .await?,
        ),
        ImageCommand::Resize { name, size } => print(
            &client
                .call(
                    "PUT",
                    &format!("images/{}/size", enc(&name)),
                    Some(json!({ "size": size })),
                )
                .await?,
        ),
        ImageCommand::Rm { name } => print(
            &client
                .call("DELETE", &format!("images/{}", enc(&name)), None)
                .await?,
        ),
        ImageCommand::Snap { command } => {
            let (method, path, body) = match command {
                SnapCommand::Create { spec } => {
                    let (i, s) = split_spec(&spec)?;
                    let snap = percent_encoding::percent_decode_str(&s)
                        .decode_utf8_lossy()
                        .into_owned();
                    (
                        "POST",
                        format!("images/{i}/snapshots"),
                        Some(json!({ "name": snap })),
                    )
                }
                SnapCommand::Ls { image } => {
                    ("GET", format!("images/{}/snapshots", enc(&image)), None)
                }
                SnapCommand::Rm { spec } => {
                    let (i, s) = split_spec(&spec)?;
                    ("DELETE", format!("images/{i}/snapshots/{s}"), None)
                }
                SnapCommand::Rollback { spec } => {
                    let (i, s) = split_spec(&spec)?;
                    ("POST", format!("images/{i}/snapshots/{s}/rollback"), None)
                }
                SnapCommand::Protect { spec } => {
                    let (i, s) = split_spec(&spec)?;
                    ("PUT", format!("images/{i}/snapshots/{s}/protection"), None)
                }
                SnapCommand::Unprotect { spec } => {
                    let (i, s) = split_spec(&spec)?;
                    (
                        "DELETE",
                        format!("images/{i}/snapshots/{s}/protection"),
                        None,
                    )
                }
            };
            print(&client.call(method, &path, body).await?)
        }
        ImageCommand::Clone { source, name } => {
            let (i, s) = split_spec(&source)?;
            let snap = percent_encoding::percent_decode_str(&s)
                .decode_utf8_lossy()
                .into_owned();
            print(
                &client
                    .call(
                        "POST",
                        &format!("images/{i}/clone"),
                        Some(json!({ "snapshot": snap, "name": name })),
                    )
                    .await?,
            )
        }
        ImageCommand::Flatten { name } => print(
            &client
                .call("POST", &format!("images/{}/flatten", enc(&name)), None)
                .await?,
        ),
        ImageCommand::Diff {
            name,
            from_snap,
            to_snap,
        } => {
            let mut q = Vec::new();
            if let Some(f) = from_snap {
                q.push(format!("from={}", enc(&f)));
            }
            if let Some(t) = to_snap {
                q.push(format!("to={}", enc(&t)));
            }
            print(
                &client
                    .call(
                        "GET",
                        &format!("images/{}/diff?{}", enc(&name), q.join("&")),
                        None,
                    )
                    .await?,
            )
        }
        ImageCommand::Import { file, name } => {
            let base = nbd_base(&target, nbd.as_deref())?;
            let (format, size) = probe(&file).await?;
            let size = size.div_ceil(512) * 512;
            client
                .call(
                    "POST",
                    "images",
                    Some(json!({ "name": name, "size": size })),
                )
                .await?;
            let path = file.to_str().context("file name is not UTF-8")?;
            qemu_img_with(
                &[
                    "convert",
                    "-p",
                    "-n",
                    "-f",
                    &format,
                    "-O",
                    "raw",
                    "-W",
                    "-m",
                    "8",
                    path,
                    &format!("{base}/{name}"),
                ],
                false,
            )
            .await?;
            print(
                &client
                    .call("GET", &format!("images/{}", enc(&name)), None)
                    .await?,
            )
        }
        ImageCommand::Export { name, file, format } => {
            if format != "raw" && format != "qcow2" {
                bail!("--format must be raw or qcow2");
            }
            let base = nbd_base(&target, nbd.as_deref())?;
            let path = file.to_str().context("file name is not UTF-8")?;
            qemu_img_with(
                &[
                    "convert",
                    "-p",
                    "-f",
                    "raw",
                    "-O",
                    &format,
                    "-m",
                    "8",
                    &format!("{base}/{name}"),
                    path,
                ],
                false,
            )
            .await?;
            Ok(())
        }
    }
}
