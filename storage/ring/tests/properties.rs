//! Property tests for the ring's invariants. Each failing case prints its inputs (proptest
//! shrinks them), and every rebalance takes an explicit seed, so a failure replays exactly.

// A panic in a test is a failed test, and test sizes are small.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

use std::collections::{HashMap, HashSet};

use cairn_ring::{NewDevice, PartitionRing, PathHasher, RebalanceOptions, RingBuilder, RingError};
use proptest::prelude::*;

/// Minutes since the epoch for "now" in these tests; any fixed value works.
const T0: u32 = 29_000_000;

#[derive(Debug, Clone)]
struct Topology {
    regions: u32,
    zones: u32,
    nodes: u32,
    devices: u32,
}

impl Topology {
    fn device_count(&self) -> u32 {
        self.regions * self.zones * self.nodes * self.devices
    }
}

fn new_device(region: u32, zone: u32, node: u32, dev: u32, weight: f64) -> NewDevice {
    NewDevice {
        id: None,
        region,
        zone,
        ip: format!("10.{region}.{zone}.{node}"),
        port: 6200,
        replication_ip: None,
        replication_port: None,
        device: format!("d{dev}"),
        weight,
        meta: String::new(),
    }
}

fn build(
    t: &Topology,
    part_power: u8,
    replicas: f64,
    mph: u32,
    weight: impl Fn(u32) -> f64,
) -> RingBuilder {
    let mut b = RingBuilder::new(part_power, replicas, mph).unwrap();
    let mut i = 0;
    for r in 1..=t.regions {
        for z in 1..=t.zones {
            for n in 0..t.nodes {
                for d in 0..t.devices {
                    b.add_device(new_device(r, z, n, d, weight(i))).unwrap();
                    i += 1;
                }
            }
        }
    }
    b
}

fn opts(seed: u64, now: u32) -> RebalanceOptions {
    RebalanceOptions {
        seed,
        now_minutes: now,
    }
}

/// Symmetric topologies with at least as many devices as replicas.
fn symmetric() -> impl Strategy<Value = (Topology, f64)> {
    (
        1u32..=3,
        1u32..=4,
        1u32..=4,
        1u32..=3,
        prop::sample::select(vec![1.0, 2.0, 3.0, 2.5]),
    )
        .prop_filter("enough devices", |(r, z, n, d, reps)| {
            f64::from(r * z * n * d) >= *reps
        })
        .prop_map(|(regions, zones, nodes, devices, replicas)| {
            (
                Topology {
                    regions,
                    zones,
                    nodes,
                    devices,
                },
                replicas,
            )
        })
}

/// Which device each replica of every partition is on.
fn placements(b: &RingBuilder) -> Vec<Vec<u16>> {
    let rows = b.row_lengths();
    (0..b.partitions())
        .map(|p| (0..rows.len()).filter_map(|r| b.assigned(r, p)).collect())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Every partition-replica is assigned, to distinct devices, and with equal weights on a
    /// symmetric topology no failure domain holds more replicas of a partition than it must.
    #[test]
    fn symmetric_rings_are_complete_balanced_and_dispersed(
        (topo, replicas) in symmetric(), part_power in 6u8..=10, seed in any::<u64>()
    ) {
        let mut b = build(&topo, part_power, replicas, 1, |_| 100.0);
        b.rebalance(opts(seed, T0)).unwrap();
        b.validate(true).unwrap();
        let report = b.report();
        prop_assert_eq!(report.dispersion, 0.0, "worst tier {:?}", report.worst_tier);
        prop_assert_eq!(report.unassigned, 0);
        for d in &report.devices {
            // Integer quotas are apportioned level by level: each level can be off by < 1.
            prop_assert!((d.partitions as f64 - d.wanted).abs() < 4.0,
                "device {} has {} partitions, wants {:.2}", d.device.id, d.partitions, d.wanted);
        }
    }

    /// Uneven weights in one failure domain: every device gets its weight share.
    #[test]
    fn weights_are_honoured(
        nodes in 4u32..=12, devices in 1u32..=3, weights in prop::collection::vec(50.0f64..150.0, 36),
        part_power in 8u8..=10, seed in any::<u64>()
    ) {
        let topo = Topology { regions: 1, zones: 1, nodes, devices };
        let weight = |i: u32| weights[i as usize % weights.len()];
        let total: f64 = (0..topo.device_count()).map(weight).sum();
        let heaviest = (0..topo.device_count()).map(weight).fold(0.0, f64::max);
        // A device holds at most one replica of each partition: only then can weight rule.
        prop_assume!(heaviest * 3.0 / total <= 1.0);
        let mut b = build(&topo, part_power, 3.0, 0, weight);
        b.rebalance(opts(seed, T0)).unwrap();
        b.validate(true).unwrap();
        for d in &b.report().devices {
            prop_assert!((d.partitions as f64 - d.wanted).abs() < 3.0,
                "device {} has {} partitions, wants {:.2}", d.device.id, d.partitions, d.wanted);
        }
    }

    /// The same builder, seed and time give the same ring, byte for byte.
    #[test]
    fn rebalance_is_deterministic((topo, replicas) in symmetric(), seed in any::<u64>()) {
        let mut a = build(&topo, 8, replicas, 1, |i| 50.0 + f64::from(i % 5) * 10.0);
        let mut b = a.clone();
        let oa = a.rebalance(opts(seed, T0)).unwrap();
        let ob = b.rebalance(opts(seed, T0)).unwrap();
        prop_assert_eq!(oa, ob);
        prop_assert_eq!(a.to_bytes().unwrap(), b.to_bytes().unwrap());
    }

    /// Adding one device of weight w moves about w / total of the partition-replicas (what
    /// balance requires), not more; a second rebalance with no change moves nothing.
    #[test]
    fn adding_a_device_moves_about_its_share(
        (topo, replicas) in symmetric(), new_weight in 20.0f64..200.0, seed in any::<u64>(),
        new_node in any::<bool>()
    ) {
        prop_assume!(topo.device_count() >= 3);
        let mut b = build(&topo, 10, replicas, 0, |_| 100.0);
        b.rebalance(opts(seed, T0)).unwrap();
        let idle = b.clone().rebalance(opts(seed ^ 1, T0)).unwrap();
        prop_assert_eq!(idle.moved, 0, "an unchanged ring must not move");

        let node = if new_node { topo.nodes } else { 0 };
        b.add_device(new_device(1, 1, node, 99, new_weight)).unwrap();
        let total: f64 = b.devices().map(|d| d.weight).sum();
        let slots = f64::from(b.partitions()) * replicas;
        let ideal = slots * new_weight / total;
        let out = b.rebalance(opts(seed, T0 + 1)).unwrap();
        b.validate(true).unwrap();
        // w/total is a lower bound. In these small topologies the new device's node can come
        // close to its one-replica-per-partition cap, and balance then needs two-hop chains (a
        // replica to a sibling, another onward), so allow 15%; realistic topologies stay
        // within 1% (`growing_a_realistic_ring_moves_its_share`, and bench/ring at scale).
        // Integer quotas can also round differently in each failure domain whose share
        // changed: about one move each at most.
        let domains = topo.regions * (1 + topo.zones * (1 + topo.nodes));
        prop_assert!(out.moved as f64 <= ideal * 1.15 + 16.0 + f64::from(domains),
            "moved {} for an ideal of {:.1}", out.moved, ideal);
        let new_dev = b.devices().find(|d| d.device == "d99").unwrap().clone();
        let got = b.partition_counts()[usize::from(new_dev.id)] as f64;
        // When a failure domain holding the device (its region, zone or node) must hold two
        // replicas of some partitions, which partitions get two is a global choice that
        // neither ring-tool nor swift-ring-builder makes well (both leave such a device a few
        // percent short); check the share where no domain on its path is that heavy.
        let domain_weight = |same: &dyn Fn(&cairn_ring::Device) -> bool| -> f64 {
            b.devices().filter(|d| same(d)).map(|d| d.weight).sum()
        };
        // A domain that is the whole ring, or whose replica target is a whole number, leaves
        // no such choice.
        let forces_choice = |w: f64| {
            let t = w * replicas / total;
            w < total - 1e-9 && t > 1.0 + 1e-9 && (t - t.round()).abs() > 1e-6
        };
        let heavy = [
            domain_weight(&|d| d.region == new_dev.region),
            domain_weight(&|d| d.region == new_dev.region && d.zone == new_dev.zone),
            domain_weight(&|d| d.same_node(&new_dev)),
        ]
        .into_iter()
        .any(forces_choice);
        if !heavy {
            // A device holds at most one replica of each partition.
            let wanted = ideal.min(f64::from(b.partitions()));
            prop_assert!((got - wanted).abs() <= wanted * 0.02 + 8.0,
                "new device got {} of {:.1} wanted", got, wanted);
        }
    }

    /// min_part_hours: nothing moves inside the window; afterwards at most one replica of a
    /// partition moves per rebalance, and a partition that moved is locked for the window.
    #[test]
    fn min_part_hours_is_respected(
        nodes in 3u32..=6, seed in any::<u64>(), mph in 1u32..=24
    ) {
        let topo = Topology { regions: 1, zones: 3, nodes, devices: 2 };
        let mut b = build(&topo, 8, 3.0, mph, |_| 100.0);
        b.rebalance(opts(seed, T0)).unwrap();
        b.add_device(new_device(1, 1, 50, 0, 300.0)).unwrap();
        let inside = b.clone().rebalance(opts(seed, T0 + mph * 60 - 1)).unwrap();
        prop_assert_eq!(inside.moved, 0, "moved inside the min_part_hours window");

        let before = placements(&b);
        let t1 = T0 + mph * 60;
        let out = b.rebalance(opts(seed, t1)).unwrap();
        prop_assert!(out.moved > 0);
        let after = placements(&b);
        let mut moved_parts = HashSet::new();
        for (p, (x, y)) in before.iter().zip(&after).enumerate() {
            let changed = x.iter().zip(y).filter(|(a, b)| a != b).count();
            prop_assert!(changed <= 1, "partition {} moved {} replicas at once", p, changed);
            if changed == 1 {
                moved_parts.insert(p);
            }
        }

        b.add_device(new_device(1, 2, 51, 0, 300.0)).unwrap();
        let before = placements(&b);
        b.rebalance(opts(seed, t1 + 1)).unwrap();
        for (p, (x, y)) in before.iter().zip(&placements(&b)).enumerate() {
            if moved_parts.contains(&p) {
                prop_assert_eq!(x, y, "partition {} moved twice within min_part_hours", p);
            }
        }
    }

    /// A removed device gives up all its partitions at once, even inside min_part_hours, and
    /// the other replicas of those partitions stay put.
    #[test]
    fn removal_moves_everything_off_the_device(
        (topo, replicas) in symmetric(), seed in any::<u64>(), victim_pick in any::<prop::sample::Index>()
    ) {
        prop_assume!(f64::from(topo.device_count()) >= replicas + 1.0);
        let mut b = build(&topo, 8, replicas, 1, |_| 100.0);
        b.rebalance(opts(seed, T0)).unwrap();
        let ids: Vec<u16> = b.devices().map(|d| d.id).collect();
        let victim = ids[victim_pick.index(ids.len())];
        let held = b.partition_counts()[usize::from(victim)];
        let before = placements(&b);
        b.remove_device(victim).unwrap();
        let out = b.rebalance(opts(seed, T0 + 1)).unwrap();
        prop_assert_eq!(out.removed_devices, vec![victim]);
        prop_assert!(b.device(victim).is_none());
        prop_assert_eq!(out.moved, held);
        for (x, y) in before.iter().zip(&placements(&b)) {
            for (a, c) in x.iter().zip(y) {
                prop_assert!(a == c || *a == victim, "a replica not on the removed device moved");
            }
        }
        b.validate(true).unwrap();
    }

    /// Builder and ring files round-trip; any flipped byte, truncation or extra byte is refused.
    #[test]
    fn files_round_trip_and_refuse_damage(
        (topo, replicas) in symmetric(), seed in any::<u64>(),
        flip in any::<prop::sample::Index>(), bit in 0u8..8, cut in any::<prop::sample::Index>()
    ) {
        let mut b = build(&topo, 7, replicas, 1, |i| 10.0 + f64::from(i));
        b.rebalance(opts(seed, T0)).unwrap();
        let bytes = b.to_bytes().unwrap();
        prop_assert_eq!(&RingBuilder::from_bytes(&bytes).unwrap(), &b);
        let ring = PartitionRing::compile(&b).unwrap();
        let ring_bytes = ring.to_bytes().unwrap();
        prop_assert_eq!(&PartitionRing::from_bytes(&ring_bytes).unwrap(), &ring);

        for original in [&bytes, &ring_bytes] {
            let mut damaged = original.clone();
            let i = flip.index(damaged.len());
            damaged[i] ^= 1 << bit;
            prop_assert!(RingBuilder::from_bytes(&damaged).is_err());
            prop_assert!(PartitionRing::from_bytes(&damaged).is_err());
            let truncated = &original[..cut.index(original.len())];
            prop_assert!(RingBuilder::from_bytes(truncated).is_err());
            prop_assert!(PartitionRing::from_bytes(truncated).is_err());
            let mut longer = original.clone();
            longer.push(0);
            prop_assert!(RingBuilder::from_bytes(&longer).is_err());
            prop_assert!(PartitionRing::from_bytes(&longer).is_err());
        }
    }

    /// Handoffs: deterministic, never a primary, never twice, every weighted device
    /// eventually, and unused regions, then zones, then nodes first.
    #[test]
    fn handoffs_prefer_other_failure_domains(
        (topo, replicas) in symmetric(), seed in any::<u64>(), part_pick in any::<prop::sample::Index>()
    ) {
        let mut b = build(&topo, 6, replicas, 1, |_| 100.0);
        b.rebalance(opts(seed, T0)).unwrap();
        let ring = PartitionRing::compile(&b).unwrap();
        let part = part_pick.index(ring.partitions() as usize) as u32;
        let primaries: Vec<u16> = ring.primary_ids(part).collect();
        let handoffs: Vec<u16> = ring.handoffs(part).unwrap().map(|d| d.id).collect();
        let again: Vec<u16> = ring.handoffs(part).unwrap().map(|d| d.id).collect();
        prop_assert_eq!(&handoffs, &again);
        let unique: HashSet<u16> = handoffs.iter().copied().collect();
        prop_assert_eq!(unique.len(), handoffs.len());
        prop_assert!(handoffs.iter().all(|h| !primaries.contains(h)));
        prop_assert_eq!(handoffs.len() + primaries.len(), ring.devices().count());

        // Failure-domain order: a handoff in an already-used region comes only after every
        // region has been used, and likewise for zones and nodes.
        let dev = |id: u16| ring.device(id).unwrap();
        let mut used_regions: HashSet<u32> = primaries.iter().map(|&i| dev(i).region).collect();
        let all_regions: HashSet<u32> = ring.devices().map(|d| d.region).collect();
        for &h in &handoffs {
            let r = dev(h).region;
            if used_regions.contains(&r) {
                prop_assert_eq!(&used_regions, &all_regions, "reused a region while another was unused");
            }
            used_regions.insert(r);
        }
    }

    /// A fractional replica count gives some partitions one replica more, in the right share.
    #[test]
    fn fractional_replicas(frac in 1u32..=9, seed in any::<u64>()) {
        let replicas = 2.0 + f64::from(frac) / 10.0;
        let topo = Topology { regions: 1, zones: 4, nodes: 2, devices: 2 };
        let mut b = build(&topo, 9, replicas, 0, |_| 100.0);
        b.rebalance(opts(seed, T0)).unwrap();
        b.validate(true).unwrap();
        let total: u64 = b.partition_counts().iter().sum();
        let expected = (f64::from(b.partitions()) * replicas).round() as u64;
        prop_assert_eq!(total, expected);
        prop_assert_eq!(b.report().dispersion, 0.0);
    }
}

/// Growing a ring the way operators do (new nodes spread over the zones) moves the new
/// weight's share and no more.
#[test]
fn growing_a_realistic_ring_moves_its_share() {
    for seed in 0..4 {
        let topo = Topology {
            regions: 2,
            zones: 4,
            nodes: 6,
            devices: 2,
        };
        let mut b = build(&topo, 12, 3.0, 1, |_| 100.0);
        b.rebalance(opts(seed, T0)).unwrap();
        for r in 1..=2 {
            for z in 1..=4 {
                b.add_device(new_device(r, z, 9, 0, 100.0)).unwrap();
            }
        }
        b.pretend_min_part_hours_passed();
        let ideal = f64::from(b.partitions()) * 3.0 * 8.0 / 104.0;
        let out = b.rebalance(opts(seed + 10, T0 + 60)).unwrap();
        assert!(
            out.moved as f64 <= ideal * 1.01 + 8.0,
            "moved {} for {ideal:.1}",
            out.moved
        );
        let report = b.report();
        assert!(report.balance < 1.0, "balance {}", report.balance);
        assert_eq!(report.dispersion, 0.0);
    }
}

#[test]
fn adding_a_region_spreads_replicas_over_it() {
    let topo = Topology {
        regions: 2,
        zones: 2,
        nodes: 3,
        devices: 2,
    };
    let mut b = build(&topo, 10, 3.0, 0, |_| 100.0);
    b.rebalance(opts(7, T0)).unwrap();
    for z in 1..=2 {
        for n in 0..3 {
            for d in 0..2 {
                b.add_device(new_device(3, z, n, d, 100.0)).unwrap();
            }
        }
    }
    let out = b.rebalance(opts(8, T0 + 1)).unwrap();
    let report = b.report();
    assert_eq!(report.dispersion, 0.0, "worst {:?}", report.worst_tier);
    assert!(report.balance < 1.0, "balance {}", report.balance);
    // Exactly one replica of every partition must end up in the new region.
    let ideal = f64::from(b.partitions());
    assert!(
        (out.moved as f64) < ideal * 1.02 + 16.0,
        "moved {} for {}",
        out.moved,
        ideal
    );
}

#[test]
fn uneven_zones_follow_weight_unless_overloaded() {
    // Zone 2 has a tenth of the weight: with overload 0 it gets a tenth of the replicas (so some
    // partitions have both replicas in zone 1); with enough overload it gets one of each.
    let mut b = RingBuilder::new(10, 2.0, 0).unwrap();
    for n in 0..9 {
        b.add_device(new_device(1, 1, n, 0, 100.0)).unwrap();
    }
    b.add_device(new_device(1, 2, 0, 0, 100.0)).unwrap();
    b.rebalance(opts(1, T0)).unwrap();
    let weighted = b.report();
    assert!(weighted.balance < 1.0, "balance {}", weighted.balance);
    assert!(weighted.dispersion > 0.0);
    let required = b.required_overload();
    assert!(required > 1.0, "required overload {required}");

    b.set_overload(required + 0.01).unwrap();
    b.rebalance(opts(1, T0 + 1)).unwrap();
    let dispersed = b.report();
    assert_eq!(dispersed.dispersion, 0.0);
    let zone2 = dispersed
        .devices
        .iter()
        .find(|d| d.device.zone == 2)
        .unwrap();
    assert_eq!(zone2.partitions, u64::from(b.partitions()));
}

#[test]
fn setting_a_weight_to_zero_drains_the_device() {
    let topo = Topology {
        regions: 1,
        zones: 2,
        nodes: 3,
        devices: 2,
    };
    let mut b = build(&topo, 9, 3.0, 0, |_| 100.0);
    b.rebalance(opts(3, T0)).unwrap();
    b.set_weight(0, 0.0).unwrap();
    b.rebalance(opts(4, T0 + 1)).unwrap();
    assert_eq!(b.partition_counts()[0], 0);
    assert_eq!(b.report().dispersion, 0.0);
}

#[test]
fn more_replicas_and_fewer_replicas() {
    let topo = Topology {
        regions: 1,
        zones: 4,
        nodes: 2,
        devices: 2,
    };
    let mut b = build(&topo, 8, 2.0, 0, |_| 100.0);
    b.rebalance(opts(1, T0)).unwrap();
    b.set_replicas(3.0).unwrap();
    let out = b.rebalance(opts(2, T0 + 1)).unwrap();
    assert_eq!(out.assigned, u64::from(b.partitions()));
    b.validate(true).unwrap();
    assert_eq!(b.report().dispersion, 0.0);
    b.set_replicas(2.0).unwrap();
    b.rebalance(opts(3, T0 + 2)).unwrap();
    b.validate(true).unwrap();
    assert_eq!(
        b.partition_counts().iter().sum::<u64>(),
        2 * u64::from(b.partitions())
    );
}

#[test]
fn too_few_devices_is_a_clear_error() {
    let mut b = RingBuilder::new(6, 3.0, 1).unwrap();
    b.add_device(new_device(1, 1, 0, 0, 100.0)).unwrap();
    b.add_device(new_device(1, 1, 0, 1, 100.0)).unwrap();
    let err = b.rebalance(opts(1, T0)).unwrap_err();
    assert!(matches!(err, RingError::NotEnoughDevices { .. }), "{err}");
    assert!(err.to_string().contains("add devices"), "{err}");
    let empty = RingBuilder::new(6, 3.0, 1)
        .unwrap()
        .rebalance(opts(1, T0))
        .unwrap_err();
    assert!(matches!(empty, RingError::NoWeightedDevices));
}

#[test]
fn duplicate_devices_and_bad_values_are_refused() {
    let mut b = RingBuilder::new(6, 3.0, 1).unwrap();
    b.add_device(new_device(1, 1, 0, 0, 100.0)).unwrap();
    assert!(matches!(
        b.add_device(new_device(1, 1, 0, 0, 100.0)),
        Err(RingError::DuplicateDevice { .. })
    ));
    assert!(matches!(
        b.add_device(new_device(1, 1, 0, 1, -1.0)),
        Err(RingError::InvalidWeight(_))
    ));
    assert!(matches!(
        b.add_device(new_device(1, 1, 0, 1, f64::NAN)),
        Err(RingError::InvalidWeight(_))
    ));
    let mut bad = new_device(1, 1, 0, 2, 1.0);
    bad.device = "sd a".into();
    assert!(matches!(
        b.add_device(bad),
        Err(RingError::InvalidDeviceField { .. })
    ));
    assert!(RingBuilder::new(0, 3.0, 1).is_err());
    assert!(RingBuilder::new(23, 3.0, 1).is_err());
    assert!(RingBuilder::new(8, 0.5, 1).is_err());
    assert!(b.set_overload(-0.1).is_err());
}

#[test]
fn foreign_files_are_named() {
    let swift_like = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    let err = PartitionRing::from_bytes(&swift_like)
        .unwrap_err()
        .to_string();
    assert!(err.contains("gzip"), "{err}");
    let mut b = RingBuilder::new(6, 1.0, 1).unwrap();
    b.add_device(new_device(1, 1, 0, 0, 1.0)).unwrap();
    let err = PartitionRing::from_bytes(&b.to_bytes().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("write-ring"), "{err}");
    assert!(
        PartitionRing::from_bytes(b"")
            .unwrap_err()
            .to_string()
            .contains("empty")
    );
}

#[test]
fn names_map_to_partitions_by_keyed_hash() {
    let a = PathHasher::new("prefix", "suffix");
    let b = PathHasher::new("prefix", "other");
    let path = PathHasher::path_of("AUTH_test", Some("c"), Some("o"));
    assert_eq!(path, "/AUTH_test/c/o");
    assert_eq!(a.hash_path(&path), a.hash_path(&path));
    // A different secret gives an unrelated mapping: of 1,000 names, few keep their partition.
    let same = (0..1000)
        .filter(|i| {
            let p = format!("/a/c/o{i}");
            cairn_ring::partition_of_hash(a.hash_path(&p), 10)
                == cairn_ring::partition_of_hash(b.hash_path(&p), 10)
        })
        .count();
    assert!(same < 20, "{same} names kept their partition");
    // Partitions are spread evenly: no partition of 2^4 gets more than twice its share.
    let mut counts: HashMap<u32, u32> = HashMap::new();
    for i in 0..16_000 {
        *counts
            .entry(cairn_ring::partition_of_hash(
                a.hash_path(&format!("/a/c/{i}")),
                4,
            ))
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 16);
    assert!(
        counts.values().all(|&c| (500..2000).contains(&c)),
        "{counts:?}"
    );
}

#[test]
fn handoffs_do_not_change_with_the_ring_version() {
    let topo = Topology {
        regions: 2,
        zones: 2,
        nodes: 2,
        devices: 2,
    };
    let mut b = build(&topo, 6, 3.0, 0, |_| 100.0);
    b.rebalance(opts(1, T0)).unwrap();
    let before = PartitionRing::compile(&b).unwrap();
    // A change nodes see (new version) that leaves devices and assignment as they were.
    b.set_info(
        0,
        cairn_ring::DeviceInfo {
            meta: Some("relabelled".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let after = PartitionRing::compile(&b).unwrap();
    assert_ne!(before.version(), after.version());
    for part in 0..before.partitions() {
        let a: Vec<u16> = before.handoffs(part).unwrap().map(|d| d.id).collect();
        let z: Vec<u16> = after.handoffs(part).unwrap().map(|d| d.id).collect();
        assert_eq!(a, z, "partition {part}");
    }
    // A rebalance that moves nothing keeps the version too.
    let v = b.version();
    let out = b.rebalance(opts(2, T0 + 1)).unwrap();
    assert_eq!(out.moved, 0);
    assert_eq!(b.version(), v);
}

#[test]
fn a_removed_device_does_not_block_its_successor() {
    let mut b = RingBuilder::new(6, 1.0, 0).unwrap();
    let first = b.add_device(new_device(1, 1, 0, 0, 100.0)).unwrap();
    b.add_device(new_device(1, 1, 1, 0, 100.0)).unwrap();
    b.remove_device(first).unwrap();
    let second = b.add_device(new_device(1, 1, 0, 0, 100.0)).unwrap();
    b.set_info(
        second,
        cairn_ring::DeviceInfo {
            meta: Some("new disk".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        b.add_device(NewDevice {
            id: Some(65_534),
            ..new_device(1, 1, 5, 0, 1.0)
        })
        .is_err()
    );
}
