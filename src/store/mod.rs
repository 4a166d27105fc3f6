//! The durable store: one embedded SQLite file holding incidents, the email outbox (which is also the
//! sent ledger), maintenance windows created at run time, and a few long-lived secrets.
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

mod outbox;
mod pool;
pub mod retention;
mod schema;
mod secrets;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::clock::Timestamp;
use crate::config::MaintenanceWindow;
use crate::incident::{Incident, IncidentState};

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
    /// Read-only connections for the HTTP routes' reads. Declared before `writer` so they close
    /// first: the last connection to close checkpoints the log and removes it, which only the
    /// writer can do.
    readers: pool::ReaderPool,
    /// Every write, and the write side's own reads. No read of the readers' path ever locks it.
    writer: Mutex<Connection>,
    /// The database file, as given to [`Store::open`].
    path: PathBuf,
    metrics: StoreMetrics,
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
        Ok(Self {
            readers,
            writer: Mutex::new(conn),
            path,
            metrics: StoreMetrics::new(),
        })
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

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the file (`PRAGMA user_version`), as the readers see it.
    pub fn schema_version(&self) -> Result<u32> {
        self.read(|conn| Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?))
    }

    /// Runs `f` on a connection of the readers' pool, waiting for one when all are in use. This is
    /// the only way to the readers, and it never touches the writer: `f` should copy its rows out
    /// and leave decoding to the caller, after the connection is back.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let asked = Instant::now();
        let conn = self.readers.get();
        self.metrics
            .read_wait
            .observe(asked.elapsed().as_secs_f64());
        f(&conn)
    }

    /// The writer's connection, for a read of the write side (no transaction: each statement reads
    /// the latest commit).
    fn writer(&self) -> MutexGuard<'_, Connection> {
        let asked = Instant::now();
        let conn = self.lock_writer();
        self.metrics
            .write_wait
            .observe(asked.elapsed().as_secs_f64());
        conn
    }

    /// The writer's mutex. A panic while it was held leaves nothing half-done (an open transaction
    /// rolls back when dropped), so a poisoned lock is simply taken over.
    fn lock_writer(&self) -> MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Begins an `IMMEDIATE` transaction on `conn` (the writer's, locked since `asked`): the write
    /// lock is taken at the start, so two writers never deadlock upgrading a read lock. Records the
    /// wait until then.
    fn begin<'c>(&self, conn: &'c mut Connection, asked: Instant) -> Result<Transaction<'c>> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        self.metrics
            .write_wait
            .observe(asked.elapsed().as_secs_f64());
        Ok(tx)
    }

    /// Runs `f` in one transaction on the writer's connection and commits when it returns `Ok`.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let asked = Instant::now();
        let mut conn = self.lock_writer();
        let tx = self.begin(&mut conn, asked)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    // ---------------------------------------------------------------------------------------------
    // Incidents
    // ---------------------------------------------------------------------------------------------

    /// Inserts or replaces each incident (by ID), in one transaction.
    pub fn save_incidents(&self, incidents: &[Incident]) -> Result<()> {
        self.write(|tx| upsert_incidents(tx, incidents))
    }

    /// The incident with this ID (a reader).
    pub fn incident(&self, id: &str) -> Result<Option<Incident>> {
        let data: Option<String> = self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT data FROM incidents WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?)
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
            [],
        )
    }

    /// Up to `limit` incidents, newest first (by `opened_at`) (a reader).
    pub fn recent_incidents(&self, limit: usize) -> Result<Vec<Incident>> {
        self.incidents_query(
            "SELECT data FROM incidents ORDER BY opened_at DESC, id DESC LIMIT ?1",
            [i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    /// The incidents `sql` selects (one `data` column), read on a reader and decoded after it is back.
    fn incidents_query(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Incident>> {
        let rows: Vec<String> = self.read(|conn| {
            Ok(conn
                .prepare_cached(sql)?
                .query_map(params, |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?)
        })?;
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
        self.write(|tx| {
            tx.execute(
                "INSERT INTO windows (sections, starts, ends, reason, created_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    sections,
                    window.starts.as_unix_millis(),
                    window.ends.as_unix_millis(),
                    window.reason,
                    created_by,
                    now.as_unix_millis()
                ],
            )?;
            Ok(tx.last_insert_rowid())
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
        let rows = window_rows(&self.writer())?;
        rows.into_iter().map(WindowRow::into_window).collect()
    }

    /// Ends window `id` at `now`, by `by`: from `now` on it mutes nothing and pauses no clock. The row
    /// stays, with who ended it and when. A window that has not started yet is thereby cancelled.
    pub fn end_window(&self, id: i64, by: &str, now: Timestamp) -> Result<EndWindow> {
        self.write(|tx| {
            let row = tx
                .query_row(
                    &format!("SELECT {WINDOW_COLUMNS} FROM windows WHERE id = ?1"),
                    [id],
                    WindowRow::read,
                )
                .optional()?;
            let Some(row) = row else {
                return Ok(EndWindow::NotFound);
            };
            let stored = row.into_window()?;
            if stored.window.ends <= now {
                return Ok(EndWindow::AlreadyOver(stored));
            }
            tx.execute(
                "UPDATE windows SET ended_at = ?2, ended_by = ?3 WHERE id = ?1",
                params![id, now.as_unix_millis(), by],
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
        self.write(|tx| {
            tx.execute(
                "INSERT INTO kv (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )?;
            Ok(())
        })
    }

    /// The value stored under `name`, if any (on the writer's connection: the pager reads its saved
    /// rule states; no HTTP route reads these).
    pub fn value(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .writer()
            .prepare_cached("SELECT value FROM kv WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?)
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
        self.write(|tx| {
            tx.execute(
                "INSERT INTO kv (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, fresh.as_slice()],
            )?;
            Ok(tx.query_row("SELECT value FROM kv WHERE name = ?1", [name], |r| r.get(0))?)
        })
    }
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
fn window_rows(conn: &Connection) -> Result<Vec<WindowRow>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {WINDOW_COLUMNS} FROM windows ORDER BY id"))?
        .query_map([], WindowRow::read)?
        .collect::<rusqlite::Result<_>>()?)
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
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            sections: r.get(1)?,
            starts: r.get(2)?,
            ends: r.get(3)?,
            reason: r.get(4)?,
            created_by: r.get(5)?,
            created_at: r.get(6)?,
            ended_at: r.get(7)?,
            ended_by: r.get(8)?,
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

/// Writes each incident in `tx`, inserting or replacing by ID. The JSON in `data` is the incident;
/// `section`, `state`, `opened_at` and `resolved_at` are copies of its fields for the indexes and
/// the retention's `WHERE`, and are rewritten with it every time so they cannot drift apart.
/// Shared by [`Store::save_incidents`] and the pager's commit (with its emails, in one
/// transaction).
pub(crate) fn upsert_incidents(tx: &Transaction<'_>, incidents: &[Incident]) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO incidents (id, section, state, opened_at, resolved_at, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET section = excluded.section, state = excluded.state,
             opened_at = excluded.opened_at, resolved_at = excluded.resolved_at, data = excluded.data",
    )?;
    for i in incidents {
        stmt.execute(params![
            i.id,
            i.section,
            state_text(i.state),
            i.opened_at.as_unix_millis(),
            i.resolved_at.map(Timestamp::as_unix_millis),
            serde_json::to_string(i)?,
        ])?;
    }
    Ok(())
}
