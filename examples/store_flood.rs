//! How long the pager's commit takes with and without a flood of reads: the figures of issue 13's
//! "reads never block the pager".
//!
//! ```text
//! cargo run --example store_flood [-- --incidents N --readers R --commits K --dir DIR]
//! ```
//!
//! Seeds a store (in a temporary directory, or `--dir`) with `--incidents` large resolved incidents
//! (default 300, about 40 KB of JSON each: `tests/it/support/load.rs`), then times `--commits`
//! commits (default 60) shaped like an escalation (one incident saved, one email queued, one
//! transaction), first alone, then while `--readers` threads (default 8) read as the HTTP routes do
//! under a flood: `GET /api/incidents?limit=500` (`recent_incidents(500)`) and `GET /`
//! (`latest_per_section`, `recent_incidents(200)`, `windows`), back to back. It prints each phase's
//! commit latency (median, 95th percentile, max), how much of it was waiting for the writer's
//! connection (`harven_watchdog_store_write_wait_seconds`: the rest is the transaction, its fsync,
//! and the CPU the readers leave), and the reads completed. Nothing is asserted: the figures depend
//! on the machine (and on the build: run it with `--release` for the product's).

#[allow(dead_code)]
#[path = "../tests/it/support/load.rs"]
mod load;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use harven_watchdog::clock::Timestamp;
use harven_watchdog::incident::{Incident, IncidentState, Level, Page, PageEvent};
use harven_watchdog::store::{NewEmail, Store};
use prometheus_client::registry::Registry;

/// Where the simulated clock of the seeded store stands.
const NOW: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);
/// The pause between two timed commits: the pager commits now and then, not back to back.
const PAUSE: Duration = Duration::from_millis(20);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| {
                v.parse().unwrap_or_else(|e| panic!("{name} {v}: {e}"))
            })
    };
    let incidents = opt("--incidents", 300);
    let readers = opt("--readers", 8);
    let commits = opt("--commits", 60);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| tmp.path().to_path_buf(), std::path::PathBuf::from);

    let store = Arc::new(Store::open(dir.join("flood.db")).expect("open the store"));
    let mut registry = Registry::with_prefix("harven_watchdog");
    store.register_metrics(&mut registry);
    let bytes = load::seed(&store, incidents, NOW);
    println!(
        "store: {incidents} incidents, {:.1} MB of JSON; {readers} reader threads; {commits} commits per phase",
        bytes as f64 / 1e6
    );

    let mut open = escalating_incident();
    let waited = write_wait(&registry);
    let quiet = time_commits(&store, &mut open, commits, 0);
    report("alone", &quiet, write_wait(&registry) - waited, None);

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..readers)
        .map(|r| {
            let (store, stop, reads) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&reads));
            std::thread::spawn(move || {
                let mut n = r;
                while !stop.load(Ordering::Relaxed) {
                    if n % 2 == 0 {
                        store.recent_incidents(500).expect("GET /api/incidents");
                    } else {
                        store.latest_per_section().expect("GET /: open");
                        store.recent_incidents(200).expect("GET /: recent");
                        store.windows().expect("GET /: windows");
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    // Every reader is under way before the first timed commit.
    while reads.load(Ordering::Relaxed) < readers as u64 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    let before = reads.load(Ordering::Relaxed);
    let waited = write_wait(&registry);
    let flood = time_commits(&store, &mut open, commits, commits);
    let waited = write_wait(&registry) - waited;
    let during = reads.load(Ordering::Relaxed) - before;
    let rate = during as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("reader thread");
    }
    report("flood", &flood, waited, Some(rate));
}

/// The total of `harven_watchdog_store_write_wait_seconds` so far, in seconds. Only the timed commits
/// use the writer while it is read (the readers never do).
fn write_wait(registry: &Registry) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    text.lines()
        .find_map(|l| l.strip_prefix("harven_watchdog_store_write_wait_seconds_sum "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the write wait histogram")
}

/// The open incident the timed commits escalate.
fn escalating_incident() -> Incident {
    let mut i = load::large_incident("latency", NOW, 0);
    i.id = Incident::make_id("latency", NOW);
    i.state = IncidentState::Open;
    i.resolved_at = None;
    i
}

/// Times `count` commits of `incident` with one new email each (keys from `first`).
fn time_commits(
    store: &Store,
    incident: &mut Incident,
    count: usize,
    first: usize,
) -> Vec<Duration> {
    (first..first + count)
        .map(|n| {
            let at = NOW + Duration::from_secs(n as u64);
            incident.note(at, "paged", format!("reminder {n}"));
            let page = Page::new(incident, Level::L2, PageEvent::Reminder, n as u32, at);
            let email = NewEmail::for_page(
                &page,
                vec!["techlead@harven.ai".to_owned()],
                vec![b'x'; 8 * 1024],
            );
            std::thread::sleep(PAUSE);
            let t = Instant::now();
            store
                .commit(std::slice::from_ref(incident), &[email], None, at)
                .expect("commit");
            t.elapsed()
        })
        .collect()
}

fn report(phase: &str, samples: &[Duration], waited: f64, reads_per_second: Option<f64>) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let reads = reads_per_second.map_or(String::new(), |r| format!("; {r:.1} reads/s meanwhile"));
    println!(
        "FIGURE\tcommit_{phase}\tmedian {:.2} ms\tp95 {:.2} ms\tmax {:.2} ms\twaiting for the writer: {:.3} ms per commit{reads}",
        ms(at(0.5)),
        ms(at(0.95)),
        ms(at(1.0)),
        waited * 1e3 / samples.len() as f64,
    );
}
