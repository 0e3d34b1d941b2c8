//! One function per builder-file command.

use std::path::Path;

use anyhow::{Context, Result, bail};
use cairn_ring::{Device, DeviceId, NewDevice, PartitionRing, PathHasher, RingBuilder};
use serde_json::json;

use crate::cli::{AddArgs, Command, EXIT_WARNING, LookupArgs};
use crate::devspec::{self, DeviceFilter};
use crate::files::{self, RingFile};
use crate::render;

/// Balance above this (percent) makes `rebalance` exit with a warning, as Swift does.
const BALANCE_WARNING_PERCENT: f64 = 5.0;

pub fn run(path: &Path, command: Command, json: bool) -> Result<u8> {
    match command {
        Command::Create {
            part_power,
            replicas,
            min_part_hours,
            force,
        } => {
            if path.exists() && !force {
                bail!(
                    "{} already exists: pass --force to overwrite it (its assignment would be lost)",
                    path.display()
                );
            }
            let b = RingBuilder::new(part_power, replicas, min_part_hours)?;
            // Overwriting with --force keeps the old builder in backups/.
            files::backup(path)?;
            files::write_atomic(path, &b.to_bytes()?)?;
            emit(
                json,
                &json!({"created": path, "part_power": part_power, "replicas": replicas,
                "min_part_hours": min_part_hours}),
                || {
                    format!(
                        "Created {} with 2^{part_power} partitions, {replicas} replicas, min_part_hours {min_part_hours}",
                        path.display()
                    )
                },
            );
            Ok(0)
        }
        Command::Add(args) => edit(path, json, |b| add(b, args)),
        Command::Remove { search, yes } => edit(path, json, |b| {
            let mut removed = Vec::new();
            for s in &search {
                for id in select(b, s, yes)? {
                    if !removed.contains(&id) {
                        b.remove_device(id)?;
                        removed.push(id);
                    }
                }
            }
            Ok((
                json!({"marked_for_removal": removed}),
                format!(
                    "Marked {} device(s) for removal: {}. They keep their partitions until the next rebalance.",
                    removed.len(),
                    ids(&removed)
                ),
            ))
        }),
        Command::SetWeight { pairs, yes } => edit(path, json, |b| {
            let mut changed = Vec::new();
            for pair in pairs_of(&pairs, "set_weight <search-value> <weight>")? {
                let weight = devspec::parse_weight(pair.1)?;
                for id in select(b, pair.0, yes)? {
                    b.set_weight(id, weight)?;
                    changed.push(json!({"id": id, "weight": weight}));
                }
            }
            let n = changed.len();
            Ok((
                json!({"changed": changed}),
                format!("Set the weight of {n} device(s)."),
            ))
        }),
        Command::SetInfo { pairs, yes } => edit(path, json, |b| {
            let mut changed = Vec::new();
            for pair in pairs_of(
                &pairs,
                "set_info <search-value> <ip>:<port>/<device>_<meta>",
            )? {
                let info = devspec::parse_change(pair.1)?;
                let matched = select(b, pair.0, yes)?;
                if matched.len() > 1
                    && (info.ip.is_some() || info.port.is_some() || info.device.is_some())
                {
                    bail!(
                        "{:?} matches {} devices; an address or device name can only go to one",
                        pair.0,
                        matched.len()
                    );
                }
                for id in matched {
                    b.set_info(id, info.clone())?;
                    changed.push(id);
                }
            }
            Ok((
                json!({"changed": changed}),
                format!("Changed device(s) {}.", ids(&changed)),
            ))
        }),
        Command::SetOverload { overload } => edit(path, json, |b| {
            let value = parse_overload(&overload)?;
            b.set_overload(value)?;
            Ok((
                json!({"overload": value * 100.0}),
                format!(
                    "The overload factor is now {:.2}% ({value:.6}).",
                    value * 100.0
                ),
            ))
        }),
        Command::SetMinPartHours { hours } => edit(path, json, |b| {
            b.set_min_part_hours(hours);
            Ok((
                json!({"min_part_hours": hours}),
                format!(
                    "The minimum number of hours before a partition can be reassigned is now {hours}."
                ),
            ))
        }),
        Command::SetReplicas { replicas } => edit(path, json, |b| {
            b.set_replicas(replicas)?;
            Ok((
                json!({"replicas": replicas}),
                format!(
                    "The replica count is now {replicas}; run rebalance to place or drop replicas."
                ),
            ))
        }),
        Command::PretendMinPartHoursPassed => edit(path, json, |b| {
            b.pretend_min_part_hours_passed();
            Ok((
                json!({"reset": true}),
                "Every partition may move at the next rebalance.".to_string(),
            ))
        }),
        Command::Rebalance { seed, force: _ } => rebalance(path, seed, json),
        Command::Show => show(path, json),
        Command::Search { search } => {
            let b = files::load_builder(path)?;
            let filter = devspec::parse_search(&search)?;
            let report = b.report();
            let found: Vec<_> = report
                .devices
                .iter()
                .filter(|d| filter.matches(&d.device))
                .collect();
            if found.is_empty() {
                bail!("no device matches {search:?}");
            }
            emit(json, &json!({"devices": found}), || {
                render::devices_table(found.iter().copied())
            });
            Ok(0)
        }
        Command::Validate => validate(path, json),
        Command::Dispersion { verbose } => {
            let report = match files::load_any(path)? {
                RingFile::Builder(b) => b.report(),
                RingFile::Ring(r) => r.report(),
            };
            emit(
                json,
                &json!({"dispersion": report.dispersion, "worst_tier": report.worst_tier,
                "tiers": report.tiers}),
                || render::dispersion(&report, verbose),
            );
            Ok(if report.dispersion > 0.0 {
                EXIT_WARNING
            } else {
                0
            })
        }
        Command::WriteRing { output } => {
            let b = files::load_builder(path)?;
            let out = output.unwrap_or_else(|| files::ring_path_for(path));
            let ring = PartitionRing::compile(&b)?;
            files::write_atomic(&out, &ring.to_bytes()?)?;
            emit(
                json,
                &json!({"ring_file": out, "version": ring.version()}),
                || format!("Wrote {} (version {}).", out.display(), ring.version()),
            );
            Ok(0)
        }
        Command::Lookup(args) => lookup(path, &args, json),
        Command::Publish {
            etcd,
            meta_dir,
            kind,
        } => publish(path, etcd, meta_dir, &kind, json),
        Command::Simulate(_) => {
            bail!("simulate takes no builder file: ring-tool simulate [OPTIONS]")
        }
    }
}

/// Loads the builder, applies a change, saves it, and prints what changed.
fn edit(
    path: &Path,
    json: bool,
    change: impl FnOnce(&mut RingBuilder) -> Result<(serde_json::Value, String)>,
) -> Result<u8> {
    let mut b = files::load_builder(path)?;
    let (value, text) = change(&mut b)?;
    files::write_atomic(path, &b.to_bytes()?)?;
    emit(json, &value, || text);
    Ok(0)
}

fn emit(json: bool, value: &serde_json::Value, text: impl FnOnce() -> String) {
    if json {
        render::print(&serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into()));
    } else {
        render::print(&text());
    }
}

fn ids(ids: &[DeviceId]) -> String {
    ids.iter()
        .map(|i| format!("d{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pairs_of<'a>(args: &'a [String], usage: &str) -> Result<Vec<(&'a str, &'a str)>> {
    if !args.len().is_multiple_of(2) {
        bail!("arguments come in pairs: {usage}");
    }
    Ok(args
        .chunks(2)
        .map(|c| (c[0].as_str(), c[1].as_str()))
        .collect())
}

/// Devices matching a search value; several only with `--yes`.
fn select(b: &RingBuilder, search: &str, yes: bool) -> Result<Vec<DeviceId>> {
    let filter: DeviceFilter = devspec::parse_search(search)?;
    let found: Vec<DeviceId> = b
        .devices()
        .filter(|d| filter.matches(d))
        .map(|d| d.id)
        .collect();
    match found.len() {
        0 => bail!("no device matches {search:?}: see `ring-tool <builder> show`"),
        1 => Ok(found),
        _ if yes => Ok(found),
        n => bail!(
            "{search:?} matches {n} devices ({}): pass --yes to apply to all of them",
            ids(&found)
        ),
    }
}

fn parse_overload(text: &str) -> Result<f64> {
    let (number, percent) = match text.strip_suffix('%') {
        Some(n) => (n, true),
        None => (text, false),
    };
    let v: f64 = number
        .trim()
        .parse()
        .with_context(|| format!("overload {text:?} is not a number"))?;
    Ok(if percent { v / 100.0 } else { v })
}

fn add(b: &mut RingBuilder, args: AddArgs) -> Result<(serde_json::Value, String)> {
    let mut new: Vec<NewDevice> = Vec::new();
    let options_given = args.ip.is_some()
        || args.device.is_some()
        || args.zone.is_some()
        || args.region.is_some()
        || args.port.is_some()
        || args.weight.is_some()
        || args.meta.is_some()
        || args.id.is_some()
        || args.replication_ip.is_some()
        || args.replication_port.is_some();
    if options_given {
        if !args.pairs.is_empty() {
            bail!(
                "give devices either as <device> <weight> pairs or with --ip/--port/..., not both"
            );
        }
        let missing =
            |f: &str| anyhow::anyhow!("--{f} is required when adding a device with options");
        new.push(NewDevice {
            id: args.id,
            region: args.region.unwrap_or(1),
            zone: args.zone.ok_or_else(|| missing("zone"))?,
            ip: args.ip.ok_or_else(|| missing("ip"))?,
            port: args.port.ok_or_else(|| missing("port"))?,
            replication_ip: args.replication_ip,
            replication_port: args.replication_port,
            device: args.device.ok_or_else(|| missing("device"))?,
            weight: args.weight.ok_or_else(|| missing("weight"))?,
            meta: args.meta.unwrap_or_default(),
        });
    } else {
        if args.pairs.is_empty() {
            bail!(
                "nothing to add: ring-tool <builder> add r1z1-127.0.0.1:6200/sda 100 [<device> <weight> ...]"
            );
        }
        for (spec, weight) in
            pairs_of(&args.pairs, "add <device> <weight> [<device> <weight> ...]")?
        {
            new.push(devspec::parse_add(spec, devspec::parse_weight(weight)?)?);
        }
    }
    let mut added = Vec::new();
    let mut lines = Vec::new();
    for d in new {
        let id = b.add_device(d)?;
        if let Some(dev) = b.device(id) {
            lines.push(format!(
                "Device d{id} {}_{:?} with {} weight got id {id}",
                dev.address(),
                dev.meta,
                dev.weight
            ));
            added.push(dev.clone());
        }
    }
    Ok((json!({"added": added}), lines.join("\n")))
}

fn rebalance(path: &Path, seed: Option<u64>, json: bool) -> Result<u8> {
    let mut b = files::load_builder(path)?;
    let seed = seed.unwrap_or(b.version());
    let (outcome, seconds) = render::rebalance_with_progress_bar(&mut b, seed)?;
    let ring = PartitionRing::compile(&b)?;
    let ring_path = files::ring_path_for(path);
    files::backup(path)?;
    files::write_atomic(path, &b.to_bytes()?)?;
    files::write_atomic(&ring_path, &ring.to_bytes()?)?;
    let report = ring.report();
    let slots = f64::from(b.partitions()) * b.replicas();
    let moved_percent = 100.0 * outcome.moved as f64 / slots;
    emit(
        json,
        &json!({
            "moved": outcome.moved, "moved_percent": moved_percent, "assigned": outcome.assigned,
            "removed_devices": outcome.removed_devices, "balance": report.balance,
            "dispersion": report.dispersion, "seconds": seconds, "seed": seed,
            "ring_file": ring_path, "version": ring.version(),
        }),
        || {
            let mut s = format!(
                "Reassigned {} ({moved_percent:.2}%) partition-replicas, assigned {} new. \
             Balance is now {:.2}. Dispersion is now {:.2}.\nWrote {} (version {}) in {seconds:.3}s.",
                outcome.moved,
                outcome.assigned,
                report.balance,
                report.dispersion,
                ring_path.display(),
                ring.version()
            );
            if !outcome.removed_devices.is_empty() {
                s.push_str(&format!(
                    "\nRemoved device(s) {}.",
                    ids(&outcome.removed_devices)
                ));
            }
            if report.balance > BALANCE_WARNING_PERCENT {
                s.push_str(&format!(
                    "\nNOTE: balance {:.2} means more should move: push this ring, wait at least \
                {} hour(s) (min_part_hours), and rebalance again.",
                    report.balance,
                    b.min_part_hours()
                ));
            }
            if report.dispersion > 0.0 {
                s.push_str(
                    "\nNOTE: dispersion is above 0: see `ring-tool <builder> dispersion -v`.",
                );
            }
            s
        },
    );
    let nothing = outcome.moved == 0 && outcome.assigned == 0 && outcome.removed_devices.is_empty();
    Ok(
        if nothing || report.balance > BALANCE_WARNING_PERCENT || report.dispersion > 0.0 {
            EXIT_WARNING
        } else {
            0
        },
    )
}

fn show(path: &Path, json: bool) -> Result<u8> {
    match files::load_any(path)? {
        RingFile::Builder(b) => {
            let report = b.report();
            let ring_path = files::ring_path_for(path);
            // Missing is normal before the first rebalance; unreadable is worth saying.
            let (ring_current, ring_problem) = match std::fs::read(&ring_path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
                Err(e) => (
                    None,
                    Some(format!("cannot read {}: {e}", ring_path.display())),
                ),
                Ok(bytes) => match PartitionRing::from_bytes(&bytes) {
                    Ok(r) => (Some(r.version() == b.version()), None),
                    Err(e) => (
                        None,
                        Some(format!("{} cannot be loaded: {e}", ring_path.display())),
                    ),
                },
            };
            let mut summary =
                render::Summary::of_builder(&b, &report, b.required_overload(), ring_current);
            summary.ring_file_problem = ring_problem;
            emit(
                json,
                &json!({"file": path, "summary": summary, "devices": report.devices}),
                || render::show(path, &summary, &report),
            );
        }
        RingFile::Ring(r) => {
            let report = r.report();
            let summary = render::Summary::of_ring(&r, &report);
            emit(
                json,
                &json!({"file": path, "summary": summary, "devices": report.devices}),
                || render::show(path, &summary, &report),
            );
        }
    }
    Ok(0)
}

fn validate(path: &Path, json: bool) -> Result<u8> {
    let (kind, problems) = match files::load_any(path)? {
        RingFile::Ring(r) => (
            "ring",
            r.validate()
                .err()
                .map(|e| e.to_string())
                .into_iter()
                .collect::<Vec<_>>(),
        ),
        RingFile::Builder(b) => {
            let mut problems: Vec<String> = Vec::new();
            if let Err(e) = b.validate(true) {
                problems.push(e.to_string());
            }
            let pending: Vec<DeviceId> = b
                .devices()
                .filter(|d| b.is_pending_removal(d.id))
                .map(|d| d.id)
                .collect();
            if !pending.is_empty() {
                problems.push(format!(
                    "device(s) {} are marked for removal: run rebalance",
                    ids(&pending)
                ));
            }
            ("builder", problems)
        }
    };
    emit(
        json,
        &json!({"kind": kind, "valid": problems.is_empty(), "problems": problems}),
        || {
            if problems.is_empty() {
                format!("{} is a valid {kind} file.", path.display())
            } else {
                format!(
                    "{} has problems:\n  {}",
                    path.display(),
                    problems.join("\n  ")
                )
            }
        },
    );
    if problems.is_empty() {
        Ok(0)
    } else {
        bail!("validation failed")
    }
}

fn lookup(path: &Path, args: &LookupArgs, json: bool) -> Result<u8> {
    let ring = match files::load_any(path)? {
        RingFile::Ring(r) => r,
        RingFile::Builder(b) => PartitionRing::compile(&b)?,
    };
    let (name, part) = match args.partition {
        Some(p) => {
            if p >= ring.partitions() {
                bail!(
                    "partition {p} is out of range: this ring has {} partitions",
                    ring.partitions()
                );
            }
            (None, p)
        }
        None => {
            let path_name = match args.name.as_slice() {
                [one] if one.starts_with('/') => one.clone(),
                [] => bail!("give a name (/account/container/object) or --partition N"),
                parts => {
                    let account = parts[0].as_str();
                    PathHasher::path_of(
                        account,
                        parts.get(1).map(String::as_str),
                        parts.get(2).map(String::as_str),
                    )
                }
            };
            let (Some(prefix), Some(suffix)) = (&args.hash_prefix, &args.hash_suffix) else {
                bail!(
                    "a name lookup needs the cluster's --hash-prefix and --hash-suffix \
                       (or CAIRN_HASH_PREFIX / CAIRN_HASH_SUFFIX)"
                );
            };
            let hasher = PathHasher::new(prefix, suffix);
            let part = ring.partition_for(&hasher, &path_name);
            (Some(path_name), part)
        }
    };
    let primaries: Vec<&Device> = ring.primaries(part).collect();
    let handoffs: Vec<&Device> = ring.handoffs(part)?.take(args.handoffs).collect();
    emit(
        json,
        &json!({"name": name, "partition": part, "primaries": primaries, "handoffs": handoffs}),
        || {
            let mut s = String::new();
            if let Some(n) = &name {
                s.push_str(&format!("Name       {n}\n"));
            }
            s.push_str(&format!("Partition  {part}\n"));
            for (i, d) in primaries.iter().enumerate() {
                s.push_str(&format!("Primary {i}  d{:<5} {}\n", d.id, d.address()));
            }
            for (i, d) in handoffs.iter().enumerate() {
                s.push_str(&format!("Handoff {i}  d{:<5} {}\n", d.id, d.address()));
            }
            s.trim_end().to_string()
        },
    );
    Ok(0)
}

/// Publishes a ring to the control-plane store (`cairn_meta::rings`), from a ring file or a
/// builder compiled on the spot.
fn publish(
    path: &Path,
    etcd: Vec<String>,
    meta_dir: Option<std::path::PathBuf>,
    kind: &str,
    json: bool,
) -> Result<u8> {
    let ring = match files::load_any(path)? {
        RingFile::Ring(r) => r,
        RingFile::Builder(b) => PartitionRing::compile(&b)?,
    };
    let bytes = ring.to_bytes()?;
    let config = match meta_dir {
        Some(dir) => cairn_meta::MetaConfig::Embedded { dir },
        None => cairn_meta::MetaConfig::Etcd(cairn_meta::EtcdConfig {
            endpoints: etcd,
            op_timeout_ms: 5_000,
            connect_timeout_ms: 5_000,
        }),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = cairn_meta::AnyMetaStore::open(&config).await?;
        cairn_meta::rings::publish_ring(&store, kind, ring.version(), &bytes).await?;
        anyhow::Ok(())
    })?;
    emit(
        json,
        &json!({"published": kind, "version": ring.version(), "bytes": bytes.len()}),
        || {
            format!(
                "Published {kind} ring version {} ({} bytes).",
                ring.version(),
                bytes.len()
            )
        },
    );
    Ok(0)
}
