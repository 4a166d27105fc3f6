//! A real browser for tests: Debian's headless `chromium`, driven over WebDriver by Debian's
//! `chromedriver` (package `chromium-driver`) through the `fantoccini` client.
//!
//! [`ChromeDriver::start`] runs `chromedriver` on an ephemeral port of 127.0.0.1 and waits for its
//! `/status` to say ready; [`ChromeDriver::browser`] opens a session whose Chromium runs headless
//! with a fresh profile in a temporary directory, and with the flags that stop its background
//! connections (this machine is offline, and a test must not wait on the network). `chromedriver`
//! runs in a process group of its own, which the Chromium processes it starts inherit; dropping the
//! driver kills that group, so a failing test leaves no browser behind.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::process::PeerProcess;

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
    /// The leader of the group Chromium joins; declared before `dir`, so the group is killed
    /// before its directory goes.
    process: PeerProcess,
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
        let mut process =
            PeerProcess::new_group_leader("chromedriver", dir.path().join("chromedriver.log"));
        let mut command = Command::new("chromedriver");
        command.arg(format!("--port={port}"));
        let status = format!("http://127.0.0.1:{port}/status");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let ready = || {
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
        };
        let what = format!("\"ready\": true from {status}");
        if let Err(e) = process
            .spawn_and_wait(
                &mut command,
                "chromium-driver",
                &what,
                Duration::from_millis(100),
                ready,
            )
            .await
        {
            panic!("chromedriver did not start: {e}");
        }
        ChromeDriver {
            process,
            port,
            chromium,
            dir,
        }
    }

    /// `http://127.0.0.1:PORT`, the WebDriver endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new browser session: headless Chromium with [`CHROMIUM_FLAGS`], a fresh profile, and a
    /// window of `width` × `height` CSS pixels.
    pub async fn browser(&self, width: u32, height: u32) -> fantoccini::Client {
        self.session(width, height, None).await
    }

    /// A new browser session as [`ChromeDriver::browser`], but a phone's: Chrome's mobile emulation
    /// with a screen of `width` × `height` CSS pixels (pixel ratio 1, touch), so the page's viewport
    /// `<meta>` is honoured as on a phone and a page wider than the screen is zoomed out (its
    /// `innerWidth` grows past `width`). Needed below 500 px: a headless window is never narrower.
    pub async fn phone(&self, width: u32, height: u32) -> fantoccini::Client {
        let metrics = serde_json::json!({
            "deviceMetrics": { "width": width, "height": height, "pixelRatio": 1.0, "mobile": true, "touch": true },
        });
        self.session(width, height, Some(metrics)).await
    }

    async fn session(
        &self,
        width: u32,
        height: u32,
        mobile: Option<serde_json::Value>,
    ) -> fantoccini::Client {
        let profile = tempfile::Builder::new()
            .prefix("profile-")
            .tempdir_in(self.dir.path())
            .expect("a profile directory")
            .keep();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push(format!("--window-size={width},{height}"));
        let mut options = serde_json::json!({
            "binary": self.chromium.display().to_string(),
            "args": args,
        });
        if let Some(m) = mobile {
            options["mobileEmulation"] = m;
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        fantoccini::ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver could not start Chromium ({e}); log tail:\n{}",
                    self.process.log_tail()
                )
            })
    }
}
