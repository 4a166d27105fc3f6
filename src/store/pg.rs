//! The PostgreSQL backend (`[store] url`): the store shared by an active/standby pair.
//!
//! # Why a runtime of its own, and `block_on`
//!
//! The store's API is synchronous (it was made for SQLite) and is called from blocking threads *and*
//! from async code (the sign-in's sessions, the pages, the daemon's start). The sync `postgres`
//! crate panics when its `Client` is used on a tokio runtime thread, and `block_in_place` is not
//! allowed on the current-thread runtimes tests use. So the connections are tokio-postgres ones whose
//! socket tasks run on the store's own one-thread runtime, and a call waits for its query future with
//! futures-executor's `block_on` on the caller's thread, inside that runtime's context (for the
//! timers) and outside tokio's cooperative budget. The caller's thread blocks as it did on the
//! SQLite file; nothing ever starts a runtime inside another.
//!
//! # Bounded, and never a crash
//!
//! Every connect waits at most `connect_timeout`, every statement at most `statement_timeout` (the
//! server cancels it then, and the client gives up a moment later if the network itself hangs).
//! Sessions also set `idle_in_transaction_session_timeout`, so a replica cut off mid-transaction never
//! holds a lock (the lease's `FOR SHARE`, an outbox row) past that bound. A failure is a
//! [`StoreError::Unavailable`] (connection refused, lost, timed out) or [`StoreError::Postgres`] (the
//! server refused the statement); a lost connection is dropped and the next call connects again,
//! after a backoff that doubles from [`INITIAL_BACKOFF`] to [`MAX_BACKOFF`]: while it runs, calls fail
//! at once instead of each waiting out a connect timeout. The password is handed to the driver only;
//! errors and logs name `user@host:port/dbname`.

use std::collections::HashMap;
use std::error::Error as _;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Socket, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::pool::ReaderPool;
use super::sql::{Db, Dialect, Row, Value};
use super::{Result, StoreError};
use crate::config::{PgTls, PostgresConfig};

/// The wait before the first reconnect after a failed connect; it doubles at each failure.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait between two connects: a database that comes back is used again within this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How much longer than `statement_timeout` the client waits for an answer before it calls the
/// connection lost: the server's own cancel (with its clear error) comes first when it is alive.
const CLIENT_GRACE: Duration = Duration::from_secs(1);

/// The PostgreSQL side of a [`Store`](super::Store): the writer's connection and the readers'.
pub(super) struct Postgres {
    /// Every write and the write side's reads, one at a time (as SQLite's writer).
    pub(super) writer: Mutex<PgConn>,
    /// Read-only sessions for the HTTP routes' reads.
    pub(super) readers: ReaderPool<PgConn>,
    /// Runs the connections' socket tasks and the timers; shut down (in the background, which is
    /// allowed inside async code) when the store drops.
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").finish_non_exhaustive()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Postgres {
    /// Starts the runtime and makes the connections (the writer's at once, to migrate; the readers'
    /// at their first use).
    pub(super) fn open(config: &PostgresConfig) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("harven-store-pg")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the store's connection thread: {e}"))
            })?;
        let tls = tls_connector(config)?;
        let config = Arc::new(config.clone());
        let conn = |read_only| PgConn {
            config: Arc::clone(&config),
            tls: tls.clone(),
            handle: runtime.handle().clone(),
            read_only,
            live: None,
            retry_at: None,
            backoff: INITIAL_BACKOFF,
        };
        let writer = conn(false);
        let readers = ReaderPool::new((0..config.readers).map(|_| conn(true)).collect());
        Ok(Self {
            writer: Mutex::new(writer),
            readers,
            runtime: Some(runtime),
        })
    }

    /// The writer's connection. A panic while it was held leaves at worst an open transaction,
    /// which the next `BEGIN` refuses and the connection is then remade: taken over.
    pub(super) fn lock_writer(&self) -> MutexGuard<'_, PgConn> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One session to the server, made at first use and remade after it is lost.
pub(super) struct PgConn {
    config: Arc<PostgresConfig>,
    /// With `sslmode=verify-full`: the TLS client every connect uses (TLS required, never
    /// plaintext). `None`: plaintext.
    tls: Option<MakeRustlsConnect>,
    handle: tokio::runtime::Handle,
    /// A reader's session: `default_transaction_read_only`, so no statement can write through it.
    read_only: bool,
    live: Option<Live>,
    /// After a failed connect: calls fail at once until then.
    retry_at: Option<Instant>,
    /// The wait after the next failed connect.
    backoff: Duration,
}

/// A connected session: the client, its prepared statements, and its socket task.
struct Live {
    client: Client,
    /// By the store's SQL text (before placeholder rewriting): each prepared once per session.
    statements: HashMap<String, Statement>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Live {
    fn drop(&mut self) {
        // Closes the socket now, even when the network hangs: the server then rolls back whatever
        // this session had open.
        self.task.abort();
    }
}

/// Waits for `fut` on this thread, at most `limit`, in `handle`'s context (for the timer) and
/// outside tokio's cooperative budget (a caller inside a task whose budget is spent would
/// otherwise be told to yield for ever).
fn wait<F: Future>(handle: &tokio::runtime::Handle, limit: Duration, fut: F) -> Option<F::Output> {
    let _context = handle.enter();
    futures_executor::block_on(tokio::task::unconstrained(tokio::time::timeout(limit, fut))).ok()
}

impl PgConn {
    /// `user@host:port/dbname`: what errors and logs name (never the password).
    fn target(&self) -> String {
        self.config.target()
    }

    /// The session, connecting first when there is none (unless the backoff still runs).
    fn live(&mut self) -> Result<&mut Live> {
        if self.live.is_none() {
            let now = Instant::now();
            if let Some(at) = self.retry_at.filter(|at| now < *at) {
                return Err(StoreError::Unavailable(format!(
                    "{} is unreachable; the next attempt is in {} ms",
                    self.target(),
                    (at - now).as_millis()
                )));
            }
            match self.connect() {
                Ok(live) => {
                    self.retry_at = None;
                    self.backoff = INITIAL_BACKOFF;
                    self.live = Some(live);
                }
                Err(e) => {
                    self.retry_at = Some(Instant::now() + self.backoff);
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    return Err(e);
                }
            }
        }
        Ok(self.live.as_mut().expect("connected above"))
    }

    fn connect(&self) -> Result<Live> {
        let c = &self.config;
        let ms = |d: Duration| d.as_millis().max(1);
        let mut options = format!(
            "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            ms(c.statement_timeout),
            ms(c.statement_timeout)
        );
        if self.read_only {
            options.push_str(" -c default_transaction_read_only=on");
        }
        let mut config = tokio_postgres::Config::new();
        config
            .host(&c.host)
            .port(c.port)
            .user(&c.user)
            .dbname(&c.dbname)
            .application_name("harven-watchdog")
            .options(options)
            .connect_timeout(c.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10));
        if let Some(password) = &c.password {
            config.password(password.expose());
        }
        let unavailable = |what: String| {
            StoreError::Unavailable(format!("cannot connect to {}: {what}", self.target()))
        };
        let session = match &self.tls {
            None => self.open_session(&config, NoTls),
            Some(tls) => {
                config.ssl_mode(SslMode::Require);
                self.open_session(&config, tls.clone())
            }
        };
        let (client, task) = session
            .ok_or_else(|| unavailable(format!("no answer within {:?}", c.connect_timeout)))?
            .map_err(|e| unavailable(describe(&e)))?;
        Ok(Live {
            client,
            statements: HashMap::new(),
            task,
        })
    }

    /// Connects with `tls` (within the connect timeout) and spawns the socket's task; `None`: no
    /// answer in time.
    fn open_session<T>(
        &self,
        config: &tokio_postgres::Config,
        tls: T,
    ) -> Option<Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>>
    where
        T: MakeTlsConnect<Socket>,
        T::Stream: Send + 'static,
    {
        let connected = wait(
            &self.handle,
            self.config.connect_timeout,
            config.connect(tls),
        )?;
        Some(
            connected.map(|(client, connection)| {
                (client, self.handle.spawn(run_connection(connection)))
            }),
        )
    }

    /// Runs `call` on the session (connecting first), at most the statement timeout and its grace;
    /// a session lost or timed out is dropped, so the next call connects again.
    fn call<T>(
        &mut self,
        sql: &str,
        call: impl AsyncFnOnce(&Client, &Statement) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T> {
        let limit = self.config.statement_timeout + CLIENT_GRACE;
        let handle = self.handle.clone();
        let target = self.target();
        let live = self.live()?;
        let outcome = (|| {
            let statement = match live.statements.get(sql) {
                Some(s) => s.clone(),
                None => match wait(&handle, limit, live.client.prepare(&placeholders(sql)))? {
                    Ok(prepared) => {
                        live.statements.insert(sql.to_owned(), prepared.clone());
                        prepared
                    }
                    Err(e) => return Some(Err(e)),
                },
            };
            wait(&handle, limit, call(&live.client, &statement))
        })();
        self.settle(&target, limit, outcome)
    }

    /// Runs `sql` (no parameters, possibly several statements) with the simple protocol.
    fn simple(&mut self, sql: &str) -> Result<()> {
        let limit = self.config.statement_timeout + CLIENT_GRACE;
        let handle = self.handle.clone();
        let target = self.target();
        let live = self.live()?;
        let outcome = wait(&handle, limit, live.client.batch_execute(sql));
        self.settle(&target, limit, outcome)
    }

    /// The result of a call that waited at most `limit` (`None`: no answer in time): a session
    /// that timed out or was lost is dropped, so the next call connects again.
    fn settle<T>(
        &mut self,
        target: &str,
        limit: Duration,
        outcome: Option<Result<T, tokio_postgres::Error>>,
    ) -> Result<T> {
        match outcome {
            Some(Ok(v)) => Ok(v),
            None => {
                self.live = None;
                Err(StoreError::Unavailable(format!(
                    "{target} did not answer within {limit:?}"
                )))
            }
            Some(Err(e)) => {
                if live_closed(self.live.as_ref()) {
                    self.live = None;
                }
                Err(classify(target, e))
            }
        }
    }

    /// Runs `f` in one transaction: committed when it returns `Ok((_, true))`, rolled back on
    /// `Ok((_, false))` or an error. A commit whose answer is lost is reported `Unavailable`: it
    /// may or may not have happened, as with any database.
    pub(super) fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut dyn Db) -> Result<(T, bool)>,
    ) -> Result<T> {
        self.simple("BEGIN")?;
        match f(&mut Session(self)) {
            Ok((value, commit)) => {
                self.simple(if commit { "COMMIT" } else { "ROLLBACK" })?;
                Ok(value)
            }
            Err(e) => {
                // A lost session rolls back by itself (the server ends it).
                let _ = self.simple("ROLLBACK");
                Err(e)
            }
        }
    }

    /// This connection as a [`Db`] with no transaction: each statement commits by itself.
    pub(super) fn session(&mut self) -> Session<'_> {
        Session(self)
    }
}

/// Whether the session is gone (the server closed it, or its socket failed).
fn live_closed(live: Option<&Live>) -> bool {
    live.is_none_or(|l| l.client.is_closed())
}

/// Drives one session's socket until it closes; its end is the calls' business, not a log line.
/// The TLS client of `sslmode=verify-full`: the server's certificate and name checked against the
/// platform's roots plus `store.ca_file` (read again here; validation read it at start), over the
/// process's ring provider. `None` for plaintext.
fn tls_connector(config: &PostgresConfig) -> Result<Option<MakeRustlsConnect>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let PgTls::Verify { ca_file } = &config.tls else {
        return Ok(None);
    };
    let fail =
        |what: String| StoreError::Unavailable(format!("TLS to {}: {what}", config.target()));
    let extra = match ca_file {
        None => Vec::new(),
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| fail(format!("store.ca_file {}: {e}", path.display())))?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, Arc::clone(&provider))
            .map_err(|e| fail(format!("cannot load the certificate roots: {e}")))?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(client)))
}

async fn run_connection<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = connection.await;
}

/// A driver error in words: the server's own message when it sent one, else the driver's (and its
/// cause: "connection refused"). Neither ever holds the password.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match e.source() {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// A driver error as a [`StoreError`]: the ones that say the database cannot serve now (gone,
/// shutting down, a timeout) are `Unavailable`; a statement it refused is `Postgres`.
fn classify(target: &str, e: tokio_postgres::Error) -> StoreError {
    let unavailable = [
        SqlState::QUERY_CANCELED,
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
        SqlState::TOO_MANY_CONNECTIONS,
    ];
    match e.code() {
        Some(code) if !unavailable.contains(code) => StoreError::Postgres(describe(&e)),
        None if !e.is_closed() && e.source().is_none_or(|s| !s.is::<std::io::Error>()) => {
            StoreError::Postgres(describe(&e))
        }
        _ => StoreError::Unavailable(format!("{target}: {}", describe(&e))),
    }
}

/// The store's SQL with SQLite's `?N` placeholders as PostgreSQL's `$N`. No statement of the store
/// has a `?` inside a literal.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// A [`PgConn`] as a [`Db`].
pub(super) struct Session<'c>(&'c mut PgConn);

impl Db for Session<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        self.0.call(sql, async |client, statement| {
            client.execute(statement, &params).await
        })
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        let rows = self.0.call(sql, async |client, statement| {
            client.query(statement, &params).await
        })?;
        rows.iter().map(row).collect()
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.0.simple(sql)
    }
}

/// A PostgreSQL row as [`Value`]s, by each column's type (the schema's `BIGINT`, `TEXT`, `BYTEA`;
/// `INTEGER` and `BOOLEAN` from expressions).
fn row(r: &tokio_postgres::Row) -> Result<Row> {
    let decode = |e: tokio_postgres::Error| StoreError::Corrupt(describe(&e));
    r.columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let ty = column.type_();
            let value = if *ty == Type::INT8 {
                r.try_get::<_, Option<i64>>(i).map_err(decode)?.into()
            } else if *ty == Type::INT4 {
                r.try_get::<_, Option<i32>>(i)
                    .map_err(decode)?
                    .map(i64::from)
                    .into()
            } else if *ty == Type::INT2 {
                r.try_get::<_, Option<i16>>(i)
                    .map_err(decode)?
                    .map(i64::from)
                    .into()
            } else if *ty == Type::BOOL {
                r.try_get::<_, Option<bool>>(i)
                    .map_err(decode)?
                    .map(i64::from)
                    .into()
            } else if *ty == Type::BYTEA {
                match r.try_get::<_, Option<Vec<u8>>>(i).map_err(decode)? {
                    Some(b) => Value::Blob(b),
                    None => Value::Null,
                }
            } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty) {
                r.try_get::<_, Option<String>>(i).map_err(decode)?.into()
            } else {
                return Err(StoreError::Corrupt(format!(
                    "column {} has the unexpected type {ty}",
                    column.name()
                )));
            };
            Ok(value)
        })
        .collect::<Result<_>>()
        .map(Row)
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Self::Null => Ok(IsNull::Yes),
            Self::Int(i) if *ty == Type::INT8 => i.to_sql(ty, out),
            Self::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Self::Int(i) if *ty == Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
            Self::Text(s) => s.to_sql(ty, out),
            Self::Blob(b) => b.to_sql(ty, out),
            Self::Int(_) => Err(format!("an integer cannot be bound to {ty}").into()),
        }
    }

    /// Every type: [`Value::to_sql`] checks the pair it is given.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_and_nothing_else() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE b = ?1 AND c IN (?2, ?12) AND d = '?'"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $12) AND d = '?'"
        );
    }
}
