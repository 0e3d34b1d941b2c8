//! `ring-tool simulate`: a synthetic topology, rebalanced, to see quality and speed at scale.

// Synthetic sizes come from u32 topology arguments; the float figures are for display.
#![allow(clippy::cast_possible_truncation)]

use std::time::Instant;

use anyhow::{Result, bail};
use cairn_ring::{NewDevice, PartitionRing, PathHasher, RingBuilder};
use serde::Serialize;

use crate::cli::{EXIT_WARNING, SimulateArgs};
use crate::files;
use crate::render;

#[derive(Debug, Serialize)]
struct Phase {
    devices: usize,
    seconds: f64,
    moved: u64,
    assigned: u64,
    /// Partition-replicas the change had to move at least (the new devices' weight share).
    ideal_moved: u64,
    balance: f64,
    dispersion: f64,
}

#[derive(Debug, Serialize)]
struct Simulation {
    part_power: u8,
    partitions: u32,
    replicas: f64,
    regions: u32,
    zones_per_region: u32,
    nodes_per_zone: u32,
    devices_per_node: u32,
    first: Phase,
    grow: Option<Phase>,
    lookup_ns: Option<f64>,
}

/// A tiny seeded generator for weight jitter and names (the tool's own, not the ring's).
struct Lcg(u64);

impl Lcg {
    fn next_unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub fn run(a: &SimulateArgs, json: bool) -> Result<u8> {
    let total = [a.regions, a.zones, a.nodes, a.devices]
        .into_iter()
        .fold(1u64, |acc, n| acc.saturating_mul(u64::from(n)));
    if total == 0 {
        bail!(
            "the topology is empty: --regions, --zones, --nodes and --devices must be at least 1"
        );
    }
    if a.grow < 0.0 || !a.grow.is_finite() {
        bail!("--grow is a percentage >= 0");
    }
    // Bounded by the ring's device limit (growth included), so no count below overflows.
    let max = cairn_ring::limits::DEVICES_MAX as f64;
    if total as f64 * (1.0 + a.grow / 100.0) > max {
        bail!(
            "{total} devices, plus {}% growth, is more than a ring holds ({max})",
            a.grow
        );
    }
    let mut rng = Lcg(a.seed);
    let mut b = RingBuilder::new(a.part_power, a.replicas, 0)?;
    b.set_overload(a.overload)?;
    let mut next_node = vec![0u32; (a.regions * a.zones) as usize];
    let mut add_node = |b: &mut RingBuilder, rng: &mut Lcg, r: u32, z: u32| -> Result<()> {
        let zi = (r * a.zones + z) as usize;
        let n = next_node[zi];
        next_node[zi] += 1;
        let ip = if n < 256 && z < 256 && r < 256 {
            format!("10.{r}.{z}.{n}")
        } else {
            format!("node-r{r}-z{z}-n{n}")
        };
        for dev in 0..a.devices {
            let jitter = 1.0 + a.weight_jitter / 100.0 * (2.0 * rng.next_unit() - 1.0);
            b.add_device(NewDevice {
                id: None,
                region: r + 1,
                zone: z + 1,
                ip: ip.clone(),
                port: 6200,
                replication_ip: None,
                replication_port: None,
                device: format!("d{dev}"),
                weight: (a.weight * jitter).max(0.0),
                meta: String::new(),
            })?;
        }
        Ok(())
    };
    for r in 0..a.regions {
        for z in 0..a.zones {
            for _ in 0..a.nodes {
                add_node(&mut b, &mut rng, r, z)?;
            }
        }
    }
    let first = phase(&mut b, a.seed, 0)?;

    let grow = if a.grow > 0.0 {
        let weight_before: f64 = b.devices().map(|d| d.weight).sum();
        let new_nodes = ((total as f64 * a.grow / 100.0) / f64::from(a.devices)).ceil() as u64;
        let zones = u64::from(a.regions * a.zones);
        for i in 0..new_nodes {
            let zi = (i % zones) as u32;
            add_node(&mut b, &mut rng, zi / a.zones, zi % a.zones)?;
        }
        let weight_after: f64 = b.devices().map(|d| d.weight).sum();
        let slots = f64::from(b.partitions()) * b.replicas();
        let ideal = (slots * (weight_after - weight_before) / weight_after).round() as u64;
        Some(phase(&mut b, a.seed.wrapping_add(1), ideal)?)
    } else {
        None
    };

    let lookup_ns = if a.lookups > 0 {
        Some(time_lookups(&b, a.lookups)?)
    } else {
        None
    };
    if let Some(out) = &a.output {
        files::write_atomic(out, &b.to_bytes()?)?;
    }
    let sim = Simulation {
        part_power: a.part_power,
        partitions: b.partitions(),
        replicas: a.replicas,
        regions: a.regions,
        zones_per_region: a.zones,
        nodes_per_zone: a.nodes,
        devices_per_node: a.devices,
        first,
        grow,
        lookup_ns,
    };
    let worst_dispersion = sim
        .first
        .dispersion
        .max(sim.grow.as_ref().map_or(0.0, |g| g.dispersion));
    if json {
        render::print(&serde_json::to_string_pretty(&sim)?);
    } else {
        print_text(&sim);
    }
    Ok(if worst_dispersion > 0.0 {
        EXIT_WARNING
    } else {
        0
    })
}

fn phase(b: &mut RingBuilder, seed: u64, ideal_moved: u64) -> Result<Phase> {
    let (outcome, seconds) = render::rebalance_with_progress_bar(b, seed)?;
    let report = b.report();
    Ok(Phase {
        devices: b.devices().count(),
        seconds,
        moved: outcome.moved,
        assigned: outcome.assigned,
        ideal_moved,
        balance: report.balance,
        dispersion: report.dispersion,
    })
}

fn time_lookups(b: &RingBuilder, n: u64) -> Result<f64> {
    let ring = PartitionRing::compile(b)?;
    let hasher = PathHasher::new("simulate-prefix", "simulate-suffix");
    let names: Vec<String> = (0..1024)
        .map(|i| format!("/AUTH_account{}/container{}/object-{i}", i % 7, i % 31))
        .collect();
    let mut checksum = 0u64;
    let started = Instant::now();
    for i in 0..n {
        let name = &names[(i % names.len() as u64) as usize];
        let part = ring.partition_for(&hasher, name);
        for d in ring.primary_ids(part) {
            checksum = checksum.wrapping_add(u64::from(d));
        }
    }
    let elapsed = started.elapsed();
    // Keep the loop from being optimised away.
    std::hint::black_box(checksum);
    Ok(elapsed.as_nanos() as f64 / n as f64)
}

fn print_text(s: &Simulation) {
    render::print(&format!(
        "Topology: {} regions x {} zones x {} nodes x {} devices, 2^{} = {} partitions, {} replicas",
        s.regions,
        s.zones_per_region,
        s.nodes_per_zone,
        s.devices_per_node,
        s.part_power,
        s.partitions,
        s.replicas
    ));
    let line = |name: &str, p: &Phase| {
        render::print(&format!(
            "{name:<8} {:>6} devices  rebalance {:>8.3}s  balance {:>6.3}%  dispersion {:>6.3}%  moved {:>9}{}",
            p.devices,
            p.seconds,
            p.balance,
            p.dispersion,
            p.moved,
            if p.ideal_moved > 0 {
                format!(
                    " (ideal {}, {:.3}x)",
                    p.ideal_moved,
                    p.moved as f64 / p.ideal_moved as f64
                )
            } else {
                String::new()
            }
        ));
    };
    line("initial", &s.first);
    if let Some(g) = &s.grow {
        line("grown", g);
    }
    if let Some(ns) = s.lookup_ns {
        render::print(&format!("lookup   {ns:.1} ns per name (hash + primaries)"));
    }
}
