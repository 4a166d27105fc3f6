//! The durable store: one embedded SQLite file (the default) or a shared PostgreSQL database
//! (`[store] url`), holding incidents, the email outbox (which is also the sent ledger),
//! maintenance windows created at run time, a few long-lived secrets and, on PostgreSQL, the lease
//! that says which replica pages (`lease.rs`). `health.rs` is the store finding: whether the store
//! answers its users, as they report it.
//!
//! # Two backends, one API
//!
//! Every method is written once, against [`sql::Db`] (SQLite's placeholders, SQL both databases
//! accept, rows as values); `pg.rs` runs it on PostgreSQL, rusqlite on the file. What differs is
//! only where it must: the schema's DDL (`schema.rs`), how a transaction begins, the lease. The
//! sections below describe the file; on PostgreSQL the same guarantees hold through its own means
//! (a committed transaction is durable; each `Store` has one writer session and a pool of read-only
//! ones, so reads never queue behind the writer either), and every call is bounded by the
//! configured timeouts (see `pg.rs`).
//!
//! # Durability
//!
//! The file runs in WAL mode with `synchronous = FULL`: a transaction that returned `Ok` survives a
//! crash of the process *and* a power cut. `NORMAL` would only keep it across a process crash (the last
//! commits may roll back on power loss), and a rolled-back `mark_sent` means a repeated page while a
//! rolled-back outbox row means a lost one. The watchdog writes a handful of transactions a minute, so
//! the extra fsync per commit costs nothing that matters. `busy_timeout` is set so that a second
//! process looking at the file (an operator with `sqlite3`, a backup) makes writers wait instead of
//! failing.
//!
//! # Pages: durably recorded before sent, delivered once per key
//!
//! [`Store::commit`] writes the incidents and their new emails in **one transaction**: either the
//! incident state that produced a page and the page itself are both on disk, or neither is. Each email
//! carries its page key (`<incident>/<level>/<event>/<n>`), which is `UNIQUE` in the outbox; a key that
//! is already there (pending, sent, failed, held) is never queued again, however often the engine or a
//! restart asks. That is the dedup against the ledger. Only then does the sender (`crate::notify`) read
//! due rows and send them.
//!
//! The one window left is between the SMTP server's `250` for a message and [`Store::mark_sent`]: a
//! crash there resends that one message after the restart (at-least-once for it). Its bytes, including
//! its `Message-ID`, are stored whole and resent unchanged, so mail clients show the duplicate as the
//! same message.
//!
//! # Concurrency: reads never wait for the writer, nor the writer for reads
//!
//! The API is synchronous (SQLite is); async callers use `tokio::task::spawn_blocking`. A [`Store`] is
//! `Send + Sync` and cheap to share in an `Arc`. Every method is one transaction, so callers never
//! see half a commit. It holds two kinds of connection to the file:
//!
//! - **the writer**: one read-write connection behind a mutex. Every write goes through it, and so
//!   do the reads of the write side (the outbox reads of the sender, the pager's saved rule states
//!   and [`Store::pager_windows`]), which must not queue behind the HTTP routes' reads.
//! - **the readers** ([`READERS`] read-only connections, `query_only`, in a pool): what the HTTP
//!   routes read (incidents and windows). WAL lets them read the last committed snapshot while the
//!   writer commits; a read that finds them all in use waits on the pool, which the writer never
//!   touches. No read path takes the writer's mutex.
//!
//! A read copies its rows out and gives its connection back before decoding the JSON, so a read
//! transaction lasts only while SQLite steps the rows (and the log's automatic checkpoints, which
//! cannot copy past an open reader's snapshot, keep up). The writer's connection is likewise held
//! only for the statements, never to decode. Both waits are measured:
//! `harven_watchdog_store_write_wait_seconds` (how long work on the writer's connection waited to
//! start: its mutex, then SQLite's write lock, which only another connection to the file can hold:
//! another process, or another `Store` on the same file, as tests open) and
//! `harven_watchdog_store_read_wait_seconds` (how long a read waited for a reader).
//!
//! The pool needs a file: `:memory:` cannot run in WAL mode and [`Store::open`] refuses it (it always
//! has); tests use a file in a temporary directory.

pub mod health;
mod lease;
mod outbox;
mod pg;
mod pool;
pub mod retention;
mod schema;
mod secrets;
mod sql;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use rusqlite::{Connection, TransactionBehavior};

use crate::clock::Timestamp;
use crate::config::{MaintenanceWindow, PostgresConfig, StoreConfig};
use crate::incident::{Incident, IncidentState};
use sql::{Db, Lite, Row, vals};

pub use health::{StoreFinding, StoreHealth, Unrecorded};
pub use lease::{Claim, Fence, Holder};

pub use outbox::{
    CommitOutcome, DigestSlot, EmailStatus, NewDigest, NewEmail, OutboxDepth, OutboxEntry,
};
pub use retention::Pruned;

/// How long a writer waits for a lock held by another connection before it gives up with `Busy`
/// (and a reader for the rare instant a WAL reader can meet one: see `pool.rs`).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read-only connections in the readers' pool: how many reads run at once. A read holds one only
/// while SQLite steps its rows (decoding comes after), so a few serve a flood; more would only add
/// page caches.
pub const READERS: usize = 4;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file's directory could not be made (at start-up: the daemon does not start).
    #[error("cannot create the store directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// The file could not be opened or set up (WAL, `synchronous`, the readers).
    #[error("cannot open the store {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// SQLite's reason.
        source: rusqlite::Error,
    },
    /// The file was written by a newer watchdog: refused, never downgraded.
    #[error(
        "the store {path} has schema version {found}, newer than this watchdog knows ({known}); \
         run the newer watchdog or restore a backup"
    )]
    SchemaTooNew {
        /// The file.
        path: PathBuf,
        /// Its `user_version`.
        found: u32,
        /// The newest this build knows (how many migrations it has).
        known: u32,
    },
    /// Another connection (another process, a backup) held a lock past [`BUSY_TIMEOUT`]; the
    /// file itself is fine.
    #[error("the store is busy (locked by another connection for more than {BUSY_TIMEOUT:?})")]
    Busy(#[source] rusqlite::Error),
    /// Any other SQLite error (disk full, I/O, a constraint).
    #[error("store query failed: {0}")]
    Sqlite(#[source] rusqlite::Error),
    /// PostgreSQL cannot serve now: refused or lost connection, a connect or statement past its
    /// timeout, a server shutting down. The next call connects again (after a short backoff).
    #[error("the store's database is unavailable: {0}")]
    Unavailable(String),
    /// PostgreSQL refused a statement (a constraint, a permission): its message and SQLSTATE.
    #[error("store query failed: {0}")]
    Postgres(String),
    /// A pager or sender write on a shared store, refused because this replica does not hold the
    /// lease it was fenced with (never set, taken over, or expired): nothing was written.
    #[error("this replica does not hold the store's lease: the write was refused (fenced)")]
    Fenced,
    /// An incident or a list stored as JSON did not decode (or encode).
    #[error("cannot encode or decode stored JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A value outside what this build writes (an unknown outbox status, a file not in WAL).
    #[error("the store holds an unexpected value: {0}")]
    Corrupt(String),
    /// No random bytes for a new secret.
    #[error("the system random source failed")]
    Random,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Self::Busy(e)
            }
            _ => Self::Sqlite(e),
        }
    }
}

impl StoreError {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::CreateDir { .. } => "create_dir",
            Self::Open { .. } => "open",
            Self::SchemaTooNew { .. } => "schema_too_new",
            Self::Busy(_) => "busy",
            Self::Sqlite(_) => "sqlite",
            Self::Unavailable(_) => "unavailable",
            Self::Postgres(_) => "postgres",
            Self::Fenced => "fenced",
            Self::Json(_) => "json",
            Self::Corrupt(_) => "corrupt",
            Self::Random => "random",
        }
    }
}

/// The store's result: every operation fails only with a [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The store: the writer's connection and the readers' pool (see the module documentation). Share it
/// in an `Arc`.
#[derive(Debug)]
pub struct Store {
    backend: Backend,
    /// The database file, as given to [`Store::open`]; for PostgreSQL, `user@host:port/dbname`.
    path: PathBuf,
    metrics: StoreMetrics,
    /// What the pager's and the sender's writes check on a shared store ([`Store::set_fence`]);
    /// `None` refuses them there. Read once per write, before its transaction begins.
    fence: RwLock<Option<Fence>>,
    /// This replica's name (`ha.node`) on a shared store: what [`Store::own_name`] adds to the
    /// key-value names each replica keeps for itself.
    replica: std::sync::OnceLock<String>,
}

/// Where the data is.
#[derive(Debug)]
enum Backend {
    /// The embedded file.
    Sqlite {
        /// Read-only connections for the HTTP routes' reads. Declared before `writer` so they
        /// close first: the last connection to close checkpoints the log and removes it, which
        /// only the writer can do.
        readers: pool::ReaderPool<Connection>,
        /// Every write, and the write side's own reads. No read of the readers' path ever locks it.
        writer: Mutex<Connection>,
    },
    /// A PostgreSQL database, shared between replicas (boxed: its connections are larger than
    /// the file's, and only one store exists per process).
    Postgres(Box<pg::Postgres>),
}

/// The waits of [`Store`]'s two paths, registered by [`Store::register_metrics`]. They count from
/// [`Store::open`], whether or not they are registered.
#[derive(Debug)]
struct StoreMetrics {
    /// From asking for the writer's mutex to holding it (and SQLite's write lock, for a write).
    write_wait: Histogram,
    /// From asking the readers' pool for a connection to holding one.
    read_wait: Histogram,
}

impl StoreMetrics {
    /// Buckets from 0.1 ms (an uncontended lock) to 5 s ([`BUSY_TIMEOUT`], past which a write
    /// fails `Busy`).
    fn new() -> Self {
        let buckets =
            || Histogram::new([0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]);
        Self {
            write_wait: buckets(),
            read_wait: buckets(),
        }
    }
}

/// A maintenance window created at run time (through the API), with who made it and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWindow {
    /// The row ID: what the API and the pages end a window by. Never reused (`AUTOINCREMENT`,
    /// even after retention deletes rows), so an ID from an old page never names another window.
    pub id: i64,
    /// The window in force: for one ended early, `ends` is when it was ended.
    pub window: MaintenanceWindow,
    /// Who made it, as the API or the page's session named them.
    pub created_by: String,
    /// When it was made (not when it starts).
    pub created_at: Timestamp,
    /// Set when the window was ended before its planned end ([`Store::end_window`]).
    pub ended: Option<WindowEnd>,
}

/// How a window was ended early: the row keeps it, so the history says what was planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowEnd {
    /// When it was ended: from then on it mutes nothing.
    pub at: Timestamp,
    /// Who ended it.
    pub by: String,
    /// The end it was created with.
    pub planned_ends: Timestamp,
}

/// What [`Store::end_window`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndWindow {
    /// Ended now; the window as it stands.
    Ended(StoredWindow),
    /// It was already over (ended, early or as planned): nothing changed.
    AlreadyOver(StoredWindow),
    /// No window has this ID.
    NotFound,
}

impl Store {
    /// Opens (creating it and its directory when missing) the store at `path`, sets WAL,
    /// `synchronous = FULL` and the busy timeout, brings the schema up to date, and then opens the
    /// [`READERS`] read-only connections.
    ///
    /// A new file is made readable by its owner only: it holds the ack-link signing key.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let existed = path.exists();
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        if !existed {
            use std::os::unix::fs::PermissionsExt;
            // SQLite gives the -wal and -shm files the database file's permissions.
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "{} cannot use WAL mode (journal_mode is {mode})",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        schema::migrate(&mut conn, &path)?;
        // After the migration: the readers see the file in WAL mode and with its tables.
        let readers = pool::ReaderPool::open(&path, READERS).map_err(open_err)?;
        Ok(Self::with(
            Backend::Sqlite {
                readers,
                writer: Mutex::new(conn),
            },
            path,
        ))
    }

    /// Connects to the PostgreSQL database of `config` and brings its schema up to date (several
    /// replicas may do so at once). Fails `Unavailable` when the server cannot be reached within
    /// the connect timeout.
    pub fn connect(config: &PostgresConfig) -> Result<Self> {
        let pg = pg::Postgres::open(config)?;
        schema::migrate_pg(&mut pg.lock_writer(), &config.target())?;
        Ok(Self::with(
            Backend::Postgres(Box::new(pg)),
            PathBuf::from(config.target()),
        ))
    }

    /// The store `config` names: its PostgreSQL database when `[store] url` is set, else its file.
    pub fn open_config(config: &StoreConfig) -> Result<Self> {
        match &config.postgres {
            Some(pg) => Self::connect(pg),
            None => Self::open(&config.path),
        }
    }

    fn with(backend: Backend, path: PathBuf) -> Self {
        Self {
            backend,
            path,
            metrics: StoreMetrics::new(),
            fence: RwLock::new(None),
            replica: std::sync::OnceLock::new(),
        }
    }

    /// Names this replica (`ha.node`), once, before anything reads or writes its own values.
    pub fn set_replica(&self, node: &str) {
        let _ = self.replica.set(node.to_owned());
    }

    /// The key-value name of a value each replica keeps for itself (its alert inbox, its signed-in
    /// sessions): `base` on a file of one node, `base@<node>` on a shared store, so replicas never
    /// overwrite each other's and a restart reads back its own.
    pub fn own_name(&self, base: &str) -> String {
        match self.replica.get() {
            Some(node) if self.is_shared() => format!("{base}@{node}"),
            _ => base.to_owned(),
        }
    }

    /// True when the store is shared between replicas (PostgreSQL); false for SQLite, a single
    /// node's file (always the leader).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Registers `harven_watchdog_store_write_wait_seconds` and
    /// `harven_watchdog_store_read_wait_seconds` in `registry` (once per registry).
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "store_write_wait",
            "Time work on the store's writer connection (a commit, or a read of the pager or the \
             sender) waited to start: for its mutex, then for SQLite's write lock",
            Unit::Seconds,
            self.metrics.write_wait.clone(),
        );
        registry.register_with_unit(
            "store_read_wait",
            "Time a read of the HTTP routes waited for one of the store's read-only connections",
            Unit::Seconds,
            self.metrics.read_wait.clone(),
        );
    }

    /// The database file; for PostgreSQL, `user@host:port/dbname` (never a password).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the database (`PRAGMA user_version`, or PostgreSQL's `schema_version`
    /// row), as the readers see it.
    pub fn schema_version(&self) -> Result<u32> {
        self.read(schema::version)
    }

    /// Runs `f` on a connection of the readers' pool, waiting for one when all are in use. This is
    /// the only way to the readers, and it never touches the writer: `f` should copy its rows out
    /// and leave decoding to the caller, after the connection is back.
    fn read<T>(&self, f: impl FnOnce(&mut dyn Db) -> Result<T>) -> Result<T> {
        let asked = Instant::now();
        match &self.backend {
            Backend::Sqlite { readers, .. } => {
                let conn = readers.get();
                self.observe_read(asked);
                f(&mut Lite(&conn))
            }
            Backend::Postgres(pg) => {
                let mut conn = pg.readers.get();
                self.observe_read(asked);
                f(&mut conn.session())
            }
        }
    }

    fn observe_read(&self, asked: Instant) {
        self.metrics
            .read_wait
            .observe(asked.elapsed().as_secs_f64());
    }

    fn observe_write(&self, asked: Instant) {
        self.metrics
            .write_wait
            .observe(asked.elapsed().as_secs_f64());
    }

    /// Runs `f` on the writer's connection, for a read of the write side (no transaction: each
    /// statement reads the latest commit).
    fn on_writer<T>(&self, f: impl FnOnce(&mut dyn Db) -> Result<T>) -> Result<T> {
        let asked = Instant::now();
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                let conn = lock(writer);
                self.observe_write(asked);
                f(&mut Lite(&conn))
            }
            Backend::Postgres(pg) => {
                let mut conn = pg.lock_writer();
                self.observe_write(asked);
                f(&mut conn.session())
            }
        }
    }

    /// Runs `f` in one transaction on the writer's connection: committed when it returns
    /// `Ok((_, true))`, rolled back on `Ok((_, false))` or an error. SQLite's is `IMMEDIATE` (the
    /// write lock is taken at the start, so two writers never deadlock upgrading a read lock); the
    /// wait until it began is recorded. With `fenced`, on a shared store, the transaction first
    /// checks (and locks, `FOR SHARE`) the lease row against the fence, and fails `Fenced` when it
    /// does not hold: a replica that lost the lease writes nothing, and a claim waits for this
    /// commit.
    fn transact<T>(
        &self,
        fenced: bool,
        f: impl FnOnce(&mut dyn Db) -> Result<(T, bool)>,
    ) -> Result<T> {
        let asked = Instant::now();
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                let mut conn = lock(writer);
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                self.observe_write(asked);
                let (value, commit) = f(&mut Lite(&tx))?;
                if commit {
                    tx.commit()?;
                }
                Ok(value)
            }
            Backend::Postgres(pg) => {
                let fence = if fenced {
                    Some(self.fence().ok_or(StoreError::Fenced)?)
                } else {
                    None
                };
                let mut conn = pg.lock_writer();
                conn.transaction(|db| {
                    self.observe_write(asked);
                    if let Some(fence) = &fence {
                        lease::check(db, fence)?;
                    }
                    f(db)
                })
            }
        }
    }

    /// Runs `f` in one unfenced transaction and commits when it returns `Ok`.
    fn write<T>(&self, f: impl FnOnce(&mut dyn Db) -> Result<T>) -> Result<T> {
        self.transact(false, |db| f(db).map(|v| (v, true)))
    }

    /// Runs `f` in one transaction fenced by the lease (a pager's or sender's write) and commits
    /// when it returns `Ok`.
    fn fenced<T>(&self, f: impl FnOnce(&mut dyn Db) -> Result<T>) -> Result<T> {
        self.transact(true, |db| f(db).map(|v| (v, true)))
    }

    /// Holds the writer's connection until the guard drops (tests: nothing of the readers' path
    /// may wait for it).
    #[cfg(test)]
    fn hold_writer(
        &self,
    ) -> (
        Option<MutexGuard<'_, Connection>>,
        Option<MutexGuard<'_, pg::PgConn>>,
    ) {
        match &self.backend {
            Backend::Sqlite { writer, .. } => (Some(lock(writer)), None),
            Backend::Postgres(pg) => (None, Some(pg.lock_writer())),
        }
    }

    /// How many readers are not lent out now (tests).
    #[cfg(test)]
    fn idle_readers(&self) -> usize {
        match &self.backend {
            Backend::Sqlite { readers, .. } => readers.idle(),
            Backend::Postgres(pg) => pg.readers.idle(),
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Incidents
    // ---------------------------------------------------------------------------------------------

    /// Inserts or replaces each incident (by ID), in one transaction (fenced: the pager's).
    pub fn save_incidents(&self, incidents: &[Incident]) -> Result<()> {
        self.fenced(|db| upsert_incidents(db, incidents))
    }

    /// The incident with this ID (a reader).
    pub fn incident(&self, id: &str) -> Result<Option<Incident>> {
        let data: Option<String> = self.read(|db| {
            db.query_opt(
                "SELECT data FROM incidents WHERE id = ?1",
                vals![id],
                |mut r| r.take(0),
            )
        })?;
        data.map(|d| Ok(serde_json::from_str(&d)?)).transpose()
    }

    /// The newest incident (latest `opened_at`) of each section, sorted by section: what the
    /// escalation state machine resumes from after a restart (an open one keeps escalating, a
    /// recently resolved one can reopen), and the status page's open incidents (a reader).
    pub fn latest_per_section(&self) -> Result<Vec<Incident>> {
        self.incidents_query(
            "SELECT data FROM incidents AS i WHERE i.id = (
                 SELECT j.id FROM incidents AS j WHERE j.section = i.section
                 ORDER BY j.opened_at DESC, j.id DESC LIMIT 1)
             ORDER BY i.section",
            &[],
        )
    }

    /// Up to `limit` incidents, newest first (by `opened_at`) (a reader).
    pub fn recent_incidents(&self, limit: usize) -> Result<Vec<Incident>> {
        self.incidents_query(
            "SELECT data FROM incidents ORDER BY opened_at DESC, id DESC LIMIT ?1",
            vals![i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    /// The incidents `sql` selects (one `data` column), read on a reader and decoded after it is back.
    fn incidents_query(&self, sql: &str, params: &[sql::Value]) -> Result<Vec<Incident>> {
        let rows: Vec<String> = self.read(|db| db.query_map(sql, params, |mut r| r.take(0)))?;
        rows.iter()
            .map(|data| Ok(serde_json::from_str(data)?))
            .collect()
    }

    // ---------------------------------------------------------------------------------------------
    // Maintenance windows created at run time
    // ---------------------------------------------------------------------------------------------

    /// Records a window made through the API by `created_by` at `now`; returns its ID.
    pub fn add_window(
        &self,
        window: &MaintenanceWindow,
        created_by: &str,
        now: Timestamp,
    ) -> Result<i64> {
        let sections = serde_json::to_string(&window.sections)?;
        self.write(|db| {
            db.query_value(
                "INSERT INTO windows (sections, starts, ends, reason, created_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                vals![
                    sections,
                    window.starts.as_unix_millis(),
                    window.ends.as_unix_millis(),
                    &window.reason,
                    created_by,
                    now.as_unix_millis()
                ],
            )
        })
    }

    /// Every window created at run time, oldest first (a reader: what the HTTP routes list).
    pub fn windows(&self) -> Result<Vec<StoredWindow>> {
        let rows = self.read(window_rows)?;
        rows.into_iter().map(WindowRow::into_window).collect()
    }

    /// [`windows`](Self::windows) read on the writer's connection: the pager reads them at each step,
    /// right before its commit, and must not queue for a reader behind a flood of HTTP reads.
    pub fn pager_windows(&self) -> Result<Vec<StoredWindow>> {
        let rows = self.on_writer(window_rows)?;
        rows.into_iter().map(WindowRow::into_window).collect()
    }

    /// Ends window `id` at `now`, by `by`: from `now` on it mutes nothing and pauses no clock. The row
    /// stays, with who ended it and when. A window that has not started yet is thereby cancelled.
    pub fn end_window(&self, id: i64, by: &str, now: Timestamp) -> Result<EndWindow> {
        self.write(|db| {
            let row = db.query_opt(
                &format!("SELECT {WINDOW_COLUMNS} FROM windows WHERE id = ?1"),
                vals![id],
                WindowRow::read,
            )?;
            let Some(row) = row else {
                return Ok(EndWindow::NotFound);
            };
            let stored = row.into_window()?;
            if stored.window.ends <= now {
                return Ok(EndWindow::AlreadyOver(stored));
            }
            db.execute(
                "UPDATE windows SET ended_at = ?2, ended_by = ?3 WHERE id = ?1",
                vals![id, now.as_unix_millis(), by],
            )?;
            Ok(EndWindow::Ended(StoredWindow {
                ended: Some(WindowEnd {
                    at: now,
                    by: by.to_owned(),
                    planned_ends: stored.window.ends,
                }),
                window: MaintenanceWindow {
                    ends: now,
                    ..stored.window
                },
                ..stored
            }))
        })
    }

    // ---------------------------------------------------------------------------------------------
    // Long-lived secrets
    // ---------------------------------------------------------------------------------------------

    /// Stores `value` under `name`, replacing what was there (the engine's rule states).
    pub fn put_value(&self, name: &str, value: &[u8]) -> Result<()> {
        self.write(|db| put_kv(db, name, value))
    }

    /// The value stored under `name`, if any (on the writer's connection: the pager reads its saved
    /// rule states; no HTTP route reads these).
    pub fn value(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.on_writer(|db| kv_value(db, name))
    }

    /// The 32 random bytes stored under `name`, created on first use and kept from then on (e.g. the
    /// HMAC key that signs ack links, so links in emails sent before a restart still work after it).
    ///
    /// The candidate is drawn before the transaction, so the writer's lock is never held over the
    /// random source; `DO NOTHING` then lets the first writer win, and every caller reads the one
    /// stored value back.
    pub fn get_or_create_secret(&self, name: &str) -> Result<Vec<u8>> {
        use ring::rand::SecureRandom;
        let mut fresh = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut fresh)
            .map_err(|_| StoreError::Random)?;
        self.write(|db| {
            db.execute(
                "INSERT INTO kv (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                vals![name, fresh.as_slice()],
            )?;
            kv_value(db, name)?
                .ok_or_else(|| StoreError::Corrupt(format!("the secret {name} was not stored")))
        })
    }
}

/// The writer's mutex. A panic while it was held leaves nothing half-done (an open transaction
/// rolls back when dropped), so a poisoned lock is simply taken over.
fn lock(writer: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    writer.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets `kv` row `name` to `value`.
fn put_kv(db: &mut dyn Db, name: &str, value: &[u8]) -> Result<()> {
    db.execute(
        "INSERT INTO kv (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        vals![name, value],
    )?;
    Ok(())
}

/// The `kv` row `name`, if any.
fn kv_value(db: &mut dyn Db, name: &str) -> Result<Option<Vec<u8>>> {
    db.query_opt(
        "SELECT value FROM kv WHERE name = ?1",
        vals![name],
        |mut r| r.take(0),
    )
}

/// The `state` column's words, which its `CHECK` constraint lists: a stored format.
fn state_text(state: IncidentState) -> &'static str {
    match state {
        IncidentState::Open => "open",
        IncidentState::Resolved => "resolved",
    }
}

/// The columns [`WindowRow::read`] reads, in its order.
const WINDOW_COLUMNS: &str =
    "id, sections, starts, ends, reason, created_by, created_at, ended_at, ended_by";

/// Every row of `windows`, oldest first, as stored.
fn window_rows(db: &mut dyn Db) -> Result<Vec<WindowRow>> {
    db.query_map(
        &format!("SELECT {WINDOW_COLUMNS} FROM windows ORDER BY id"),
        &[],
        WindowRow::read,
    )
}

/// One row of `windows` as stored (times in Unix milliseconds; `sections` a JSON list). Copied out
/// on the connection, decoded by [`WindowRow::into_window`] after it is given back.
struct WindowRow {
    id: i64,
    sections: String,
    starts: i64,
    ends: i64,
    reason: String,
    created_by: String,
    created_at: i64,
    ended_at: Option<i64>,
    ended_by: Option<String>,
}

impl WindowRow {
    fn read(mut r: Row) -> Result<Self> {
        Ok(Self {
            id: r.take(0)?,
            sections: r.take(1)?,
            starts: r.take(2)?,
            ends: r.take(3)?,
            reason: r.take(4)?,
            created_by: r.take(5)?,
            created_at: r.take(6)?,
            ended_at: r.take(7)?,
            ended_by: r.take(8)?,
        })
    }

    /// The window in force: one ended early ends at `ended_at`.
    /// The `min` is defensive: [`Store::end_window`] never records an end past the planned one,
    /// but a row is read as data, and a window must never read as longer than planned.
    fn into_window(self) -> Result<StoredWindow> {
        let planned_ends = Timestamp::from_unix_millis(self.ends);
        let ended = self.ended_at.map(|at| WindowEnd {
            at: Timestamp::from_unix_millis(at),
            by: self.ended_by.unwrap_or_default(),
            planned_ends,
        });
        Ok(StoredWindow {
            id: self.id,
            window: MaintenanceWindow {
                sections: serde_json::from_str(&self.sections)?,
                starts: Timestamp::from_unix_millis(self.starts),
                ends: ended
                    .as_ref()
                    .map_or(planned_ends, |e| e.at.min(planned_ends)),
                reason: self.reason,
            },
            created_by: self.created_by,
            created_at: Timestamp::from_unix_millis(self.created_at),
            ended,
        })
    }
}

/// Writes each incident through `db` (in a transaction), inserting or replacing by ID. The JSON in `data` is the incident;
/// `section`, `state`, `opened_at` and `resolved_at` are copies of its fields for the indexes and
/// the retention's `WHERE`, and are rewritten with it every time so they cannot drift apart.
/// Shared by [`Store::save_incidents`] and the pager's commit (with its emails, in one
/// transaction).
pub(crate) fn upsert_incidents(db: &mut dyn Db, incidents: &[Incident]) -> Result<()> {
    for i in incidents {
        db.execute(
            "INSERT INTO incidents (id, section, state, opened_at, resolved_at, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET section = excluded.section, state = excluded.state,
                 opened_at = excluded.opened_at, resolved_at = excluded.resolved_at, data = excluded.data",
            vals![
                &i.id,
                &i.section,
                state_text(i.state),
                i.opened_at.as_unix_millis(),
                i.resolved_at.map(Timestamp::as_unix_millis),
                serde_json::to_string(i)?,
            ],
        )?;
    }
    Ok(())
}
