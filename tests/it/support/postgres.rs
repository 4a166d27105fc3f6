//! A real PostgreSQL server (Debian's `postgresql` package) for tests: `initdb` into a temporary
//! directory, then `postgres` on 127.0.0.1 and an ephemeral port, with password authentication
//! (scram-sha-256, the password in a file as a deployment gives it). One server per test binary
//! ([`shared`]), a fresh database per test ([`PgServer::create_database`]).
//!
//! PostgreSQL refuses to run as root: when the tests run as root (CI), the server runs as the
//! `postgres` user the package creates, its directory handed to that user. A missing package fails
//! the test loudly (`scripts/test.sh` installs it); nothing is ever skipped.
//!
//! Self-contained (std, libc, tempfile), so that the store's unit tests include this same file
//! (`src/store/tests.rs`) as the integration tests do.

#![allow(dead_code)] // each of the two test binaries uses part of it

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The superuser's password (a test secret: the leak tests look for it in errors and logs).
pub const PASSWORD: &str = "hwtest-pg-Secret-8d1f7c";

/// The superuser the tests connect as.
pub const USER: &str = "postgres";

/// Which backend a store test body runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The embedded file.
    Sqlite,
    /// A fresh database on the [`shared`] server.
    Postgres,
}

/// Runs each named test body (a function of a [`Kind`]) once per backend, as `sqlite::<name>` and
/// `postgres::<name>`: the store's tests are written once and run on both.
#[allow(unused_macros)] // the examples that include the support modules run no store test
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                super::$name(super::Kind::Sqlite)
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                super::$name(super::Kind::Postgres)
            })*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_both;

/// How long a start may take before the test fails with the server's log.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server; stopped (immediate shutdown) and its directory removed on drop.
pub struct PgServer {
    port: u16,
    bin: PathBuf,
    child: Mutex<Child>,
    /// Holds `data/`, the socket, the log and the password file.
    dir: tempfile::TempDir,
}

/// The one server of this test binary, started at first use. It is never dropped (statics are
/// not): it runs with a parent-death signal, so it stops when the test binary exits, and a later
/// run removes what such a server left in the temporary directory.
pub fn shared() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        remove_stale_dirs();
        // The parent-death signal fires when the *thread* that spawned the server ends: a thread
        // that lives as long as the process spawns it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(PgServer::start_with(true, None));
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("the server thread answers")
    })
}

impl PgServer {
    /// Starts a server of its own (stopped on drop).
    pub fn start() -> PgServer {
        Self::start_with(false, None)
    }

    /// Starts a server of its own that also speaks TLS (`ssl=on`) with the certificate `cert` and
    /// its key `key` (PEM files); clients choose TLS or plaintext.
    #[allow(dead_code)] // `it` only: the store's unit tests include this file too.
    pub fn start_tls(cert: &Path, key: &Path) -> PgServer {
        Self::start_with(false, Some((cert, key)))
    }

    fn start_with(die_with_parent: bool, tls: Option<(&Path, &Path)>) -> PgServer {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("hwtest-pg-")
            .tempdir()
            .expect("a temp dir for postgres");
        let owner = server_user();
        std::fs::write(dir.path().join("pw"), PASSWORD).expect("write the password file");
        if let Some((uid, gid)) = owner {
            chown(dir.path(), uid, gid);
            chown(&dir.path().join("pw"), uid, gid);
        }
        let mut extra = Vec::new();
        if let Some((leaf, leaf_key)) = tls {
            // The server reads its key only if the server's user owns it, mode 0600.
            let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::copy(leaf, &cert).expect("copy the certificate");
            std::fs::copy(leaf_key, &key).expect("copy the key");
            std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod the key");
            if let Some((uid, gid)) = owner {
                chown(&cert, uid, gid);
                chown(&key, uid, gid);
            }
            extra = vec![
                "-c".to_owned(),
                "ssl=on".to_owned(),
                "-c".to_owned(),
                format!("ssl_cert_file={}", cert.display()),
                "-c".to_owned(),
                format!("ssl_key_file={}", key.display()),
            ];
        }
        let data = dir.path().join("data");
        let out = as_server(Command::new(bin.join("initdb")), owner)
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "-A", "scram-sha-256", "--no-sync", "-E", "UTF8"])
            .arg(format!("--pwfile={}", dir.path().join("pw").display()))
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            match Self::spawn(&bin, dir.path(), port, owner, die_with_parent, &extra) {
                Ok(child) => {
                    return PgServer {
                        port,
                        bin,
                        child: Mutex::new(child),
                        dir,
                    };
                }
                Err(e) => last = e,
            }
        }
        panic!("postgres did not start: {last}");
    }

    /// Spawns `postgres` on `port` and waits until it accepts connections.
    fn spawn(
        bin: &Path,
        dir: &Path,
        port: u16,
        owner: Option<(u32, u32)>,
        die_with_parent: bool,
        extra: &[String],
    ) -> Result<Child, String> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(dir.join("postgres.log"))
            .map_err(|e| e.to_string())?;
        let mut command = as_server(Command::new(bin.join("postgres")), owner);
        command
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &port.to_string()])
            .arg("-k")
            .arg(dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=400"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        if die_with_parent {
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec here.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("spawn postgres: {e}"))?;
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "postgres exited ({status}):\n{}",
                    tail(&dir.join("postgres.log"))
                ));
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
                && Command::new(bin.join("pg_isready"))
                    .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
                    .status()
                    .is_ok_and(|s| s.success())
            {
                return Ok(child);
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "postgres not ready within {START_TIMEOUT:?}:\n{}",
                    tail(&dir.join("postgres.log"))
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A file holding the password, as `[store] password_file` takes it.
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("pw")
    }

    /// A new, empty database (`t_<pid>_<n>`), named for the calling test's exclusive use.
    pub fn create_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// Runs `sql` in `db` with `psql` (a client that is not the code under test); its output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args([
                "-d",
                db,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The last 4 KiB of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join("postgres.log"))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        // SIGQUIT: immediate shutdown (SIGTERM would wait for every client to leave).
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGQUIT);
        }
        let _ = child.wait();
    }
}

/// `/usr/lib/postgresql/<newest>/bin`, where Debian puts the server's programs (off `PATH`).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "required test peer `postgres` is not installed (Debian package `postgresql`); \
             run `bash scripts/test.sh` as root, which installs every test peer"
        )
    })
}

/// When running as root: the `postgres` user's uid and gid, which the server runs as.
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid never fails.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam returns NULL or a pointer valid until the next call; read at once (tests
    // call this from one thread at a time: the shared server starts once).
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "running as root, and there is no `postgres` user to run the server as (install the \
         Debian package `postgresql`)"
    );
    // SAFETY: non-null, just checked.
    let pw = unsafe { &*pw };
    Some((pw.pw_uid, pw.pw_gid))
}

/// `command`, run as `owner` when given (root running the tests).
fn as_server(mut command: Command, owner: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// An ephemeral port free a moment ago (a start that loses it to another process retries).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port()
}

fn tail(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(4096)..]).into_owned()
}

/// Removes the directories of shared servers of earlier runs (their postmaster died with them).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("hwtest-pg-")
        {
            continue;
        }
        let pid = std::fs::read_to_string(path.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse::<libc::pid_t>().ok());
        // SAFETY: kill with signal 0 only checks that the process exists.
        let alive = pid.is_some_and(|p| unsafe { libc::kill(p, 0) } == 0);
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|e| e > Duration::from_secs(60)));
        if !alive && old {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
