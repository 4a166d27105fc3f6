//! The process plumbing shared by the test peers that are real programs (Prometheus, redis-server,
//! aiosmtpd, chromedriver): [`PeerProcess`] spawns one with its output appended to a log file, waits
//! until it is ready (or has died), stops it and reads its log back; [`start_on_free_port`] retries a
//! start on a new ephemeral port when another process took the port first.
//!
//! What is particular to a peer (its command line, what "ready" means, its API) stays in the peer's
//! module; this one knows nothing of any protocol.

use std::future::Future;
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::STARTUP_TIMEOUT;

/// How many ephemeral ports [`start_on_free_port`] tries before it gives up.
const PORT_ATTEMPTS: usize = 5;

/// How much of the log [`PeerProcess::log_tail`] returns: enough for a startup error.
const LOG_TAIL_BYTES: usize = 4096;

/// One test peer's process (at most one at a time) and the log file its stdout and stderr go to;
/// killed on drop.
///
/// The log is opened in append mode, so the output of every run (across restarts) stays readable.
pub struct PeerProcess {
    /// The program's name in messages (`prometheus`, `redis-server`…).
    name: &'static str,
    /// The file stdout and stderr are appended to.
    log: PathBuf,
    /// The running process; `None` before the first spawn and once stopped.
    child: Option<Child>,
    /// Spawn the child as the leader of a new process group and kill that whole group rather than
    /// the child alone: for a peer that starts processes of its own (chromedriver starts
    /// Chromium), so none outlives it.
    group: bool,
}

impl PeerProcess {
    /// A peer named `name` (for messages) whose output goes to `log`; nothing runs yet.
    pub fn new(name: &'static str, log: PathBuf) -> Self {
        PeerProcess {
            name,
            log,
            child: None,
            group: false,
        }
    }

    /// Like [`new`](Self::new), for a peer that starts processes of its own: it is spawned as the
    /// leader of a new process group, which its children inherit, and killing it kills the group.
    pub fn new_group_leader(name: &'static str, log: PathBuf) -> Self {
        let mut process = Self::new(name, log);
        process.group = true;
        process
    }

    /// The log file (it exists once the peer has been spawned).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last 4 KiB of the peer's output (every run so far), for failure messages.
    pub fn log_tail(&self) -> String {
        super::log_tail(&self.log, LOG_TAIL_BYTES)
    }

    /// The process ID while one was spawned and not stopped (it may have exited by itself).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running (it may never have started, or been stopped or killed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// The exit status of the process once it has exited by itself; `None` while it runs, or when
    /// none was spawned.
    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Spawns `command` (stdin closed, stdout and stderr appended to the log), then polls `ready`
    /// every `poll` until it holds. When the process exits first, or is not ready within
    /// [`STARTUP_TIMEOUT`], it is killed and the error says which, with `what` (the sign of readiness
    /// awaited, e.g. `+PONG to PING on 127.0.0.1:6379`) and the log tail. `package` names the
    /// Debian package for the message when the program cannot run at all.
    pub async fn spawn_and_wait<R, Fut>(
        &mut self,
        command: &mut Command,
        package: &str,
        what: &str,
        poll: Duration,
        mut ready: R,
    ) -> Result<(), String>
    where
        R: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        assert!(
            self.child.is_none(),
            "{} is already running; stop it first",
            self.name
        );
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open the {} log file: {e}", self.name))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot clone the log file handle: {e}"))?;
        if self.group {
            command.process_group(0);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run `{}` ({e}); it is in the Debian package `{package}`, which \
                     `bash scripts/test.sh` installs",
                    command.get_program().display()
                )
            })?;
        self.child = Some(child);
        let outcome = super::wait_for_some(STARTUP_TIMEOUT, poll, || {
            // Checked before each probe, so a peer that died is reported at once, not at the deadline.
            let exit = self.exit_status();
            let probe = ready();
            async move {
                match exit {
                    Some(status) => Some(Err(status)),
                    None => probe.await.then_some(Ok(())),
                }
            }
        })
        .await;
        let exited = match outcome {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(status)) => Some(status),
            Err(_) => None,
        };
        self.kill();
        let (name, tail) = (self.name, self.log_tail());
        Err(match exited {
            Some(status) => {
                format!(
                    "{name} exited with {status} before it was ready ({what}); log tail:\n{tail}"
                )
            }
            None => format!(
                "{name} was not ready ({what}) within {STARTUP_TIMEOUT:?}; log tail:\n{tail}"
            ),
        })
    }

    /// Kills the process at once (SIGKILL, to its group for a group leader), as a crash would, and
    /// reaps it. Does nothing when none runs.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if self.group
            && let Ok(pgid) = libc::pid_t::try_from(child.id())
        {
            // SAFETY: kill(2) on the process group of our un-reaped child (its ID is the group's,
            // and cannot be recycled before the reap below) has no memory-safety preconditions.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        super::kill_child(&mut child);
    }

    /// Stops the process gracefully: SIGTERM, then SIGKILL once `grace` has passed. Does nothing
    /// when none runs.
    pub fn terminate(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            super::terminate_child(&mut child, grace);
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a peer on a fresh port of `ip` (from [`free_port_on`](super::free_port_on)) with
/// `start`, which records the port it is given. That port cannot be reserved, so when `start` fails
/// because the address is in use (another process took the port meanwhile) this tries again on a
/// new one, up to five times. Panics naming `name` on any other error, or when every port clashed.
pub async fn start_on_free_port<S>(name: &str, ip: IpAddr, mut start: S)
where
    S: AsyncFnMut(u16) -> Result<(), String>,
{
    let mut last_error = String::new();
    for _attempt in 0..PORT_ATTEMPTS {
        let port = super::free_port_on(ip);
        match start(port).await {
            Ok(()) => return,
            // Programs spell it "address already in use" or "Address already in use".
            Err(e) if e.to_lowercase().contains("address already in use") => last_error = e,
            Err(e) => panic!("{name} did not start: {e}"),
        }
    }
    panic!("{name} did not start (ports kept clashing): {last_error}");
}
