//! What the kernel says about a process (and itself): resident memory, CPU time, and kernel
//! memory for sockets.

use std::fs;

/// Resident memory of `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time of all threads of `pid`, in nanoseconds (from schedstat: exact, not in ticks).
pub(crate) fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// Kernel slab memory (every socket's kernel structures live there), in KiB.
pub(crate) fn slab_kib() -> u64 {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Memory of TCP socket buffers (data queued in sockets), in KiB.
pub(crate) fn tcp_buffers_kib() -> u64 {
    let sockstat = fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    sockstat
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            parts.iter().position(|p| *p == "mem").and_then(|i| parts.get(i + 1)).and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4)
}

/// A snapshot of a process's counters, to diff.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) rss_kib: u64,
    pub(crate) cpu_ns: u64,
    pub(crate) at: std::time::Instant,
}

impl Sample {
    pub(crate) fn of(pid: u32) -> Self {
        Self { rss_kib: rss_kib(pid), cpu_ns: cpu_ns(pid), at: std::time::Instant::now() }
    }
}

/// The machine, for the record.
pub(crate) fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024 / 1024);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} cores ({}), {mem_gib} GiB, Linux {}",
        cores,
        model.unwrap_or_else(|| "unknown CPU".into()),
        kernel.trim()
    )
}
