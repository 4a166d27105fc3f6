//! Versioned migrations, in each backend's dialect. SQLite's `PRAGMA user_version`, or PostgreSQL's
//! one-row `schema_version` table, holds how many of [`MIGRATIONS`] the database has had; opening
//! applies the rest in one transaction. Never edit a shipped migration: append a new one (with both
//! dialects: the two backends always have the same version for the same tables).

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::pg::PgConn;
use super::sql::{Db, Lite};
use super::{Result, StoreError};

/// The key of the transaction-scoped advisory lock that PostgreSQL migrations take first: two
/// replicas opening one empty database at once apply each migration once, one after the other.
const MIGRATION_LOCK: i64 = 0x6877_6473_7465_7073; // "hwdsteps"

/// Migration `n` (0-based) takes the SQLite file from version `n` to `n + 1`.
///
/// Times are Unix milliseconds in `INTEGER` columns (what [`Timestamp`] holds), never SQLite's
/// date texts: no time zone or format to agree on, and they compare as numbers. Incidents are
/// stored whole as JSON (`data`), with copies of the few fields the queries filter and sort on;
/// new incident fields need no migration, only `#[serde(default)]`.
///
/// [`Timestamp`]: crate::clock::Timestamp
const MIGRATIONS: &[&str] = &[
    // 1: incidents, the outbox (= sent ledger), run-time maintenance windows, secrets.
    r#"
    CREATE TABLE incidents (
        id          TEXT PRIMARY KEY NOT NULL,
        section     TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
        opened_at   INTEGER NOT NULL,          -- Unix milliseconds, like every time here
        resolved_at INTEGER,
        data        TEXT NOT NULL              -- the whole Incident as JSON
    );
    CREATE INDEX incidents_by_section ON incidents (section, opened_at);
    CREATE INDEX incidents_by_opened ON incidents (opened_at);

    CREATE TABLE outbox (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,   -- creation order
        key             TEXT NOT NULL UNIQUE,   -- <incident>/<level>/<event>/<n> or <incident>/digest/<n>
        incident        TEXT NOT NULL,
        level           TEXT NOT NULL,          -- L1 | L2 | L3
        event           TEXT NOT NULL,          -- opened | escalated | reminder | reopened | resolved | digest
        recipients      TEXT NOT NULL,          -- JSON list of addresses
        message         BLOB NOT NULL,          -- the rendered RFC 5322 message, sent as is
        created_at      INTEGER NOT NULL,
        status          TEXT NOT NULL
                        CHECK (status IN ('pending', 'sent', 'failed', 'held', 'digested')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER,                -- set while pending
        last_error      TEXT,
        sent_at         INTEGER,
        failed_at       INTEGER,
        digest          TEXT                    -- for 'digested': the key of the digest that carried it
    );
    CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE status = 'pending';
    CREATE INDEX outbox_by_incident ON outbox (incident, created_at);
    CREATE INDEX outbox_held ON outbox (incident) WHERE status = 'held';

    CREATE TABLE windows (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        sections   TEXT NOT NULL,               -- JSON list; empty: every section
        starts     INTEGER NOT NULL,
        ends       INTEGER NOT NULL,
        reason     TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );

    CREATE TABLE kv (
        name  TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL
    );
    "#,
    // 2: a run-time window ended early keeps its row: who ended it and when (`ends` stays as planned).
    r#"
    ALTER TABLE windows ADD COLUMN ended_at INTEGER;
    ALTER TABLE windows ADD COLUMN ended_by TEXT;
    "#,
    // 3: the lease epoch a row was queued under (0: a single node, or before replicas): a new
    // leader holds an earlier term's pending rows for one lease (see notify's "Only the leader sends").
    r#"
    ALTER TABLE outbox ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    "#,
];

/// The same migrations in PostgreSQL's dialect, one for one with [`MIGRATIONS`]: `BIGINT` times,
/// `BYTEA` bytes, `BIGSERIAL` IDs (never reused, as `AUTOINCREMENT`), and keys `COLLATE "C"`, so that
/// sorting by them is bytewise as in SQLite whatever the database's locale. PostgreSQL's version 2
/// also makes the `lease` table (it was born with both; SQLite, a single node, has none).
const PG_MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE incidents (
        id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        section     TEXT COLLATE "C" NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
        opened_at   BIGINT NOT NULL,
        resolved_at BIGINT,
        data        TEXT NOT NULL
    );
    CREATE INDEX incidents_by_section ON incidents (section, opened_at);
    CREATE INDEX incidents_by_opened ON incidents (opened_at);

    CREATE TABLE outbox (
        seq             BIGSERIAL PRIMARY KEY,
        key             TEXT COLLATE "C" NOT NULL UNIQUE,
        incident        TEXT COLLATE "C" NOT NULL,
        level           TEXT NOT NULL,
        event           TEXT NOT NULL,
        recipients      TEXT NOT NULL,
        message         BYTEA NOT NULL,
        created_at      BIGINT NOT NULL,
        status          TEXT NOT NULL
                        CHECK (status IN ('pending', 'sent', 'failed', 'held', 'digested')),
        attempts        BIGINT NOT NULL DEFAULT 0,
        next_attempt_at BIGINT,
        last_error      TEXT,
        sent_at         BIGINT,
        failed_at       BIGINT,
        digest          TEXT
    );
    CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE status = 'pending';
    CREATE INDEX outbox_by_incident ON outbox (incident, created_at);
    CREATE INDEX outbox_held ON outbox (incident) WHERE status = 'held';

    CREATE TABLE windows (
        id         BIGSERIAL PRIMARY KEY,
        sections   TEXT NOT NULL,
        starts     BIGINT NOT NULL,
        ends       BIGINT NOT NULL,
        reason     TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at BIGINT NOT NULL
    );

    CREATE TABLE kv (
        name  TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        value BYTEA NOT NULL
    );
    "#,
    r#"
    ALTER TABLE windows ADD COLUMN ended_at BIGINT;
    ALTER TABLE windows ADD COLUMN ended_by TEXT;

    -- The replicas' lease (see store::lease): one row; `epoch` grows at every change of holder.
    CREATE TABLE lease (
        id         SMALLINT PRIMARY KEY CHECK (id = 1),
        holder     TEXT NOT NULL,
        epoch      BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL      -- the database's clock, never a replica's
    );
    "#,
    r#"
    ALTER TABLE outbox ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
    "#,
];

/// The schema version this build writes.
pub(crate) const VERSION: u32 = MIGRATIONS.len() as u32;

const _: () = assert!(PG_MIGRATIONS.len() == MIGRATIONS.len());

/// Applies the missing migrations, all or none. A file from a newer watchdog is refused rather than
/// written with an older idea of its tables.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    // `IMMEDIATE`: the write lock before reading the version, so two processes opening one file
    // at once cannot both apply the same migration.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    apply(
        &mut Lite(&tx),
        found,
        MIGRATIONS,
        &path.display().to_string(),
    )?;
    // Only a migrated file has its version written; an up-to-date one commits an empty transaction.
    if found < VERSION {
        tx.pragma_update(None, "user_version", VERSION)?;
    }
    tx.commit()?;
    Ok(())
}

/// Refuses a database of version `found` from a newer watchdog, else applies `migrations` after
/// `found` through `db` (inside the caller's transaction). `target` names the database.
fn apply(db: &mut dyn Db, found: u32, migrations: &[&str], target: &str) -> Result<()> {
    if found > VERSION {
        return Err(StoreError::SchemaTooNew {
            path: target.into(),
            found,
            known: VERSION,
        });
    }
    for (n, sql) in migrations.iter().enumerate().skip(found as usize) {
        db.batch(sql)?;
        tracing::info!(store = %target, version = n + 1, "store schema migrated");
    }
    Ok(())
}

/// [`migrate`] on PostgreSQL, as one transaction that first takes [`MIGRATION_LOCK`]: a second
/// replica opening at the same time waits, then finds the tables made. `target` names the database.
pub(crate) fn migrate_pg(conn: &mut PgConn, target: &str) -> Result<()> {
    conn.transaction(|db| {
        db.batch(&format!(
            "SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
             CREATE TABLE IF NOT EXISTS schema_version (
                 id      SMALLINT PRIMARY KEY CHECK (id = 1),
                 version BIGINT NOT NULL
             )"
        ))?;
        let found: Option<u32> = db.query_opt(
            "SELECT version FROM schema_version WHERE id = 1",
            &[],
            |mut r| r.take(0),
        )?;
        let found = found.unwrap_or(0);
        apply(db, found, PG_MIGRATIONS, target)?;
        if found < VERSION {
            db.execute(
                "INSERT INTO schema_version (id, version) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                super::sql::vals![VERSION],
            )?;
        }
        Ok(((), true))
    })
}

/// The version the database has (a reader's view).
pub(crate) fn version(db: &mut dyn Db) -> Result<u32> {
    match db.dialect() {
        super::sql::Dialect::Sqlite => db.query_value("PRAGMA user_version", &[]),
        super::sql::Dialect::Postgres => Ok(db
            .query_opt(
                "SELECT version FROM schema_version WHERE id = 1",
                &[],
                |mut r| r.take(0),
            )?
            .unwrap_or(0)),
    }
}
