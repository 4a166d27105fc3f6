//! The status pages against a real incident: a real Prometheus scraping the slow simulated backend,
//! the daemon in-process on a manual clock, and plain HTTP requests to `/` and `/incidents/{id}`.
//! Names and notes typed through the API come back escaped, and the API token shows nowhere.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::backend::{Scenario, SimBackend, StatusStyle};
use crate::support::daemon::{T0, TestDaemon as Daemon, configured_window_file, prometheus_env};
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
            http: crate::support::http_client(),
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
    assert!(
        open.contains("<td data-label=\"Level\">L1</td>"),
        "each stacked cell says its column: {open}"
    );
    assert!(open.contains(&cause), "cause {cause}: {open}");
    assert!(index.body.contains("No resolved incident yet."));
    assert!(index.body.contains("No active maintenance window."));
    // It reloads itself without a script (a wall screen, a phone left open), unless asked not to.
    let refresh = "<meta http-equiv=\"refresh\" content=\"30\">";
    assert!(index.body.contains(refresh), "{}", index.body);
    for opt_out in ["/?refresh=0", "/?x=1&refresh=off"] {
        let still = b.page(opt_out).await;
        assert_eq!(still.status, 200, "{opt_out}");
        assert!(
            !still.body.contains("http-equiv"),
            "{opt_out}: {}",
            still.body
        );
        assert!(still.body.contains(&id), "{opt_out}: {}", still.body);
    }

    // `/incidents/{id}`: symptoms, levels paged and the timeline; how to act, without a form.
    let page = b.page(&format!("/incidents/{id}")).await;
    assert_eq!(page.status, 200);
    assert_page_headers(&page);
    // A page with forms never reloads itself: what is being typed would be lost.
    assert!(!page.body.contains("http-equiv"), "{}", page.body);
    for want in [
        "Timeline",
        "<td data-label=\"Event\">opened</td>",
        "Levels paged",
        "L1: ",
        "Nobody has acknowledged yet.",
        &format!("/api/incidents/{id}/ack"),
        "Bearer $TOKEN",
    ] {
        assert!(page.body.contains(want), "no {want:?}: {}", page.body);
    }
    assert!(
        page.body.contains("latency.slow_severe") || page.body.contains("latency.p95_high"),
        "no latency rule: {}",
        page.body
    );

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

/// A browser-like client that does not follow redirects, so the tests see each answer's status and
/// `Set-Cookie`.
struct Forms {
    http: reqwest::Client,
    base: String,
}

/// An answer to a form: status, `Location`, `Set-Cookie`, `Cache-Control`, body.
struct Answer {
    status: StatusCode,
    location: String,
    set_cookie: String,
    cache: String,
    body: String,
}

impl Answer {
    /// Asserts that the form was refused with `status` and its page says nothing changed; `what`
    /// names the refusal in the failure message.
    fn assert_refused(&self, what: &str, status: u16) {
        assert_eq!(self.status, status, "{what}: {}", self.body);
        assert!(
            self.body.contains("Nothing was changed."),
            "{what}: {}",
            self.body
        );
    }
}

/// A form's fields, in order.
type Fields<'a> = &'a [(&'a str, &'a str)];

/// How a form post presents itself.
#[derive(Clone, Copy, Default)]
struct Sent<'a> {
    cookie: Option<&'a str>,
    origin: Option<&'a str>,
    fetch_site: Option<&'a str>,
}

impl Forms {
    fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: base.to_owned(),
        }
    }

    async fn answer(resp: reqwest::Response) -> Answer {
        let h = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let (location, set_cookie, cache) = (h("location"), h("set-cookie"), h("cache-control"));
        Answer {
            status: resp.status(),
            location,
            set_cookie,
            cache,
            body: resp.text().await.expect("body"),
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Answer {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        Self::answer(req.send().await.expect("request")).await
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)], sent: Sent<'_>) -> Answer {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (name, value) in [
            ("cookie", sent.cookie),
            ("origin", sent.origin),
            ("sec-fetch-site", sent.fetch_site),
        ] {
            if let Some(v) = value {
                req = req.header(name, v);
            }
        }
        Self::answer(req.send().await.expect("request")).await
    }

    /// Asserts that `/metrics` counts exactly `n` form refusals for each `(reason, n)` of
    /// `expected`.
    async fn assert_refusals_counted(&self, expected: &[(&str, u64)]) {
        let metrics = self.get("/metrics", None).await.body;
        for (reason, n) in expected {
            let line = format!("harven_watchdog_form_refusals_total{{reason=\"{reason}\"}} {n}");
            assert!(
                metrics.lines().any(|l| l == line),
                "no {line:?} in:\n{metrics}"
            );
        }
    }
}

/// The value of the first hidden `csrf` field of a page.
fn csrf_of(page: &str) -> String {
    let (_, rest) = page
        .split_once("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no csrf field: {page}"));
    rest.split('"').next().expect("value").to_owned()
}

/// The windows created through the API or the pages.
async fn stored_windows(b: &mut Browser) -> Vec<Value> {
    let list = b.json("/api/maintenance").await;
    list["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .filter(|w| w["source"] == "api")
        .cloned()
        .collect()
}

/// The ways a signed-in form post is refused, each with its status: no session, a forged one, no or a
/// wrong CSRF token, a foreign `Origin`, a cross-site fetch. `good` is the accepted form (the session's
/// CSRF token, `by` = Ana); `cookie` the session.
fn refusals<'a>(
    good: Fields<'a>,
    cookie: &'a str,
) -> Vec<(&'static str, Fields<'a>, Sent<'a>, u16)> {
    let with = |cookie| Sent {
        cookie,
        ..Sent::default()
    };
    vec![
        ("no session", good, Sent::default(), 401),
        (
            "a forged session",
            good,
            with(Some("hw_session=9999999999.abc.def")),
            401,
        ),
        ("no CSRF token", &[("by", "Ana")], with(Some(cookie)), 403),
        (
            "a wrong CSRF token",
            &[
                ("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                ("by", "Ana"),
            ],
            with(Some(cookie)),
            403,
        ),
        (
            "a foreign Origin",
            good,
            Sent {
                cookie: Some(cookie),
                origin: Some("http://evil.example"),
                fetch_site: None,
            },
            403,
        ),
        (
            "a cross-site fetch",
            good,
            Sent {
                cookie: Some(cookie),
                origin: None,
                fetch_site: Some("cross-site"),
            },
            403,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_act_only_signed_in_with_the_session_csrf_token_from_our_origin() {
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let data = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(env(&prom.url(), data.path(), Some("en")), T0).await;
    let mut b = Browser::new(&d.base);
    let id = wait_for_latency_incident(&d, &mut b).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let f = Forms::new(&d.base);

    // The diagnosis is kept with the incident: the API has every cause, the page the table.
    let detail = b.json(&format!("/api/incidents/{id}")).await;
    let causes = detail["diagnosis"]["causes"].as_array().expect("causes");
    assert!(causes.len() >= 2, "{detail}");
    for c in causes {
        assert!(
            ["likely", "unknown", "ruled_out"].contains(&c["status"].as_str().expect("status")),
            "{c}"
        );
        assert!(
            !c["evidence"].as_array().expect("evidence").is_empty(),
            "{c}"
        );
    }
    let anonymous = f.get(&format!("/incidents/{id}"), None).await;
    assert!(
        anonymous.body.contains("id=\"diagnosis\""),
        "{}",
        anonymous.body
    );
    assert!(
        anonymous
            .body
            .contains(causes[0]["id"].as_str().expect("id")),
        "{}",
        anonymous.body
    );
    assert!(!anonymous.body.contains("<form"), "{}", anonymous.body);
    assert!(anonymous.body.contains("href=\"/signin\""));

    // Signing in: the wrong token, or a post from another site, gets no session.
    let signin = f.get("/signin", None).await;
    assert_eq!(signin.status, 200);
    assert!(signin.body.contains("name=\"token\""), "{}", signin.body);
    let wrong = f
        .post("/signin", &[("token", "not-the-token")], Sent::default())
        .await;
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    assert!(wrong.set_cookie.is_empty());
    assert!(
        wrong.body.contains("that is not the API token"),
        "{}",
        wrong.body
    );
    let foreign = f
        .post(
            "/signin",
            &[("token", TOKEN)],
            Sent {
                origin: Some("http://evil.example"),
                ..Sent::default()
            },
        )
        .await;
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    assert!(foreign.set_cookie.is_empty());
    let signed = f
        .post("/signin", &[("token", TOKEN)], Sent::default())
        .await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(signed.location, "/");
    for attr in ["hw_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(signed.set_cookie.contains(attr), "{}", signed.set_cookie);
    }
    assert!(!signed.set_cookie.contains("Secure"), "http public URL");
    assert!(!signed.set_cookie.contains(TOKEN));
    let cookie = signed
        .set_cookie
        .split(';')
        .next()
        .expect("pair")
        .to_owned();

    // Signed in, the incident page has the forms and is never cached.
    let page = f.get(&format!("/incidents/{id}"), Some(&cookie)).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.cache, "no-store");
    assert!(page.body.contains("id=\"ack\""), "{}", page.body);
    assert!(page.body.contains("id=\"resolve\""), "{}", page.body);
    let csrf = csrf_of(&page.body);
    assert!(!page.body.contains(TOKEN));

    // Every refused form changes nothing.
    let ack = format!("/incidents/{id}/ack");
    let good: &[(&str, &str)] = &[("csrf", &csrf), ("by", "Ana")];
    let with = |cookie| Sent {
        cookie,
        ..Sent::default()
    };
    let refusals = refusals(good, &cookie);
    for (what, fields, sent, status) in &refusals {
        let a = f.post(&ack, fields, *sent).await;
        a.assert_refused(what, *status);
        let w = f
            .post(
                "/maintenance",
                &[fields, &[("duration", "1h"), ("reason", "deploy")][..]].concat(),
                *sent,
            )
            .await;
        assert_eq!(w.status, *status, "{what}: {}", w.body);
        let r = f
            .post(&format!("/incidents/{id}/resolve"), fields, *sent)
            .await;
        assert_eq!(r.status, *status, "{what}: {}", r.body);
    }
    let unchanged = b.json(&format!("/api/incidents/{id}")).await;
    assert_eq!(unchanged["acks"], json!({}), "{unchanged}");
    assert_eq!(unchanged["state"], "open");
    assert!(stored_windows(&mut b).await.is_empty());

    // Accepted: the ack, a window over two sections, the resolve with its note.
    let a = f.post(&ack, good, with(Some(&cookie))).await;
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(a.location, format!("/incidents/{id}"));
    let acked = b.json(&format!("/api/incidents/{id}")).await;
    assert_eq!(acked["acks"]["L1"]["by"], "Ana", "{acked}");

    let w = f
        .post(
            "/maintenance",
            &[
                ("csrf", &csrf),
                ("sections", "latency"),
                ("sections", "errors"),
                ("duration", "2h"),
                ("reason", "Supabase <upgrade>"),
                ("by", "Ana"),
            ],
            with(Some(&cookie)),
        )
        .await;
    assert_eq!(w.status, 303, "{}", w.body);
    assert_eq!(w.location, "/maintenance");
    let windows = stored_windows(&mut b).await;
    assert_eq!(windows.len(), 1, "{windows:?}");
    assert_eq!(windows[0]["sections"], json!(["latency", "errors"]));
    assert_eq!(windows[0]["created_by"], "Ana");
    let listed = f.get("/maintenance", Some(&cookie)).await;
    assert!(
        listed.body.contains("Supabase &lt;upgrade&gt;"),
        "{}",
        listed.body
    );
    assert!(listed.body.contains("id=\"new-window\""));
    let bad = f
        .post(
            "/maintenance",
            &[
                ("csrf", &csrf),
                ("sections", "nope"),
                ("duration", "1h"),
                ("reason", "r"),
                ("by", "Ana"),
            ],
            with(Some(&cookie)),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("unknown section"), "{}", bad.body);
    assert_eq!(stored_windows(&mut b).await.len(), 1);

    let r = f
        .post(
            &format!("/incidents/{id}/resolve"),
            &[("csrf", &csrf), ("by", "Bob"), ("note", "rolled back")],
            with(Some(&cookie)),
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let resolved = b.json(&format!("/api/incidents/{id}")).await;
    assert_eq!(resolved["state"], "resolved", "{resolved}");
    assert_eq!(resolved["resolve_note"], "rolled back");
    assert!(
        resolved["diagnosis"]["causes"].is_array(),
        "kept after resolving"
    );
    let again = f.post(&ack, good, with(Some(&cookie))).await;
    assert_eq!(again.status, 409, "{}", again.body);

    // Every refusal was counted, by reason.
    f.assert_refusals_counted(&[
        ("signed_out", 6),
        ("csrf", 6),
        ("cross_site", 7),
        ("wrong_token", 1),
        ("bad_input", 1),
    ])
    .await;

    // Signing out clears the cookie.
    let out = f
        .post("/signout", &[("csrf", &csrf)], with(Some(&cookie)))
        .await;
    assert_eq!(out.status, 303, "{}", out.body);
    assert!(out.set_cookie.contains("Max-Age=0"), "{}", out.set_cookie);
    let hand = d.stop().await;

    // Without a configured token nobody signs in, and an old session is worth nothing.
    let mut no_token = prometheus_env(&prom.url(), data.path());
    no_token.push(("HARVEN_WATCHDOG__RUNBOOK__LOCALE".into(), "en".into()));
    let d = Daemon::start(no_token, hand.now()).await;
    let f = Forms::new(&d.base);
    let s = f
        .post("/signin", &[("token", TOKEN)], Sent::default())
        .await;
    assert_eq!(s.status, 403, "{}", s.body);
    assert!(s.body.contains("no API token is configured"), "{}", s.body);
    let w = f
        .post(
            "/maintenance",
            &[
                ("csrf", &csrf),
                ("duration", "1h"),
                ("reason", "r"),
                ("by", "Ana"),
            ],
            with(Some(&cookie)),
        )
        .await;
    assert_eq!(w.status, 403, "{}", w.body);
    let mut b = Browser::new(&d.base);
    assert_eq!(stored_windows(&mut b).await.len(), 1);
    d.stop().await;
}

/// The "end now" form of `/maintenance`: shown signed in, for the windows created at run time only
/// (the configuration's cannot be ended there: 409); refused without a session, without or with a
/// wrong CSRF token, or from another site, and then nothing changes; accepted, the window is over,
/// leaves the page, and the API lists it with who ended it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_now_form_ends_a_window_only_signed_in_with_the_csrf_token() {
    let data = tempfile::tempdir().expect("tempdir");
    let file = configured_window_file(data.path());
    let d = Daemon::start_with_files(
        &[file],
        env("http://127.0.0.1:1", data.path(), Some("en")),
        T0,
    )
    .await;
    let f = Forms::new(&d.base);
    let mut b = Browser::new(&d.base);
    let signed = f
        .post("/signin", &[("token", TOKEN)], Sent::default())
        .await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    let cookie = signed
        .set_cookie
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let with = |cookie| Sent {
        cookie,
        ..Sent::default()
    };
    let page = f.get("/maintenance", Some(&cookie)).await;
    assert!(page.body.contains("Supabase upgrade"), "{}", page.body);
    assert!(
        !page.body.contains("end-window"),
        "no form for the configuration's window: {}",
        page.body
    );
    let csrf = csrf_of(&page.body);
    let created = f
        .post(
            "/maintenance",
            &[
                ("csrf", &csrf),
                ("sections", "latency"),
                ("duration", "2h"),
                ("reason", "deploy"),
                ("by", "Ana"),
            ],
            with(Some(&cookie)),
        )
        .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let id = stored_windows(&mut b).await[0]["id"].as_i64().expect("id");
    let end = format!("/maintenance/{id}/end");
    let page = f.get("/maintenance", Some(&cookie)).await;
    assert!(
        page.body.contains(&format!("action=\"{end}\"")),
        "{}",
        page.body
    );
    assert_eq!(page.body.matches("end-window").count(), 1, "{}", page.body);
    let anonymous = f.get("/maintenance", None).await;
    assert!(!anonymous.body.contains("<form"), "{}", anonymous.body);

    let good: &[(&str, &str)] = &[("csrf", &csrf), ("by", "Ana")];
    let refusals = refusals(good, &cookie);
    for (what, fields, sent, status) in &refusals {
        let r = f.post(&end, fields, *sent).await;
        r.assert_refused(what, *status);
    }
    let nameless = f
        .post(&end, &[("csrf", &csrf), ("by", " ")], with(Some(&cookie)))
        .await;
    assert_eq!(nameless.status, 400, "{}", nameless.body);
    let configured = f
        .post("/maintenance/config-1/end", good, with(Some(&cookie)))
        .await;
    assert_eq!(configured.status, 409, "{}", configured.body);
    assert!(
        configured.body.contains("configuration"),
        "{}",
        configured.body
    );
    let unchanged = stored_windows(&mut b).await;
    assert!(unchanged[0].get("ended_by").is_none(), "{unchanged:?}");

    let ended = f.post(&end, good, with(Some(&cookie))).await;
    assert_eq!(ended.status, 303, "{}", ended.body);
    assert_eq!(ended.location, "/maintenance");
    let windows = stored_windows(&mut b).await;
    assert_eq!(windows[0]["ended_by"], "Ana", "{windows:?}");
    assert_eq!(
        windows[0]["ends"].as_str(),
        Some(d.hand.now().to_string().as_str()),
        "{windows:?}"
    );
    let page = f.get("/maintenance", Some(&cookie)).await;
    assert!(!page.body.contains(&end), "over: {}", page.body);
    assert!(!page.body.contains("deploy"), "{}", page.body);

    f.assert_refusals_counted(&[
        ("signed_out", 2),
        ("csrf", 2),
        ("cross_site", 2),
        ("bad_input", 2),
    ])
    .await;
    b.never_showed_the_token();
    d.stop().await;
}

/// A window ending in the year 20000 (what an unchecked `starts + duration` once stored) and an
/// incident whose every time is absurd, written straight into the store: every page and API answer
/// that shows them answers 200, saying the times are out of range, before and after the pager has
/// stepped over them (the finding: each such read aborted the process, at every restart, for 30 days).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_times_that_are_not_dates_are_shown_as_such_and_crash_nothing() {
    use harven_watchdog::clock::Timestamp;
    use harven_watchdog::incident::Incident;

    let data = tempfile::tempdir().expect("tempdir");
    let db = data.path().join("watchdog.db");
    let year_20000 = 568_971_820_800_000_i64;
    {
        let store = harven_watchdog::store::Store::open(&db).expect("store");
        let absurd = |id: &str, state: &str, resolved: Value| -> Incident {
            serde_json::from_value(json!({
                "id": id, "section": "latency", "severity": "critical", "state": state,
                "opened_at": i64::MIN, "critical_since": i64::MAX, "resolved_at": resolved,
                "reopened": 0, "paged": {"L1": i64::MAX, "L2": -1}, "last_page": {"L1": i64::MAX},
                "reminders": 0, "acks": {"L1": {"by": "Ana", "at": i64::MAX}},
                "symptoms": {"latency.p95_high": "p95 4.2 s > 3 s"}, "cause": "unknown",
                "timeline": [
                    {"at": i64::MIN, "kind": "opened", "text": "opened"},
                    {"at": i64::MAX, "kind": "note", "text": "from the far future"}
                ],
                "resolve_note": null,
                "diagnosis": {"at": i64::MAX, "causes": []}
            }))
            .expect("an incident")
        };
        store
            .save_incidents(&[
                absurd("latency-absurd", "open", Value::Null),
                absurd("errors-absurd", "resolved", json!(year_20000)),
            ])
            .expect("saved");
        drop(store);
        let conn = rusqlite::Connection::open(&db).expect("sqlite");
        for (sections, starts, ends) in [
            ("[]", T0.as_unix_millis() - 3_600_000, year_20000),
            ("[\"latency\"]", i64::MIN, i64::MAX),
        ] {
            conn.execute(
                "INSERT INTO windows (sections, starts, ends, reason, created_by, created_at)
                 VALUES (?1, ?2, ?3, 'far away', 'an old daemon', ?4)",
                rusqlite::params![sections, starts, ends, T0.as_unix_millis()],
            )
            .expect("window inserted");
        }
    }

    let d = Daemon::start(env("http://127.0.0.1:1", data.path(), Some("en")), T0).await;
    let mut b = Browser::new(&d.base);
    let out_of_range = "out of range (568971820800000 ms since 1970-01-01)";
    for round in 0..2 {
        for path in [
            "/",
            "/maintenance",
            "/incidents/latency-absurd",
            "/incidents/errors-absurd",
        ] {
            let page = b.page(path).await;
            assert_eq!(page.status, 200, "round {round}, {path}: {}", page.body);
            assert!(
                page.body.contains("out of range ("),
                "{path}: {}",
                page.body
            );
        }
        let windows = b.json("/api/maintenance").await;
        let ends: Vec<&str> = windows["windows"]
            .as_array()
            .expect("windows")
            .iter()
            .filter_map(|w| w["ends"].as_str())
            .collect();
        assert!(ends.contains(&out_of_range), "{windows}");
        let list = b.json("/api/incidents").await;
        let resolved = list["incidents"]
            .as_array()
            .expect("incidents")
            .iter()
            .find(|i| i["id"] == "errors-absurd")
            .unwrap_or_else(|| panic!("listed: {list}"));
        assert_eq!(resolved["resolved_at"], out_of_range, "{resolved}");
        let detail = b.json("/api/incidents/latency-absurd").await;
        assert_eq!(
            detail["opened_at"],
            format!("out of range ({} ms since 1970-01-01)", i64::MIN),
            "{detail}"
        );
        assert!(
            detail["timeline"][1]["at"]
                .as_str()
                .expect("at")
                .starts_with("out of range")
        );
        // The pager steps over the open incident and both windows (deadlines, mutes, emails): with
        // no symptom firing, it resolves the incident, and it still answers.
        d.hand.advance(Duration::from_secs(31 * 60));
        assert_eq!(d.get("/healthz").await, "ok\n");
        let detail = b.json("/api/incidents/latency-absurd").await;
        assert_eq!(detail["state"], "resolved", "{detail}");
        let acked = reqwest::Client::new()
            .post(format!("{}/api/incidents/latency-absurd/ack", d.base))
            .bearer_auth(TOKEN)
            .json(&json!({ "by": "Ana" }))
            .send()
            .await
            .expect("ack");
        assert_eq!(
            acked.status(),
            409,
            "the pager's task answered (503 if it had died)"
        );
    }
    // Such a window is not made any more: 400, naming the field.
    for (window, field) in [
        (json!({ "duration": "100000y" }), "`duration`"),
        (json!({ "ends": "9999-12-31T23:59:59Z" }), "`ends`"),
        (
            json!({ "starts": "9999-12-31T00:00:00Z", "duration": "1d" }),
            "`starts`",
        ),
    ] {
        let mut body = window.clone();
        body["reason"] = "far".into();
        body["by"] = "Ana".into();
        let refused = reqwest::Client::new()
            .post(format!("{}/api/maintenance", d.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .expect("post");
        assert_eq!(refused.status(), 400, "{window}");
        let error: Value = refused.json().await.expect("JSON");
        let message = error["error"].as_str().expect("error");
        assert!(message.starts_with(field), "{window}: {message}");
    }
    assert!(Timestamp::from_unix_millis(year_20000).to_string() == out_of_range);
    d.stop().await;
}

/// The incident page lists a cause's Sentry top new issues (issue 16) as their own block: the ID
/// and title quoted as the peer's words (and escaped), the figures in the page's language, Sentry's
/// link only when it is http(s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incident_page_lists_sentrys_top_new_issues_quoted_with_their_links() {
    use harven_watchdog::incident::Incident;

    let data = tempfile::tempdir().expect("tempdir");
    {
        let store =
            harven_watchdog::store::Store::open(data.path().join("watchdog.db")).expect("store");
        let at = T0.as_unix_millis();
        let incident: Incident = serde_json::from_value(json!({
            "id": "errors-sentry", "section": "errors", "severity": "major", "state": "open",
            "opened_at": at, "critical_since": null, "resolved_at": null, "reopened": 0,
            "paged": {"L1": at}, "last_page": {"L1": at}, "reminders": 0, "acks": {},
            "symptoms": {"errors.ratio_high": "Error rate 12.4% > 5%"},
            "cause": "errors.bad_deploy", "timeline": [], "resolve_note": null,
            "diagnosis": {"at": at, "causes": [{
                "id": "errors.bad_deploy", "title": "Bug no código (deploy recente)",
                "status": "likely", "score": 0.8, "evidence": [],
                "sentry_issues": [
                    {"short_id": "BACKEND-7F", "title": "KeyError: <script>alert(1)</script>",
                     "events": 42, "users": 7, "level": "error",
                     "link": "https://harven.sentry.io/issues/7/"},
                    {"short_id": "BACKEND-80", "title": "TimeoutError", "events": 5, "users": 2,
                     "level": "fatal", "link": "javascript:alert(1)"}
                ]
            }]}
        }))
        .expect("an incident");
        store.save_incidents(&[incident]).expect("saved");
    }
    let d = Daemon::start(env("http://127.0.0.1:1", data.path(), Some("en")), T0).await;
    let mut b = Browser::new(&d.base);
    let page = b.page("/incidents/errors-sentry").await;
    assert_eq!(page.status, 200, "{}", page.body);
    for want in [
        "New issues in Sentry",
        "<code>«BACKEND-7F»</code> «KeyError: &lt;script&gt;alert(1)&lt;/script&gt;»",
        "(42 events, 7 users, «error»)",
        r#"<a href="https://harven.sentry.io/issues/7/" rel="noopener noreferrer">«https://harven.sentry.io/issues/7/»</a>"#,
        "<code>«BACKEND-80»</code> «TimeoutError» (5 events, 2 users, «fatal»)</li>",
    ] {
        assert!(page.body.contains(want), "{want}: {}", page.body);
    }
    assert!(!page.body.contains("javascript:"), "{}", page.body);
    d.stop().await;
}
