//! The status pages against a real incident: a real Prometheus scraping the slow simulated backend,
//! the daemon in-process on a manual clock, and plain HTTP requests to `/` and `/incidents/{id}`.
//! Names and notes typed through the API come back escaped, and the API token shows nowhere.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::backend::{Scenario, SimBackend, StatusStyle};
use crate::support::daemon::{T0, TestDaemon as Daemon, prometheus_env};
use crate::support::prometheus::PrometheusServer;

const TOKEN: &str = "web-token-3b9d1f7a5c2e4a6b8d0f";

/// The test Prometheus, the other sources out of reach, the API token, and a locale if given.
fn env(prom: &str, data: &Path, locale: Option<&str>) -> Vec<(String, String)> {
    let mut env = prometheus_env(prom, data);
    env.push(("HARVEN_WATCHDOG__SERVER__API_TOKEN".into(), TOKEN.into()));
    if let Some(l) = locale {
        env.push(("HARVEN_WATCHDOG__RUNBOOK__LOCALE".into(), l.to_owned()));
    }
    env
}

/// A page: status, the headers as text, the body.
struct Page {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

struct Browser {
    http: reqwest::Client,
    base: String,
    /// Every header and body seen, to check the token never shows up.
    seen: Vec<String>,
}

impl Browser {
    fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            base: base.to_owned(),
            seen: Vec::new(),
        }
    }

    async fn page(&mut self, path: &str) -> Page {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.expect("body");
        self.seen.push(format!("{headers:?}"));
        self.seen.push(body.clone());
        Page {
            status,
            headers,
            body,
        }
    }

    async fn json(&mut self, path: &str) -> Value {
        let page = self.page(path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        serde_json::from_str(&page.body).expect("JSON")
    }

    async fn post(&mut self, path: &str, body: &Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        self.seen.push(text.clone());
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).expect("JSON")
    }

    fn never_showed_the_token(&self) {
        assert!(!self.seen.is_empty());
        for text in &self.seen {
            assert!(!text.contains(TOKEN), "the token leaked: {text}");
        }
    }
}

/// The headers every page carries.
fn assert_page_headers(p: &Page) {
    let h = |name: &str| {
        p.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(h("content-type"), "text/html; charset=utf-8");
    assert_eq!(h("x-frame-options"), "DENY");
    assert_eq!(h("referrer-policy"), "no-referrer");
    let csp = h("content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "{csp}");
    assert!(p.body.contains("name=\"viewport\""), "readable on a phone");
    assert!(!p.body.contains("<script"), "no script on the pages");
    assert!(!p.body.contains("<form"), "no form on the read-only pages");
}

/// Moves the clock 15 s at a time until the API lists an open, paged latency incident.
async fn wait_for_latency_incident(d: &Daemon, b: &mut Browser) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = b.json("/api/incidents").await;
        let found = list["incidents"]
            .as_array()
            .expect("incidents")
            .iter()
            .find(|i| i["section"] == "latency" && i["state"] == "open" && !i["level"].is_null())
            .cloned();
        if let Some(i) = found {
            return i;
        }
        assert!(Instant::now() < deadline, "no latency incident: {list}");
        d.hand.advance(Duration::from_secs(15));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_pages_show_a_real_incident_escaped_and_without_the_token() {
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let data = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(env(&prom.url(), data.path(), Some("en")), T0).await;
    let mut b = Browser::new(&d.base);
    let listed = wait_for_latency_incident(&d, &mut b).await;
    let id = listed["id"].as_str().expect("id").to_owned();
    let cause = listed["cause"].as_str().expect("cause").to_owned();

    // `/`: the open incident with its severity, level and cause, linking to its page.
    let index = b.page("/").await;
    assert_eq!(index.status, 200);
    assert_page_headers(&index);
    assert!(index.body.contains("<html lang=\"en\">"), "{}", index.body);
    let open = index
        .body
        .split("Recently resolved")
        .next()
        .expect("open part");
    assert!(open.contains("Open incidents"), "{open}");
    assert!(
        open.contains(&format!("href=\"/incidents/{id}\"")),
        "{open}"
    );
    assert!(open.contains(&id));
    assert!(open.contains("sev-major"), "{open}");
    assert!(open.contains("<td>L1</td>"), "{open}");
    assert!(open.contains(&cause), "cause {cause}: {open}");
    assert!(index.body.contains("No resolved incident yet."));
    assert!(index.body.contains("No active maintenance window."));

    // `/incidents/{id}`: symptoms, levels paged and the timeline; how to act, without a form.
    let page = b.page(&format!("/incidents/{id}")).await;
    assert_eq!(page.status, 200);
    assert_page_headers(&page);
    for want in [
        "latency.p95_high",
        "Timeline",
        "<code>opened</code>",
        "Levels paged",
        "L1: ",
        "Nobody has acknowledged yet.",
        &format!("/api/incidents/{id}/ack"),
        "Bearer $TOKEN",
    ] {
        assert!(page.body.contains(want), "no {want:?}: {}", page.body);
    }

    // An unknown incident: a 404 page.
    let missing = b.page("/incidents/latency-19700101T000000Z").await;
    assert_eq!(missing.status, 404);
    assert_page_headers(&missing);
    assert!(
        missing.body.contains("Incident not found"),
        "{}",
        missing.body
    );
    let hostile = b.page("/incidents/%3Cscript%3Ex").await;
    assert_eq!(hostile.status, 404);
    assert!(hostile.body.contains("&lt;script&gt;x"), "{}", hostile.body);

    // Text typed by people comes back escaped.
    let by = "<script>alert(1)</script>";
    let acked = b
        .post(&format!("/api/incidents/{id}/ack"), &json!({ "by": by }))
        .await;
    assert_eq!(acked["acks"]["L1"]["by"], by);
    let note = "fixed <img src=x onerror=alert(2)> & restarted";
    b.post(
        &format!("/api/incidents/{id}/resolve"),
        &json!({ "by": "<b>Bob</b>", "note": note }),
    )
    .await;
    let page = b.page(&format!("/incidents/{id}")).await;
    assert_eq!(page.status, 200);
    assert_page_headers(&page);
    assert!(
        page.body
            .contains("L1: &lt;script&gt;alert(1)&lt;&#x2f;script&gt;")
            || page
                .body
                .contains("L1: &lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("fixed &lt;img src=x onerror=alert(2)&gt; &amp; restarted"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<img"), "{}", page.body);
    assert!(!page.body.contains("<b>Bob"), "{}", page.body);
    assert!(page.body.contains("resolved"), "{}", page.body);
    assert!(
        !page.body.contains("Bearer $TOKEN"),
        "no way to act on a resolved incident"
    );

    // `/` now lists it as resolved.
    let index = b.page("/").await;
    let (open, resolved) = index
        .body
        .split_once("Recently resolved")
        .expect("both parts");
    // (Other sections, the blind watchdog among them, may have incidents of their own.)
    assert!(!open.contains(&id), "{open}");
    assert!(
        resolved.contains(&format!("href=\"/incidents/{id}\"")),
        "{resolved}"
    );
    b.never_showed_the_token();
    let hand = d.stop().await;

    // The default locale is pt-BR.
    let d = Daemon::start(env(&prom.url(), data.path(), None), hand.now()).await;
    let mut b = Browser::new(&d.base);
    let index = b.page("/").await;
    assert_eq!(index.status, 200);
    assert!(
        index.body.contains("<html lang=\"pt-BR\">"),
        "{}",
        index.body
    );
    assert!(
        index.body.contains("Resolvidos recentemente"),
        "{}",
        index.body
    );
    assert!(index.body.contains(&id));
    let page = b.page(&format!("/incidents/{id}")).await;
    assert!(page.body.contains("Linha do tempo"), "{}", page.body);
    b.never_showed_the_token();
    d.stop().await;
}
