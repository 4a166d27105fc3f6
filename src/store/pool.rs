//! The readers: a fixed pool of read-only connections, separate from the one writer connection, for
//! what the HTTP routes read: SQLite connections to the store's file, or PostgreSQL sessions (the
//! same pool lends either).
//!
//! Under WAL a reader works on the snapshot of the last commit before its read began while the writer
//! appends to the log, so neither waits for the other. A read that finds every connection in use waits
//! here, on the pool's own lock and condition variable, which the writer never takes: a flood of reads
//! queues behind itself, never in front of a commit.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags};

use super::BUSY_TIMEOUT;

/// The page cache of each reader, in KiB (SQLite's default is 2 MiB per connection). The file's pages
/// stay in the operating system's cache whatever this says; a small cap keeps a flood from leaving
/// the pool's caches resident afterwards.
const READER_CACHE_KIB: i64 = 512;

/// A fixed number of read-only connections, lent one at a time.
pub(super) struct ReaderPool<C> {
    /// The connections not lent out. Held only to push or pop one, never during a read.
    idle: Mutex<Vec<C>>,
    /// Signalled when a connection comes back.
    returned: Condvar,
}

impl<C> std::fmt::Debug for ReaderPool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderPool").finish_non_exhaustive()
    }
}

impl ReaderPool<Connection> {
    /// Opens `size` read-only connections to `path`, which must exist in WAL mode with its schema
    /// (the writer's connection made it so). Each waits up to [`BUSY_TIMEOUT`] on a lock instead of
    /// failing with `SQLITE_BUSY`: under WAL a reader meets one only for an instant (another
    /// connection recovering the log after a crash, or the last one closing and checkpointing it).
    pub(super) fn open(path: &Path, size: usize) -> rusqlite::Result<Self> {
        // `NO_MUTEX` and `URI`, as rusqlite's default open (the writer's) has them: the pool lends
        // a connection to one thread at a time, so SQLite's per-connection mutex would only cost.
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let idle = (0..size)
            .map(|_| {
                let conn = Connection::open_with_flags(path, flags)?;
                conn.busy_timeout(BUSY_TIMEOUT)?;
                // Belt and braces over the read-only open: no statement can write through it.
                conn.pragma_update(None, "query_only", true)?;
                conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
                Ok(conn)
            })
            .collect::<rusqlite::Result<_>>()?;
        Ok(Self::new(idle))
    }
}

impl<C> ReaderPool<C> {
    /// A pool lending `conns`.
    pub(super) fn new(conns: Vec<C>) -> Self {
        Self {
            idle: Mutex::new(conns),
            returned: Condvar::new(),
        }
    }

    /// A connection of the pool, waiting for one to come back when all are lent out. Every lent
    /// connection comes back when its [`Reader`] drops (a panic mid-read included), and a read holds
    /// it only while SQLite steps its rows, so the wait is bounded by the reads ahead of it.
    pub(super) fn get(&self) -> Reader<'_, C> {
        let mut idle = self.lock();
        loop {
            if let Some(conn) = idle.pop() {
                return Reader {
                    pool: self,
                    conn: Some(conn),
                };
            }
            idle = self.returned.wait(idle).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// How many connections are not lent out now.
    #[cfg(test)]
    pub(super) fn idle(&self) -> usize {
        self.lock().len()
    }

    /// The idle list. Nothing panics while holding it, so a poisoned lock is simply taken over.
    fn lock(&self) -> MutexGuard<'_, Vec<C>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection lent by the [`ReaderPool`]; it goes back when this drops.
pub(super) struct Reader<'a, C> {
    pool: &'a ReaderPool<C>,
    /// `Some` until dropped.
    conn: Option<C>,
}

impl<C> Deref for Reader<'_, C> {
    type Target = C;

    fn deref(&self) -> &C {
        self.conn.as_ref().expect("a lent connection until dropped")
    }
}

impl<C> DerefMut for Reader<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        self.conn.as_mut().expect("a lent connection until dropped")
    }
}

impl<C> Drop for Reader<'_, C> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // One connection back, one waiter woken: the others stay asleep until theirs.
            self.pool.lock().push(conn);
            self.pool.returned.notify_one();
        }
    }
}
