//! Text rendering of reports; JSON output is the serde form of the same structs.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;

use std::time::Instant;

use cairn_ring::{
    AssignmentReport, DeviceReport, PartitionRing, RebalanceOptions, RebalanceOutcome, RingBuilder,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// The headline figures of a builder or ring.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub kind: &'static str,
    pub version: u64,
    pub part_power: u8,
    pub partitions: u32,
    pub replicas: f64,
    pub regions: usize,
    pub zones: usize,
    pub nodes: usize,
    pub devices: usize,
    /// Percent: the largest deviation of any device from its weight share.
    pub balance: f64,
    /// Percent of partition-replicas beyond what their failure domains should hold.
    pub dispersion: f64,
    pub worst_tier: Option<String>,
    pub min_part_hours: Option<u32>,
    /// Percent.
    pub overload: Option<f64>,
    /// Percent of overload full dispersion would need.
    pub required_overload: Option<f64>,
    pub unassigned: u64,
    pub ring_file_up_to_date: Option<bool>,
    /// Devices or parameters changed since the last rebalance.
    pub changed_since_rebalance: Option<bool>,
    /// Why the builder's ring file could not be read, if it exists but could not.
    pub ring_file_problem: Option<String>,
}

impl Summary {
    pub fn of_builder(
        b: &RingBuilder,
        r: &AssignmentReport,
        required_overload: f64,
        ring_current: Option<bool>,
    ) -> Self {
        let mut s = Self::common("builder", b.version(), b.part_power(), b.replicas(), r);
        s.min_part_hours = Some(b.min_part_hours());
        s.overload = Some(b.overload() * 100.0);
        s.required_overload = Some(required_overload * 100.0);
        s.ring_file_up_to_date = ring_current;
        s.changed_since_rebalance = Some(b.is_dirty());
        s
    }

    pub fn of_ring(ring: &PartitionRing, r: &AssignmentReport) -> Self {
        Self::common(
            "ring",
            ring.version(),
            ring.part_power(),
            ring.replicas(),
            r,
        )
    }

    fn common(
        kind: &'static str,
        version: u64,
        part_power: u8,
        replicas: f64,
        r: &AssignmentReport,
    ) -> Self {
        let devs = || r.devices.iter().map(|d| &d.device);
        Self {
            kind,
            version,
            part_power,
            partitions: 1 << part_power,
            replicas,
            regions: devs().map(|d| d.region).collect::<BTreeSet<_>>().len(),
            zones: devs()
                .map(|d| (d.region, d.zone))
                .collect::<BTreeSet<_>>()
                .len(),
            nodes: devs()
                .map(|d| (d.region, d.zone, d.ip.as_str()))
                .collect::<BTreeSet<_>>()
                .len(),
            devices: r.devices.len(),
            balance: r.balance,
            dispersion: r.dispersion,
            worst_tier: r.worst_tier.clone(),
            min_part_hours: None,
            overload: None,
            required_overload: None,
            unassigned: r.unassigned,
            ring_file_up_to_date: None,
            changed_since_rebalance: None,
            ring_file_problem: None,
        }
    }
}

pub fn show(path: &Path, s: &Summary, r: &AssignmentReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({} file), version {}",
        path.display(),
        s.kind,
        s.version
    );
    let _ = writeln!(
        out,
        "{} partitions, {:.6} replicas, {} regions, {} zones, {} nodes, {} devices, {:.2} balance, {:.2} dispersion",
        s.partitions, s.replicas, s.regions, s.zones, s.nodes, s.devices, s.balance, s.dispersion
    );
    if let Some(h) = s.min_part_hours {
        let _ = writeln!(
            out,
            "The minimum number of hours before a partition can be reassigned is {h}"
        );
    }
    if let (Some(o), Some(req)) = (s.overload, s.required_overload) {
        let _ = writeln!(
            out,
            "The overload factor is {o:.2}% (required for full dispersion: {req:.2}%)"
        );
    }
    if s.changed_since_rebalance == Some(true) {
        out.push_str("Devices or parameters changed since the last rebalance: run rebalance\n");
    }
    if s.unassigned > 0 {
        let _ = writeln!(
            out,
            "{} partition-replicas are unassigned: run rebalance",
            s.unassigned
        );
    }
    if let Some(problem) = &s.ring_file_problem {
        let _ = writeln!(out, "The ring file is unusable: {problem}");
    }
    match s.ring_file_up_to_date {
        Some(true) => out.push_str("The ring file is up to date\n"),
        Some(false) => {
            out.push_str("The ring file is out of date: run write-ring (or rebalance)\n")
        }
        None if s.kind == "builder" && s.ring_file_problem.is_none() => {
            out.push_str("No ring file yet: run rebalance\n")
        }
        None => {}
    }
    out.push_str(&devices_table(r.devices.iter()));
    out
}

pub fn devices_table<'a>(devices: impl Iterator<Item = &'a DeviceReport>) -> String {
    let mut out = String::from(
        "Devices:    id region zone      ip address:port  replication ip:port     name   weight partitions  balance flags meta\n",
    );
    for d in devices {
        let dev = &d.device;
        let _ = writeln!(
            out,
            "         {:>5} {:>6} {:>4} {:>21} {:>20} {:>8} {:>8.2} {:>10} {:>8.2} {:>5} {}",
            dev.id,
            dev.region,
            dev.zone,
            format!("{}:{}", dev.ip, dev.port),
            format!("{}:{}", dev.replication_ip, dev.replication_port),
            dev.device,
            dev.weight,
            d.partitions,
            d.balance,
            if d.pending_removal { "DEL" } else { "" },
            dev.meta
        );
    }
    out.trim_end().to_string()
}

pub fn dispersion(r: &AssignmentReport, verbose: bool) -> String {
    let mut out = format!("Dispersion is {:.6}", r.dispersion);
    match &r.worst_tier {
        Some(t) => {
            let _ = write!(out, "; worst tier is {t}");
        }
        None => out.push_str("; every partition is as spread out as the topology allows"),
    }
    out.push('\n');
    for level in cairn_ring::TierLevel::ALL {
        let tiers: Vec<_> = r.tiers.iter().filter(|t| t.level == level).collect();
        let worst = tiers.iter().map(|t| t.dispersion).fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "  {:<7} {:>6} tiers, worst {:.4}%",
            level.name(),
            tiers.len(),
            worst
        );
    }
    if verbose {
        let width = r.tiers.first().map_or(0, |t| t.replicas.len());
        let _ = write!(
            out,
            "{:<40} {:>10} {:>8} {:>4}",
            "Tier", "Placed", "%", "Max"
        );
        for n in 0..width {
            let _ = write!(out, " {n:>8}");
        }
        out.push('\n');
        for t in &r.tiers {
            let _ = write!(
                out,
                "{:<40} {:>10} {:>8.2} {:>4}",
                t.tier, t.placed, t.dispersion, t.max_replicas
            );
            for c in &t.replicas {
                let _ = write!(out, " {c:>8}");
            }
            out.push('\n');
        }
    }
    out.trim_end().to_string()
}

/// Prints a line to stdout. A closed stdout (`ring-tool ... | head`) ends the output quietly
/// instead of panicking.
pub fn print(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// Rebalances now with `seed`, showing a progress bar on a terminal; returns what it did and
/// how many seconds it took.
pub fn rebalance_with_progress_bar(
    b: &mut RingBuilder,
    seed: u64,
) -> cairn_ring::Result<(RebalanceOutcome, f64)> {
    let bar = progress_bar(b.partitions());
    let started = Instant::now();
    let opts = RebalanceOptions {
        seed,
        now_minutes: crate::files::now_minutes(),
    };
    let outcome = b.rebalance_with_progress(opts, &mut |p| {
        if let Some(bar) = &bar {
            bar.set_length(u64::from(p.total));
            bar.set_position(u64::from(p.done));
            bar.set_message(p.stage);
        }
    })?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok((outcome, seconds))
}

/// A progress bar on a terminal for rebalances big enough to notice; none otherwise.
fn progress_bar(partitions: u32) -> Option<ProgressBar> {
    if partitions < (1 << 16) {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr());
    if bar.is_hidden() {
        return None;
    }
    if let Ok(style) =
        ProgressStyle::with_template("rebalancing [{bar:30}] {pos}/{len} {msg} ({elapsed})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}
