//! The store finding (issue 17): whether the watchdog's own store answers, as its users last saw
//! it, in one place that `/metrics`, `/readyz` and the status page read.
//!
//! The store has no probe of its own: what says it is down is the work that needs it. Each user
//! reports under its name ([`PAGER`]: the pager's steps and commits; [`LEASE`]: the lease task's
//! rounds, a standby's too, since every replica shares the same database) whether its latest call
//! was answered. The store is **down** while any source's latest report failed, and has been since
//! the earliest of those started failing. A write refused by the fence ([`StoreError::Fenced`]) is
//! an answer, not a failure: the database said no to a replica that does not lead.
//!
//! **Invariant:** nothing here holds a secret: a failure is kept as [`StoreError`]'s words, which
//! name the database as `user@host:port/db` and never its password, and the store as
//! [`StoreHealth::name_of`] says it (`host:port/db`, or the SQLite file's path).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::StoreError;
use crate::clock::Timestamp;
use crate::config::StoreConfig;

/// The pager's source: its steps' reads and writes and its commits of incidents and pages.
pub const PAGER: &str = "pager";
/// The lease task's source: its claim and renewal rounds (leader and standby alike).
pub const LEASE: &str = "lease";

/// The shared finding: cheap to clone, every clone reports to and reads the same state.
#[derive(Debug, Clone)]
pub struct StoreHealth {
    /// How the finding names the store (never with a password).
    name: Arc<str>,
    /// Whether it is a PostgreSQL database (the fix differs from a file's).
    shared: bool,
    state: Arc<Mutex<BTreeMap<&'static str, Failing>>>,
    /// `harven_watchdog_store_up`: 1 until a source's latest report fails.
    up: Gauge,
    /// `harven_watchdog_pages_unrecorded`: the keys the finding holds, 0 while up.
    unrecorded: Gauge,
}

/// A source whose latest report failed. A source that is up has no entry.
#[derive(Debug, Clone)]
struct Failing {
    /// When its first failure in a row was reported: kept across the failures that follow.
    since: Timestamp,
    /// When its latest failure was reported: the newest words win in the finding.
    latest: Timestamp,
    /// The latest failure's words.
    error: String,
    /// The keys of the pages decided but not recorded (the pager's latest failed commit).
    unrecorded: Vec<String>,
}

/// The store is down: what `/readyz` and the status page say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFinding {
    /// The store as [`StoreHealth::name_of`] names it.
    pub store: String,
    /// True for a PostgreSQL database shared by replicas, false for the SQLite file.
    pub shared: bool,
    /// When the earliest source still failing started failing.
    pub since: Timestamp,
    /// The words of the most recent failure reported.
    pub error: String,
    /// The keys of the pages decided and waiting for the store, in key order. They are decided
    /// again, with the same keys, at each step, and recorded once the store takes them: never twice.
    pub unrecorded: Vec<String>,
}

/// What a failing source knows of the pages it could not record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unrecorded {
    /// A commit failed: these are its pages' keys (replacing the source's earlier ones).
    Pages(Vec<String>),
    /// The failure came before any pages were known (a read, a saved rule state): the source's
    /// earlier keys stay, as its pages are still due.
    Unknown,
}

impl StoreHealth {
    /// A store answering so far, named `name` in the finding; `shared` for a PostgreSQL database.
    pub fn new(name: impl Into<String>, shared: bool) -> Self {
        let up = Gauge::default();
        up.set(1);
        Self {
            name: name.into().into(),
            shared,
            state: Arc::default(),
            up,
            unrecorded: Gauge::default(),
        }
    }

    /// For the store `config` names: [`StoreHealth::name_of`].
    pub fn of(config: &StoreConfig) -> Self {
        Self::new(Self::name_of(config), config.postgres.is_some())
    }

    /// The store as the finding names it: `host:port/dbname` for PostgreSQL (no user, no
    /// password), else the SQLite file's path.
    pub fn name_of(config: &StoreConfig) -> String {
        match &config.postgres {
            Some(pg) => pg.address(),
            None => config.path.display().to_string(),
        }
    }

    /// Registers `harven_watchdog_store_up` and `harven_watchdog_pages_unrecorded` in `registry`
    /// (once per registry).
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "store_up",
            "1 while the watchdog's own store answers its pager and its lease task, 0 while one of \
             them found it failing (see /readyz for since when and why)",
            self.up.clone(),
        );
        registry.register(
            "pages_unrecorded",
            "Pages decided but not recorded because the store failed (the latest failed commit's \
             pages): recorded, and then sent, once it answers; 0 while it answers",
            self.unrecorded.clone(),
        );
    }

    /// `source`'s latest call was answered: it is up again, and the pages it held are forgotten
    /// (recorded now, or no longer due).
    pub fn answered(&self, source: &'static str) {
        let mut state = self.lock();
        if state.remove(source).is_some() {
            tracing::info!(source, store = %self.name, "the store answers again");
        }
        self.publish(&state);
    }

    /// `source`'s latest call failed with `error` at `now`. [`StoreError::Fenced`] is an answer
    /// (the lease row refused a replica that does not lead): [`StoreHealth::answered`].
    pub fn failed(
        &self,
        source: &'static str,
        now: Timestamp,
        error: &StoreError,
        pages: Unrecorded,
    ) {
        if matches!(error, StoreError::Fenced) {
            self.answered(source);
            return;
        }
        self.no_answer(source, now, error.to_string(), pages);
    }

    /// `source`'s latest call failed at `now`, in `words` (a timeout has no [`StoreError`]).
    pub fn no_answer(
        &self,
        source: &'static str,
        now: Timestamp,
        words: String,
        pages: Unrecorded,
    ) {
        let mut state = self.lock();
        let first = !state.contains_key(source);
        let entry = state.entry(source).or_insert_with(|| Failing {
            since: now,
            latest: now,
            error: String::new(),
            unrecorded: Vec::new(),
        });
        entry.latest = now;
        entry.error = words;
        if let Unrecorded::Pages(keys) = pages {
            entry.unrecorded = keys;
        }
        if first {
            tracing::warn!(source, store = %self.name, error = %entry.error, "the store does not answer");
        }
        self.publish(&state);
    }

    /// Whether every source's latest call was answered.
    pub fn is_up(&self) -> bool {
        self.lock().is_empty()
    }

    /// The finding while the store is down; `None` while it answers.
    pub fn finding(&self) -> Option<StoreFinding> {
        let state = self.lock();
        let since = state.values().map(|f| f.since).min()?;
        let newest = state.values().max_by_key(|f| f.latest)?;
        Some(StoreFinding {
            store: self.name.to_string(),
            shared: self.shared,
            since,
            error: newest.error.clone(),
            unrecorded: unrecorded_keys(&state),
        })
    }

    /// Sets the gauges from `state` (under its lock, so two reports cannot publish out of order).
    fn publish(&self, state: &BTreeMap<&'static str, Failing>) {
        self.up.set(i64::from(state.is_empty()));
        self.unrecorded
            .set(i64::try_from(unrecorded_keys(state).len()).unwrap_or(i64::MAX));
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, Failing>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Every failing source's unrecorded keys, once each, in key order.
fn unrecorded_keys(state: &BTreeMap<&'static str, Failing>) -> Vec<String> {
    let mut keys: Vec<String> = state
        .values()
        .flat_map(|f| f.unrecorded.iter().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T0: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);

    fn unavailable() -> StoreError {
        StoreError::Unavailable("cannot connect to watchdog@db:5432/watchdog: refused".into())
    }

    fn metrics(health: &StoreHealth) -> String {
        let mut registry = Registry::with_prefix("harven_watchdog");
        health.register_metrics(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        out
    }

    /// `/metrics` shows `up` and `unrecorded`.
    fn assert_gauges(health: &StoreHealth, up: u8, unrecorded: usize) {
        let shown = metrics(health);
        for line in [
            format!("harven_watchdog_store_up {up}\n"),
            format!("harven_watchdog_pages_unrecorded {unrecorded}\n"),
        ] {
            assert!(shown.contains(&line), "no {line} in {shown}");
        }
    }

    /// Up at the start; a failed commit is down with its pages; a read failing before any pages
    /// keeps them; the commit's success forgets them. The gauges follow each step.
    #[test]
    fn one_source_goes_down_with_its_pages_and_comes_back() {
        let h = StoreHealth::new("db:5432/watchdog", true);
        assert!(h.is_up());
        assert_eq!(h.finding(), None);
        assert_gauges(&h, 1, 0);

        let pages = Unrecorded::Pages(vec![
            "inc-2/L1/opened/0".into(),
            "inc-1/L2/escalated/0".into(),
        ]);
        h.failed(PAGER, T0, &unavailable(), pages);
        let f = h.finding().expect("down");
        assert_eq!(f.store, "db:5432/watchdog");
        assert_eq!(f.since, T0);
        assert!(f.error.contains("refused"), "{}", f.error);
        assert_eq!(f.unrecorded, ["inc-1/L2/escalated/0", "inc-2/L1/opened/0"]);
        assert_gauges(&h, 0, 2);

        // A later failure before the pages are known: since and the keys stay, the words move.
        let later = StoreError::Unavailable("statement timeout".into());
        h.failed(
            PAGER,
            T0 + Duration::from_secs(15),
            &later,
            Unrecorded::Unknown,
        );
        let f = h.finding().expect("down");
        assert_eq!(f.since, T0);
        assert_eq!(f.error, later.to_string());
        assert_eq!(f.unrecorded.len(), 2);

        // A later failed commit replaces the keys.
        let one = Unrecorded::Pages(vec!["inc-2/L1/opened/0".into()]);
        h.failed(PAGER, T0 + Duration::from_secs(30), &later, one);
        assert_eq!(h.finding().expect("down").unrecorded, ["inc-2/L1/opened/0"]);
        assert_gauges(&h, 0, 1);

        h.answered(PAGER);
        assert!(h.is_up());
        assert_eq!(h.finding(), None);
        assert_gauges(&h, 1, 0);
    }

    /// Down while any source's latest report failed, since the earliest of those; one source
    /// answering does not bring the store up while another still fails.
    #[test]
    fn several_sources_down_since_the_earliest_up_when_all_answer() {
        let h = StoreHealth::new("data/watchdog.db", false);
        h.no_answer(
            LEASE,
            T0,
            "no answer within 5 s".into(),
            Unrecorded::Unknown,
        );
        let pages = Unrecorded::Pages(vec!["inc-1/L1/opened/0".into()]);
        h.failed(PAGER, T0 + Duration::from_secs(10), &unavailable(), pages);
        let f = h.finding().expect("down");
        assert_eq!(f.since, T0, "the earliest failure");
        assert!(f.error.contains("refused"), "the newest words: {}", f.error);
        assert_eq!(f.unrecorded, ["inc-1/L1/opened/0"]);

        h.answered(LEASE);
        let f = h.finding().expect("the pager still fails");
        assert_eq!(f.since, T0 + Duration::from_secs(10));
        assert!(!h.is_up());

        // The lease fails again: it counts from its new failure, not its old one.
        h.no_answer(
            LEASE,
            T0 + Duration::from_secs(20),
            "timeout".into(),
            Unrecorded::Unknown,
        );
        assert_eq!(
            h.finding().expect("down").since,
            T0 + Duration::from_secs(10)
        );
        h.answered(PAGER);
        assert_eq!(
            h.finding().expect("the lease fails").since,
            T0 + Duration::from_secs(20)
        );
        assert!(h.finding().expect("down").unrecorded.is_empty());
        h.answered(LEASE);
        assert!(h.is_up());
    }

    /// A fenced write is the database refusing a replica that does not lead: an answer.
    #[test]
    fn fenced_is_not_down() {
        let h = StoreHealth::new("db:5432/watchdog", true);
        let pages = Unrecorded::Pages(vec!["inc-1/L1/opened/0".into()]);
        h.failed(PAGER, T0, &StoreError::Fenced, pages.clone());
        assert!(h.is_up());
        assert_gauges(&h, 1, 0);
        // And it ends a failure, as any answer does.
        h.failed(PAGER, T0, &unavailable(), pages);
        h.failed(
            PAGER,
            T0 + Duration::from_secs(5),
            &StoreError::Fenced,
            Unrecorded::Unknown,
        );
        assert!(h.is_up());
    }

    /// The name never holds the user or a password; SQLite is its file.
    #[test]
    fn the_store_is_named_without_credentials() {
        let mut config = StoreConfig {
            path: "data/watchdog.db".into(),
            postgres: None,
            retention: Duration::from_secs(86_400),
        };
        assert_eq!(StoreHealth::name_of(&config), "data/watchdog.db");
        config.postgres = Some(crate::config::PostgresConfig {
            host: "db.internal".into(),
            port: 5433,
            user: "watchdog".into(),
            dbname: "harven".into(),
            password: Some(crate::secret::Secret::new("hunter2-secret")),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            readers: 2,
            tls: crate::config::PgTls::Off,
        });
        assert_eq!(StoreHealth::name_of(&config), "db.internal:5433/harven");
    }
}
