//! CPU accounting from `/proc`, as loadgen.py does it: utime+stime ticks of
//! process trees, of this process, and busy/total jiffies of the machine.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result};

/// Processes visited when walking one tree (loadgen.py's bound).
const TREE_PROCESSES_MAX: usize = 100_000;

/// `(ppid, utime + stime)` of one process, `None` if it is gone.
fn stat_of(path: &Path) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(path).ok()?;
    parse_stat(&s)
}

fn parse_stat(s: &str) -> Option<(u32, u64)> {
    // The command name (field 2) may contain spaces and ')': skip past the last ')'.
    let rest = s.get(s.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // f[0] = state (field 3), f[1] = ppid, f[11] = utime (field 14), f[12] = stime.
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// utime+stime ticks of `roots` and all their descendants.
pub fn tree_cpu_ticks(roots: &[u32]) -> u64 {
    if roots.is_empty() {
        return 0;
    }
    let mut table: HashMap<u32, (u32, u64)> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(st) = stat_of(&e.path().join("stat")) {
                table.insert(pid, st);
            }
        }
    }
    let mut kids: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &(ppid, _)) in &table {
        kids.entry(ppid).or_default().push(pid);
    }
    let mut seen = HashSet::new();
    let mut todo: Vec<u32> = roots.to_vec();
    let mut total = 0;
    while let Some(p) = todo.pop() {
        if seen.len() >= TREE_PROCESSES_MAX {
            break;
        }
        if !seen.insert(p) {
            continue;
        }
        let Some(&(_, ticks)) = table.get(&p) else {
            continue;
        };
        total += ticks;
        if let Some(k) = kids.get(&p) {
            todo.extend(k);
        }
    }
    total
}

/// utime+stime ticks of this process (all threads).
pub fn self_cpu_ticks() -> u64 {
    stat_of(Path::new("/proc/self/stat")).map_or(0, |(_, t)| t)
}

/// `(busy, total)` jiffies over all CPUs, from the first line of `/proc/stat`.
pub fn machine_cpu() -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let vals: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_ascii_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = vals.iter().sum();
    let idle = vals.get(3).copied().unwrap_or(0) + vals.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Number of CPUs the kernel lists in `/proc/stat` (as Python's `os.cpu_count`).
pub fn cpu_count() -> usize {
    let n = std::fs::read_to_string("/proc/stat")
        .map(|s| {
            s.lines()
                .filter(|l| {
                    l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit)
                })
                .count()
        })
        .unwrap_or(0);
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

/// The 1-minute load average, as text (`?` if unknown).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_ascii_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// Clock ticks per second of the `/proc` CPU counters (`getconf CLK_TCK`;
/// Linux's USER_HZ is 100 everywhere in practice).
pub fn clock_ticks_per_s() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&hz: &u64| hz > 0)
        .unwrap_or(100)
}

/// PIDs from a comma list of PIDs and directories of `*.pid` files.
pub fn read_pids(spec: &str) -> Result<Vec<u32>> {
    let mut pids = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let path = Path::new(part);
        if path.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(path)
                .with_context(|| format!("reading {part}"))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pid"))
                .collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f)
                    .with_context(|| format!("reading {}", f.display()))?;
                pids.push(
                    text.trim()
                        .parse()
                        .with_context(|| format!("bad PID in {}", f.display()))?,
                );
            }
        } else {
            pids.push(part.parse().with_context(|| format!("bad PID {part:?}"))?);
        }
    }
    Ok(pids)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_name() {
        let s = "42 (a) b (c)) S 7 42 42 0 -1 4194304 100 0 0 0 11 22 0 0 20 0 1 0";
        assert_eq!(parse_stat(s), Some((7, 33)));
    }

    #[test]
    fn own_process_is_in_its_tree() {
        let me = std::process::id();
        // Burn a little CPU so the counters are non-zero.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        // Own ticks first: the counters only grow, so the tree read after them is not smaller.
        let own = self_cpu_ticks();
        assert!(tree_cpu_ticks(&[me]) >= own);
        assert!(cpu_count() >= 1);
        assert!(read_pids(&format!("{me}, ")).unwrap() == vec![me]);
    }
}
