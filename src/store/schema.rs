//! Versioned migrations. `PRAGMA user_version` holds how many of [`MIGRATIONS`] the file has had;
//! opening applies the rest in one transaction. Never edit a shipped migration: append a new one.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::{Result, StoreError};

/// Migration `n` (0-based) takes the file from version `n` to `n + 1`.
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
];

/// The schema version this build writes.
pub(crate) const VERSION: u32 = MIGRATIONS.len() as u32;

/// Applies the missing migrations, all or none. A file from a newer watchdog is refused rather than
/// written with an older idea of its tables.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    // `IMMEDIATE`: the write lock before reading the version, so two processes opening one file
    // at once cannot both apply the same migration.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            known: VERSION,
        });
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)?;
        tracing::info!(store = %path.display(), version = n + 1, "store schema migrated");
    }
    // Only a migrated file has its version written; an up-to-date one commits an empty transaction.
    if found < VERSION {
        tx.pragma_update(None, "user_version", VERSION)?;
    }
    tx.commit()?;
    Ok(())
}
