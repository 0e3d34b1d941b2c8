//! Command-line grammar. `ring-tool <builder_file> <command> [args]`, as swift-ring-builder;
//! commands accept both `set_weight` and `set-weight` spellings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Exit codes, as swift-ring-builder: 0 done, 1 done with a warning, 2 error.
pub const EXIT_WARNING: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "ring-tool",
    version,
    about = "Build and rebalance Cairn partition rings",
    override_usage = "ring-tool <BUILDER_FILE> <COMMAND> [ARGS]\n       ring-tool simulate [OPTIONS]",
    after_help = "Exit status: 0 done, 1 done with a warning (e.g. nothing could move), 2 error.\n\
                  Run `ring-tool <BUILDER_FILE> <COMMAND> --help` for a command's options."
)]
pub struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new builder file: create <part_power> <replicas> <min_part_hours>.
    Create {
        part_power: u8,
        replicas: f64,
        min_part_hours: u32,
        /// Overwrite an existing builder file.
        #[arg(long)]
        force: bool,
    },
    /// Add devices: add <r1z1-127.0.0.1:6200/sda> <weight> [<device> <weight> ...],
    /// or one device with --region/--zone/--ip/--port/--device/--weight.
    Add(AddArgs),
    /// Mark devices for removal at the next rebalance: remove <search-value> ...
    Remove {
        #[arg(required = true)]
        search: Vec<String>,
        /// Proceed when a search value matches several devices.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Set weights: set_weight <search-value> <weight> [<search-value> <weight> ...]
    #[command(alias = "set_weight")]
    SetWeight {
        #[arg(required = true, num_args = 2.., allow_negative_numbers = true)]
        pairs: Vec<String>,
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Change addresses, device name or meta: set_info <search-value> <ip>:<port>/<device>_<meta> ...
    #[command(alias = "set_info")]
    SetInfo {
        #[arg(required = true, num_args = 2..)]
        pairs: Vec<String>,
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Set the overload: set_overload <fraction> or <percent>% (e.g. 0.1 or 10%).
    #[command(alias = "set_overload")]
    SetOverload { overload: String },
    /// Set min_part_hours.
    #[command(alias = "set_min_part_hours")]
    SetMinPartHours { hours: u32 },
    /// Set the replica count (fractions allowed); takes effect at the next rebalance.
    #[command(alias = "set_replicas")]
    SetReplicas { replicas: f64 },
    /// Reassign partitions and write the ring file next to the builder.
    Rebalance {
        /// Seed for the rebalance's pseudo-random choices (default: the builder version).
        #[arg(long, short = 's')]
        seed: Option<u64>,
        /// Accepted for swift-ring-builder compatibility: ring-tool always rebalances and
        /// writes the ring.
        #[arg(long, short = 'f')]
        force: bool,
    },
    /// Let the next rebalance move any partition, ignoring min_part_hours.
    #[command(alias = "pretend_min_part_hours_passed")]
    PretendMinPartHoursPassed,
    /// Show parameters, balance and the devices table (the default command).
    Show,
    /// List devices matching a search value.
    Search { search: String },
    /// Check the builder (or a ring file) for consistency.
    Validate,
    /// Report how replicas spread over regions, zones, nodes and devices.
    Dispersion {
        /// One line per tier.
        #[arg(long, short = 'v')]
        verbose: bool,
    },
    /// Compile the ring file (default: the builder path with .ring instead of .builder).
    #[command(alias = "write_ring")]
    WriteRing {
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Publish the ring (a ring file, or the builder's compiled ring) to the control-plane
    /// store; nodes watching it take it without a restart. Versions only grow.
    Publish {
        /// etcd client URLs, comma-separated.
        #[arg(long, value_delimiter = ',', required_unless_present = "meta_dir")]
        etcd: Vec<String>,
        /// The embedded store's directory (only while no other process has it open).
        #[arg(long)]
        meta_dir: Option<PathBuf>,
        /// `object` or `container`.
        #[arg(long, default_value = "object")]
        kind: String,
    },
    /// Where a name lives: lookup /account[/container[/object]] or lookup <account> [<container> [<object>]].
    Lookup(LookupArgs),
    /// Build a synthetic topology and rebalance it, to see behaviour and speed at scale.
    Simulate(SimulateArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Pairs of <device> <weight> in swift-ring-builder notation.
    #[arg(allow_negative_numbers = true)]
    pub pairs: Vec<String>,
    #[arg(long)]
    pub region: Option<u32>,
    #[arg(long)]
    pub zone: Option<u32>,
    #[arg(long)]
    pub ip: Option<String>,
    #[arg(long)]
    pub port: Option<u16>,
    #[arg(long)]
    pub replication_ip: Option<String>,
    #[arg(long)]
    pub replication_port: Option<u16>,
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long)]
    pub weight: Option<f64>,
    #[arg(long)]
    pub meta: Option<String>,
    #[arg(long)]
    pub id: Option<u16>,
}

#[derive(Debug, Args)]
pub struct LookupArgs {
    /// A path `/a/c/o`, or account [container [object]].
    #[arg(num_args = 0..=3)]
    pub name: Vec<String>,
    /// Look up a partition number instead of a name.
    #[arg(long, short = 'p', conflicts_with = "name")]
    pub partition: Option<u32>,
    /// The cluster's hash path prefix (a secret).
    #[arg(long, env = "CAIRN_HASH_PREFIX", hide_env_values = true)]
    pub hash_prefix: Option<String>,
    /// The cluster's hash path suffix (a secret).
    #[arg(long, env = "CAIRN_HASH_SUFFIX", hide_env_values = true)]
    pub hash_suffix: Option<String>,
    /// How many handoff devices to list.
    #[arg(long, default_value_t = 3)]
    pub handoffs: usize,
}

#[derive(Debug, Args, Clone)]
pub struct SimulateArgs {
    #[arg(long, default_value_t = 3)]
    pub regions: u32,
    /// Zones per region.
    #[arg(long, default_value_t = 8)]
    pub zones: u32,
    /// Nodes per zone.
    #[arg(long, default_value_t = 40)]
    pub nodes: u32,
    /// Devices per node.
    #[arg(long, default_value_t = 4)]
    pub devices: u32,
    #[arg(long, default_value_t = 20)]
    pub part_power: u8,
    #[arg(long, default_value_t = 3.0)]
    pub replicas: f64,
    #[arg(long, default_value_t = 100.0)]
    pub weight: f64,
    /// Vary each device's weight by up to ± this percent (seeded).
    #[arg(long, default_value_t = 0.0)]
    pub weight_jitter: f64,
    /// Overload as a fraction.
    #[arg(long, default_value_t = 0.0)]
    pub overload: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Then add this many percent more devices (as new nodes over all zones) and rebalance again.
    #[arg(long, default_value_t = 0.0)]
    pub grow: f64,
    /// Then time this many name lookups.
    #[arg(long, default_value_t = 0)]
    pub lookups: u64,
    /// Save the resulting builder here.
    #[arg(long)]
    pub output: Option<PathBuf>,
}
