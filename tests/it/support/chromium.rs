//! A real browser for tests: Debian's headless `chromium`, driven over WebDriver by Debian's
//! `chromedriver` (package `chromium-driver`) through the `fantoccini` client.
//!
//! [`ChromeDriver::start`] runs `chromedriver` on an ephemeral port of 127.0.0.1 and waits for its
//! `/status` to say ready; [`ChromeDriver::browser`] opens a session whose Chromium runs headless
//! with a fresh profile in a temporary directory, and with the flags that stop its background
//! connections (this machine is offline, and a test must not wait on the network). `chromedriver`
//! runs in a process group of its own, which the Chromium processes it starts inherit; dropping the
//! driver kills that group, so a failing test leaves no browser behind.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::STARTUP_TIMEOUT;

/// Chromium's flags: headless, no sandbox (tests run as root), no GPU, and none of the background
/// traffic (updates, sync, QUIC probes, first-run pages) that an offline machine would stall on.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// A running `chromedriver`; killed (and its temp dir removed) on drop.
pub struct ChromeDriver {
    child: Option<Child>,
    port: u16,
    chromium: PathBuf,
    dir: tempfile::TempDir,
}

impl ChromeDriver {
    /// Starts `chromedriver` and waits until it is ready. Panics naming the Debian packages and
    /// `scripts/test.sh` when `chromium` or `chromedriver` is missing.
    pub async fn start() -> ChromeDriver {
        super::init();
        super::require_program("chromium", "chromium");
        super::require_program("chromedriver", "chromium-driver");
        let chromium = super::find_program("chromium").expect("chromium was just found");
        let dir = tempfile::Builder::new()
            .prefix("hwtest-chromium-")
            .tempdir()
            .expect("create a temp dir for chromedriver");
        let port = super::free_port();
        let log_path = dir.path().join("chromedriver.log");
        let log = File::create(&log_path).expect("create the chromedriver log");
        let log_err = log.try_clone().expect("clone the log handle");
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run chromedriver ({e}); it is Debian's `chromium-driver`, which \
                     `bash scripts/test.sh` installs"
                )
            });
        let mut driver = ChromeDriver {
            child: Some(child),
            port,
            chromium,
            dir,
        };
        let status = format!("{}/status", driver.url());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let ready = super::wait_until(STARTUP_TIMEOUT, Duration::from_millis(100), || {
            let req = http.get(&status).send();
            async move {
                match req.await {
                    Ok(resp) => resp
                        .json::<serde_json::Value>()
                        .await
                        .is_ok_and(|v| v["value"]["ready"] == true),
                    Err(_) => false,
                }
            }
        })
        .await;
        if let Err(e) = ready {
            let tail = super::log_tail(&log_path, 4096);
            driver.stop();
            panic!("chromedriver on port {port} was not ready ({e}); log tail:\n{tail}");
        }
        driver
    }

    /// `http://127.0.0.1:PORT`, the WebDriver endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new browser session: headless Chromium with [`CHROMIUM_FLAGS`], a fresh profile, and a
    /// window of `width` × `height` CSS pixels.
    pub async fn browser(&self, width: u32, height: u32) -> fantoccini::Client {
        let profile = tempfile::Builder::new()
            .prefix("profile-")
            .tempdir_in(self.dir.path())
            .expect("a profile directory")
            .keep();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!("--window-size={width},{height}"));
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": self.chromium.display().to_string(),
                "args": args,
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        fantoccini::ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver could not start Chromium ({e}); log tail:\n{}",
                    super::log_tail(&self.dir.path().join("chromedriver.log"), 4096)
                )
            })
    }

    /// Kills `chromedriver` and the browsers it started (its process group), and reaps it.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill(2) on the process group of our un-reaped child (its ID is the group's,
                // and cannot be recycled before the reap below) has no memory-safety preconditions.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
            }
            super::kill_child(&mut child);
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        self.stop();
    }
}
