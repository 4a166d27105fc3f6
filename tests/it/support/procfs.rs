//! A process's CPU time and resident memory from `/proc`, for the benchmarks' idle figures
//! (`examples/stack_bench.rs`, `examples/versus_bench.rs`).

/// `utime + stime` of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat format") + 2..]
        .split(' ')
        .collect();
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name and state.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Resident memory of `pid` from `/proc/PID/status`, in MiB.
pub struct Rss {
    /// `VmRSS`: what the targets are about.
    pub total: f64,
    /// `VmHWM`: the peak.
    pub peak: f64,
    /// `RssAnon`: the heap, stacks and relocated data, private to the process.
    pub anon: f64,
    /// `RssFile`: pages of the binary mapped from the page cache (clean, shared, reclaimable).
    pub file: f64,
}

impl Rss {
    pub fn of(pid: u32) -> Rss {
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(f64::NAN, |kib| kib / 1024.0)
        };
        Rss {
            total: field("VmRSS:"),
            peak: field("VmHWM:"),
            anon: field("RssAnon:"),
            file: field("RssFile:"),
        }
    }
}

impl std::fmt::Display for Rss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} MiB (peak {:.1}; anonymous {:.1} + binary's pages {:.1})",
            self.total, self.peak, self.anon, self.file
        )
    }
}

/// The share of one core a process used between two [`cpu_ticks`] readings `elapsed` apart, in percent.
pub fn cpu_percent(ticks_before: u64, ticks_after: u64, elapsed: std::time::Duration) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    100.0 * ticks_after.saturating_sub(ticks_before) as f64 / hz / elapsed.as_secs_f64()
}
