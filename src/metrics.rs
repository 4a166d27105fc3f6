//! The daemon's own `/metrics`: one registry, created by [`crate::run`] and handed to whoever records.
//!
//! Names are `harven_watchdog_*`, with units in the names and `_total` on counters (prometheus-client
//! appends both). There is no global registry: a test that starts two daemons gets two registries.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// The prefix of every series this daemon exports.
pub const PREFIX: &str = "harven_watchdog";

/// The OpenMetrics content type `/metrics` answers with (the encoder writes OpenMetrics and `# EOF`).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry and the metric handles the daemon's components record into.
#[derive(Debug)]
pub struct Metrics {
    /// Prefixed `harven_watchdog`; families are registered once, at start-up (a reload records
    /// into the same handles: a series must not vanish and come back as a reset).
    registry: Registry,
}

/// The labels of `harven_watchdog_build_info`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    /// The crate's version.
    version: &'static str,
    /// `release` or `debug`: a debug build's figures are not the product's.
    profile: &'static str,
}

impl Metrics {
    /// A registry with the build info and the process's own figures.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register(
            "build",
            "Build of the running watchdog; the value is always 1",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                profile: if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                },
            }),
        );
        registry.register_collector(Box::new(ProcessCollector));
        Self { registry }
    }

    /// The registry, for components that register their own families at start-up.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The exposition text, in OpenMetrics format.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail; an Err would be a bug in a collector.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding /metrics failed");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// CPU, memory, file descriptors, threads and start time of this process, read from `/proc/self` at
/// each scrape (a few microseconds; nothing is sampled in the background).
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    /// Each figure that cannot be read (no `/proc`, a restricted container) is left out rather
    /// than failing the scrape: the rest of `/metrics` matters more.
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(me) = procfs::process::Process::myself() else {
            return Ok(());
        };
        let Ok(stat) = me.stat() else { return Ok(()) };
        let ticks = procfs::ticks_per_second() as f64;
        let page = procfs::page_size();

        // `stat` counts CPU in clock ticks and resident memory in pages: converted to the seconds
        // and bytes the names promise. The names are the client libraries' standard `process_*`
        // ones, under this daemon's prefix.
        let cpu = (stat.utime + stat.stime) as f64 / ticks;
        let c = ConstCounter::new(cpu);
        c.encode(encoder.encode_descriptor(
            "process_cpu",
            "CPU time used by the watchdog, user and system",
            Some(&Unit::Seconds),
            c.metric_type(),
        )?)?;

        gauge(
            &mut encoder,
            "process_resident_memory",
            "Resident memory of the watchdog",
            Some(&Unit::Bytes),
            (stat.rss * page) as f64,
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory",
            "Virtual memory of the watchdog",
            Some(&Unit::Bytes),
            stat.vsize as f64,
        )?;
        gauge(
            &mut encoder,
            "process_threads",
            "Threads of the watchdog process",
            None,
            stat.num_threads as f64,
        )?;
        if let Ok(n) = me.fd_count() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors",
                None,
                n as f64,
            )?;
        }
        // The soft limit is the one `open` fails at; "unlimited" exports nothing.
        let max_fds = me.limits().map(|l| l.max_open_files.soft_limit);
        if let Ok(procfs::process::LimitValue::Value(max)) = max_fds {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Limit on open file descriptors",
                None,
                max as f64,
            )?;
        }
        // `starttime` is in ticks since boot: the boot time makes it a Unix time.
        if let Ok(boot) = procfs::boot_time_secs() {
            let start = boot as f64 + stat.starttime as f64 / ticks;
            gauge(
                &mut encoder,
                "process_start_time",
                "Start time of the watchdog since the Unix epoch",
                Some(&Unit::Seconds),
                start,
            )?;
        }
        Ok(())
    }
}

/// Writes one gauge family of one value, read at this scrape.
fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, unit, g.metric_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_build_info_and_real_process_figures() {
        let text = Metrics::new().encode();
        assert!(
            text.contains("harven_watchdog_build_info{version=\""),
            "{text}"
        );
        let rss = sample(&text, "harven_watchdog_process_resident_memory_bytes");
        assert!(
            rss > 1024.0 * 1024.0,
            "a running test process has more than 1 MiB resident: {rss}"
        );
        assert!(sample(&text, "harven_watchdog_process_open_fds") >= 3.0);
        assert!(sample(&text, "harven_watchdog_process_start_time_seconds") > 1.7e9);
        assert!(
            text.contains("harven_watchdog_process_cpu_seconds_total "),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    fn sample(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
    }
}
