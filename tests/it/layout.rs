//! The emails and the pages fit the screen: measured in a real renderer, headless Chromium driven
//! over WebDriver by `chromedriver` (both installed by `scripts/test.sh`, as for `browser`).
//!
//! Each document is opened in a window of a given width and must not scroll sideways: the page's
//! `document.documentElement.scrollWidth` is at most `window.innerWidth`, and no element that
//! scrolls on its own (`overflow-x: auto`/`scroll`, such as a wrapped table) is wider than its box
//! either, since a table that must be scrolled inside its box is as unreadable as a page that must.
//!
//! - The emails' HTML part, at 600 px (the width mail clients lay out at) and 375 px (a phone): the
//!   L1 `opened` email and the `resolved` email (timeline, postmortem draft) of the Supabase outage
//!   that `email` builds with the real engine (a full diagnosis table, commands, links), in both
//!   locales, the L1 email with its symptom charts (the PNG parts written beside the HTML and named
//!   in place of their `cid:`), and the L1 email a running daemon really sent through the SMTP
//!   server.
//! - The pages at 375 px and 1280 px: `/` (an open incident with its value and chart thumbnail), an
//!   incident's page with its chart and diagnosis table, `/maintenance`
//!   and `/signin`, anonymous and then signed in (the forms), and the `/act/{token}` confirmation
//!   page of the received email's resolve link; a maintenance window and an acknowledgement carry long
//!   unbroken words (a URL, a rota name) that must wrap.
//!
//! Every screenshot is written to `<target dir>/browser/layout-<name>-<width>.png` (the email's HTML
//! next to it), and a table of the figures is printed; the assertions come after every measure, so a
//! failure lists every document that overflows.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, Locator};
use harven_watchdog::incident::{Level, PageEvent};
use harven_watchdog::runbook::Locale;
use serde_json::{Value, json};

use crate::support::backend::{Scenario, SimBackend, StatusStyle};
use crate::support::chromium::ChromeDriver;
use crate::support::daemon::{TestDaemon as Daemon, paging_env};
use crate::support::prometheus::PrometheusServer;
use crate::support::smtp::{ReceivedMail, SmtpServer, advance_until};

const TOKEN: &str = "layout-token-8c2e4a6b1d3f5a7c9e0b";

/// The widths, in CSS pixels: a phone, and what mail clients lay an email out at.
const PHONE: u32 = 375;
const EMAIL: u32 = 600;
/// A laptop's browser window.
const DESKTOP: u32 = 1280;
/// Tall enough that a screenshot (of the viewport) holds the whole of most documents.
const HEIGHT: u32 = 4000;

/// The widths of the page, of its viewport, and what scrolls inside its own box.
const MEASURE: &str = r#"
const boxes = [];
for (const el of document.querySelectorAll('body *')) {
  const x = getComputedStyle(el).overflowX;
  if ((x === 'auto' || x === 'scroll') && el.scrollWidth > el.clientWidth) {
    boxes.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
      (el.className ? '.' + String(el.className).replace(/ /g, '.') : '') +
      ' ' + el.scrollWidth + ' > ' + el.clientWidth);
  }
}
return {
  inner: window.innerWidth,
  scroll: document.documentElement.scrollWidth,
  height: document.documentElement.scrollHeight,
  boxes: boxes,
};
"#;

/// One document measured at one width.
struct Fit {
    name: String,
    width: u32,
    inner: u64,
    scroll: u64,
    boxes: Vec<String>,
    png: PathBuf,
}

impl Fit {
    fn fits(&self) -> bool {
        self.inner == u64::from(self.width) && self.scroll <= self.inner && self.boxes.is_empty()
    }
}

/// `<target dir>/browser`: `$CARGO_TARGET_DIR` when set, else the target directory this test binary
/// was built into (`<target>/debug/deps/it-…`), as `browser` does.
fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.to_path_buf())
        })
        .expect("a target directory");
    let dir = target.join("browser");
    std::fs::create_dir_all(&dir).expect("create the screenshot dir");
    dir
}

/// Measures the document open in `browser` (a window `width` wide) and writes its screenshot.
async fn measure(browser: &Client, name: &str, width: u32) -> Fit {
    let v = browser
        .execute(MEASURE, vec![])
        .await
        .unwrap_or_else(|e| panic!("measuring {name}: {e}"));
    let number = |k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("{name}: no {k} in {v}")) as u64
    };
    let boxes = v["boxes"]
        .as_array()
        .expect("boxes")
        .iter()
        .map(|b| b.as_str().expect("text").to_owned())
        .collect();
    let png = browser.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}: not a PNG");
    let path = out_dir().join(format!("layout-{name}-{width}.png"));
    std::fs::write(&path, &png).expect("write the screenshot");
    Fit {
        name: name.to_owned(),
        width,
        inner: number("inner"),
        scroll: number("scroll"),
        boxes,
        png: path,
    }
}

/// Prints every figure, then fails naming each document that does not fit.
fn assert_all_fit(fits: &[Fit]) {
    for f in fits {
        println!(
            "{:<34} width {:>4}: innerWidth {:>4}, scrollWidth {:>4}{}  {}",
            f.name,
            f.width,
            f.inner,
            f.scroll,
            if f.boxes.is_empty() {
                String::new()
            } else {
                format!(", scrolling inside: {}", f.boxes.join("; "))
            },
            f.png.display(),
        );
    }
    let bad: Vec<String> = fits
        .iter()
        .filter(|f| !f.fits())
        .map(|f| {
            format!(
                "{} at {} px: innerWidth {}, scrollWidth {}, scrolling inside {:?}",
                f.name, f.width, f.inner, f.scroll, f.boxes
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "scrolls sideways:\n{}\n(screenshots under {})",
        bad.join("\n"),
        out_dir().display()
    );
}

/// A browser `width` CSS pixels wide: a phone's below 500 px (the narrowest a headless window gets).
async fn window(driver: &ChromeDriver, width: u32) -> Client {
    if width < 500 {
        driver.phone(width, HEIGHT).await
    } else {
        driver.browser(width, HEIGHT).await
    }
}

async fn open(browser: &Client, url: &str) {
    browser
        .goto(url)
        .await
        .unwrap_or_else(|e| panic!("opening {url}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emails_html_part_fits_600_px_and_a_phone() {
    let driver = ChromeDriver::start().await;
    let dir = out_dir();
    let mut files = Vec::new();
    for (locale, lang) in [(Locale::En, "en"), (Locale::PtBr, "pt-BR")] {
        for (level, event, what) in [
            (Level::L1, PageEvent::Opened, "opened"),
            (Level::L1, PageEvent::Resolved, "resolved"),
        ] {
            let (email, _) = crate::email::render_event(locale, level, event);
            let name = format!("email-{what}-{lang}");
            let path = dir.join(format!("layout-{name}.html"));
            std::fs::write(&path, &email.html).expect("write the email's HTML");
            files.push((name, path));
        }
        // With its charts: the HTML beside the PNGs it names, as a client shows them (the
        // `cid:` references written as the files' names).
        let (email, _) = crate::email::render_event_with(
            locale,
            Level::L1,
            PageEvent::Opened,
            crate::email::outage_charts,
        );
        let name = format!("email-opened-charts-{lang}");
        let path = dir.join(format!("layout-{name}.html"));
        std::fs::write(&path, with_images(&email, &dir, &name)).expect("write the email's HTML");
        files.push((name, path));
    }
    let mut fits = Vec::new();
    for width in [EMAIL, PHONE] {
        let browser = window(&driver, width).await;
        for (name, path) in &files {
            open(&browser, &format!("file://{}", path.display())).await;
            fits.push(measure(&browser, name, width).await);
        }
        browser.close().await.expect("close the browser");
    }
    assert_all_fit(&fits);
}

/// The HTML part of `email` with each `cid:` image written beside it as `<name>-<n>.png` and
/// referenced by that file name instead, as a mail client resolves the references.
fn with_images(
    email: &harven_watchdog::email::RenderedEmail,
    dir: &std::path::Path,
    name: &str,
) -> String {
    use mail_parser::MimeHeaders;
    let bytes = email.formatted();
    let parsed = mail_parser::MessageParser::default()
        .parse(&bytes[..])
        .expect("the email parses");
    let mut html = email.html.clone();
    for (n, part) in parsed
        .parts
        .iter()
        .filter(|p| p.content_type().and_then(|c| c.subtype()) == Some("png"))
        .enumerate()
    {
        let cid = part
            .content_id()
            .expect("a Content-ID")
            .trim_matches(['<', '>'])
            .to_owned();
        let file = format!("layout-{name}-{}.png", n + 1);
        std::fs::write(dir.join(&file), part.contents()).expect("write the image");
        assert!(html.contains(&format!("cid:{cid}")), "{cid} is referenced");
        html = html.replace(&format!("cid:{cid}"), &file);
    }
    html
}

/// The L1 `opened` email of the latency incident.
fn latency_l1(mail: &ReceivedMail) -> bool {
    mail.header("X-Harven-Section") == Some("latency")
        && mail.header("X-Harven-Level") == Some("L1")
        && mail.header("X-Harven-Event") == Some("opened")
}

async fn api_post(base: &str, path: &str, body: &Value) -> Value {
    let resp = crate::support::http_client()
        .post(format!("{base}{path}"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .json(body)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_fit_a_phone_and_a_laptop() {
    let driver = ChromeDriver::start().await;
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let smtp = SmtpServer::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let mut env = paging_env(&prom.url(), smtp.port(), data.path());
    env.push(("HARVEN_WATCHDOG__SERVER__API_TOKEN".into(), TOKEN.into()));
    // At real time, so the charts' range queries ask for minutes Prometheus has.
    let d = Daemon::start(env, harven_watchdog::clock::Clock::system().now()).await;

    let mail = advance_until(
        &d.hand,
        Duration::from_secs(15),
        &smtp,
        "the L1 email",
        |m| m.iter().any(latency_l1),
    )
    .await;
    let l1 = mail.iter().find(|m| latency_l1(m)).expect("L1 email");
    let id = l1.header("X-Harven-Incident").expect("incident").to_owned();
    // The resolve link: its page still offers the form once the incident is acknowledged below.
    let resolve_link = l1
        .text()
        .expect("text part")
        .lines()
        .find_map(|line| line.trim().strip_prefix("Resolve: "))
        .expect("a resolve link")
        .trim()
        .to_owned();
    let email = dir_file("layout-email-daemon-latency.html");
    std::fs::write(&email, l1.html().expect("html part")).expect("write the email's HTML");
    // The incident's page and the status page show its chart (a thumbnail on `/`) once the p95
    // rule fires too (the severe share, which has no chart, may open the incident first).
    let page = format!("{}/incidents/{id}", d.base);
    crate::support::wait_until(Duration::from_secs(60), Duration::from_millis(250), || {
        d.hand.advance(Duration::from_secs(5));
        let request = crate::support::http_client().get(&page).send();
        async move {
            match request.await {
                Ok(r) => r
                    .text()
                    .await
                    .is_ok_and(|t| t.contains("<figure class=\"chart\"><svg")),
                Err(_) => false,
            }
        }
    })
    .await
    .expect("the incident page shows a chart");
    assert!(d.get("/").await.contains("class=\"glance\""));

    // Long unbroken words where people type: a rota name acknowledging, a URL in a window's reason.
    api_post(
        &d.base,
        &format!("/api/incidents/{id}/ack"),
        &json!({ "by": "sre-oncall-primary-rotation-platform-team-harven-production-eu-west-1" }),
    )
    .await;
    api_post(
        &d.base,
        "/api/maintenance",
        &json!({
            "sections": ["errors"],
            "duration": "2h",
            "reason": "deploy https://github.com/harven/backend/pull/4242/commits/0123456789abcdef0123456789abcdef01234567",
            "by": "deploy-bot-harven-production-eu-west-1-github-actions-runner",
        }),
    )
    .await;

    // An alert whose sender wrote long words, for `/`'s "Alerts received" block.
    api_post(
        &d.base,
        "/api/webhooks/alertmanager",
        &json!({
            "version": "4", "status": "firing", "receiver": "watchdog",
            "alerts": [{
                "status": "firing",
                "labels": {
                    "alertname": "HighLatencyP95OnTheChatCompletionsEndpointOfTheProductionClusterEuWest1",
                    "severity": "page-the-primary-oncall-rotation-of-the-platform-team-immediately"
                },
                "annotations": { "summary": "p95 above 3 s" },
                "startsAt": "2026-12-07T00:25:52Z", "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": "layout-long-words"
            }]
        }),
    )
    .await;
    assert!(d.get("/").await.contains("id=\"alerts\""));

    let mut fits = Vec::new();
    for width in [PHONE, DESKTOP] {
        let browser = window(&driver, width).await;
        open(&browser, &format!("file://{}", email.display())).await;
        fits.push(measure(&browser, "email-daemon-latency", width).await);
        for (name, path) in [
            ("index", "/".to_owned()),
            ("incident", format!("/incidents/{id}")),
            ("maintenance", "/maintenance".to_owned()),
            ("signin", "/signin".to_owned()),
        ] {
            open(&browser, &format!("{}{path}", d.base)).await;
            fits.push(measure(&browser, name, width).await);
        }
        open(&browser, &resolve_link).await;
        browser
            .find(Locator::Css("form button[type=submit]"))
            .await
            .expect("the confirmation page's button");
        fits.push(measure(&browser, "act", width).await);

        // Signed in: the forms to acknowledge, resolve and end or open a maintenance window.
        open(&browser, &format!("{}/signin", d.base)).await;
        browser
            .find(Locator::Css("input[name=token]"))
            .await
            .expect("the token field")
            .send_keys(TOKEN)
            .await
            .expect("typing the token");
        browser
            .find(Locator::Css("form#signin button[type=submit]"))
            .await
            .expect("the sign-in button")
            .click()
            .await
            .expect("signing in");
        browser
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css("form.inline input[name=csrf]"))
            .await
            .expect("signed in");
        for (name, path) in [
            ("incident-signed-in", format!("/incidents/{id}")),
            ("maintenance-signed-in", "/maintenance".to_owned()),
        ] {
            open(&browser, &format!("{}{path}", d.base)).await;
            browser
                .find(Locator::Css("form.act"))
                .await
                .unwrap_or_else(|e| panic!("{name}: no form: {e}"));
            fits.push(measure(&browser, name, width).await);
        }
        browser.close().await.expect("close the browser");
    }
    drop(driver);
    d.stop().await;
    assert_all_fit(&fits);
}

fn dir_file(name: &str) -> PathBuf {
    out_dir().join(name)
}
