//! Seeded cluster simulation: hundreds of seeds of faults against the node's real quorum and
//! replication logic. `CAIRN_SIM_SEED=N` replays one seed; `CAIRN_SIM_SEEDS=N` sets how many
//! each test runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

mod sim;

use sim::Sim;

const CHAOS_MS: u64 = 4_000;

fn seeds(block: u64) -> Vec<u64> {
    if let Ok(one) = std::env::var("CAIRN_SIM_SEED") {
        return if block == 0 {
            vec![one.parse().expect("CAIRN_SIM_SEED is a number")]
        } else {
            vec![]
        };
    }
    let per: u64 = std::env::var("CAIRN_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    (block * per..(block + 1) * per).collect()
}

fn run_block(block: u64) {
    let mut total = sim::SimStats::default();
    let seeds = seeds(block);
    for &seed in &seeds {
        let s = Sim::run(seed, CHAOS_MS);
        total.writes_acked += s.writes_acked;
        total.writes_strict += s.writes_strict;
        total.writes_failed += s.writes_failed;
        total.reads_checked += s.reads_checked;
        total.reads_failed += s.reads_failed;
        total.messages += s.messages;
        total.dropped += s.dropped;
        total.crashes += s.crashes;
        total.partitions += s.partitions;
        total.pushed += s.pushed;
        total.purged += s.purged;
        total.heal_ms = total.heal_ms.max(s.heal_ms);
    }
    eprintln!("{} seeds: {total:?}", seeds.len());
    if !seeds.is_empty() {
        // The scenario must really exercise the paths it claims to check.
        assert!(total.writes_acked > 0 && total.reads_checked > 0);
        assert!(total.crashes > 0 && total.partitions > 0 && total.pushed > 0);
        assert!(total.dropped > 0 && total.purged > 0 && total.writes_strict < total.writes_acked);
    }
}

#[test]
fn seeds_block_0() {
    run_block(0);
}

#[test]
fn seeds_block_1() {
    run_block(1);
}

#[test]
fn seeds_block_2() {
    run_block(2);
}

#[test]
fn seeds_block_3() {
    run_block(3);
}

#[test]
fn same_seed_replays_identically() {
    let a = Sim::run(7, 1_000);
    let b = Sim::run(7, 1_000);
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}
