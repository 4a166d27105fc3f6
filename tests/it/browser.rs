//! The pages in a real browser: headless Chromium (Debian's `chromium`), driven over WebDriver by
//! `chromedriver` (Debian's `chromium-driver`), both installed by `scripts/test.sh`.
//!
//! A real Prometheus scrapes the slow simulated backend; the daemon (in-process, on a manual clock)
//! pages L1 through the real SMTP server. The test takes the ack link out of the received email's
//! text part, opens it in Chromium, sees the confirmation page (which changes nothing), clicks the
//! confirm button, and finds the incident acknowledged, with its diagnosis table, on
//! `/incidents/{id}`. A screenshot of that page is written to `<target dir>/browser/incident.png`
//! and its path printed. Then it signs in with the API token and resolves through the page's own
//! form, as the browser really sends it (cookie, CSRF field, origin headers).

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, Locator};
use serde_json::Value;

use crate::support::backend::{Scenario, SimBackend, StatusStyle};
use crate::support::chromium::ChromeDriver;
use crate::support::daemon::{T0, TestDaemon as Daemon, paging_env};
use crate::support::prometheus::PrometheusServer;
use crate::support::smtp::{ReceivedMail, SmtpServer, advance_until};

const TOKEN: &str = "browser-token-5e1c9a7f3b2d4e6a";

/// The L1 `opened` email of the latency incident (the watchdog's blindness to the peers this test
/// leaves out pages too).
fn latency_l1(mail: &ReceivedMail) -> bool {
    mail.header("X-Harven-Section") == Some("latency")
        && mail.header("X-Harven-Level") == Some("L1")
        && mail.header("X-Harven-Event") == Some("opened")
}

/// Where the screenshot goes: `$CARGO_TARGET_DIR` when set, else the target directory this test
/// binary was built into (`<target>/debug/deps/it-…`).
fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.to_path_buf())
        })
        .expect("a target directory");
    target.join("browser").join("incident.png")
}

/// Types `text` into the field `css`, as a person would.
async fn type_into(browser: &Client, css: &str, text: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .send_keys(text)
        .await
        .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
}

/// Clicks the element `css`.
async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

/// Opens `url`.
async fn open(browser: &Client, url: &str) {
    browser
        .goto(url)
        .await
        .unwrap_or_else(|e| panic!("opening {url}: {e}"));
}

/// Waits (at most 30 s) for the element `locator` of the page a click loads.
async fn wait_for(browser: &Client, locator: Locator<'_>) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(locator)
        .await
        .unwrap_or_else(|e| panic!("waiting for {locator:?}: {e}"))
}

async fn incident_json(base: &str, id: &str) -> Value {
    reqwest::get(format!("{base}/api/incidents/{id}"))
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ack_link_of_a_real_email_acknowledges_in_headless_chromium() {
    // First, so a missing browser fails at once, naming scripts/test.sh.
    let driver = ChromeDriver::start().await;
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let smtp = SmtpServer::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let mut env = paging_env(&prom.url(), smtp.port(), data.path());
    env.push(("HARVEN_WATCHDOG__SERVER__API_TOKEN".into(), TOKEN.into()));
    let d = Daemon::start(env, T0).await;

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
    let text = l1.text().expect("text part");
    let ack_link = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Acknowledge as L1: "))
        .unwrap_or_else(|| panic!("no ack link in the email: {text}"))
        .trim()
        .to_owned();
    assert!(
        ack_link.starts_with(&format!("{}/act/", d.base)),
        "{ack_link}"
    );

    let browser = driver.browser(430, 1600).await;

    // The confirmation page: it names the incident and changes nothing until confirmed.
    open(&browser, &ack_link).await;
    let h1 = browser.find(Locator::Css("h1")).await.expect("h1");
    assert_eq!(
        h1.text().await.expect("text"),
        "Acknowledge the incident",
        "{}",
        browser.source().await.unwrap_or_default()
    );
    let confirm = browser.source().await.expect("source");
    assert!(confirm.contains(&id), "{confirm}");
    assert!(
        confirm.contains("Nothing changes until you confirm below."),
        "{confirm}"
    );
    assert_eq!(
        incident_json(&d.base, &id).await["acks"],
        serde_json::json!({})
    );

    // Confirm, as a person would: type a name, click the button.
    type_into(&browser, "input[name=by]", "Ana (Chromium)").await;
    click(&browser, "button[type=submit]").await;
    let result = wait_for(&browser, Locator::Css("p.result")).await;
    let said = result.text().await.expect("text");
    assert!(
        said.starts_with("Acknowledged by Ana (Chromium) as L1"),
        "{said}"
    );

    // The incident page: acknowledged, with the diagnosis table.
    let incident_page = format!("{}/incidents/{id}", d.base);
    open(&browser, &incident_page).await;
    let page = browser.source().await.expect("source");
    assert!(page.contains("L1: Ana (Chromium)"), "{page}");
    assert!(!page.contains("Nobody has acknowledged yet."), "{page}");
    let table = browser
        .find(Locator::Css("table#diagnosis"))
        .await
        .expect("the diagnosis table")
        .text()
        .await
        .expect("text");
    let detail = incident_json(&d.base, &id).await;
    assert_eq!(detail["acks"]["L1"]["by"], "Ana (Chromium)", "{detail}");
    let causes = detail["diagnosis"]["causes"].as_array().expect("causes");
    assert!(!causes.is_empty(), "{detail}");
    for c in causes {
        let cause = c["id"].as_str().expect("id");
        assert!(table.contains(cause), "{cause} not in the table: {table}");
    }
    assert!(
        ["likely", "ruled out", "unknown"]
            .iter()
            .any(|s| table.contains(s)),
        "{table}"
    );

    // The screenshot, where the run can be looked at.
    let png = browser.screenshot().await.expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "not a PNG: {} bytes",
        png.len()
    );
    let path = screenshot_path();
    std::fs::create_dir_all(path.parent().expect("dir")).expect("create the screenshot dir");
    std::fs::write(&path, &png).expect("write the screenshot");
    let written = std::fs::read(&path).expect("read it back");
    assert_eq!(written, png);
    println!("screenshot of the incident page: {}", path.display());

    // Signed in with the API token, the page's own resolve form works in the browser too (the
    // session cookie, the CSRF field and the same-origin check as a browser really sends them).
    open(&browser, &format!("{}/signin", d.base)).await;
    type_into(&browser, "input[name=token]", TOKEN).await;
    click(&browser, "form#signin button[type=submit]").await;
    wait_for(&browser, Locator::Css("form.inline input[name=csrf]")).await;
    open(&browser, &incident_page).await;
    type_into(&browser, "form#resolve input[name=by]", "Bob (Chromium)").await;
    type_into(
        &browser,
        "form#resolve textarea[name=note]",
        "rolled back <v1.3.2>",
    )
    .await;
    click(&browser, "form#resolve button[type=submit]").await;
    let note = wait_for(
        &browser,
        Locator::XPath("//th[text()='Resolve note']/following-sibling::td"),
    )
    .await;
    assert_eq!(note.text().await.expect("text"), "rolled back <v1.3.2>");
    let detail = incident_json(&d.base, &id).await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    assert_eq!(detail["resolve_note"], "rolled back <v1.3.2>", "{detail}");

    browser.close().await.expect("close the browser");
    drop(driver);
    d.stop().await;
}
