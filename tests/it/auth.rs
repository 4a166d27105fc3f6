//! Authentication against the daemon in-process (its sources out of reach, a manual clock): token
//! guessing is limited per client and refused unchecked past the limit, `X-Forwarded-For` counts only
//! from a trusted proxy, signing out ends the session on the server, and `server.public_reads =
//! false` closes every read but health, metrics and the email links.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use harven_watchdog::email::token::{self, Action, Claims};
use harven_watchdog::incident::{Incident, Level};
use harven_watchdog::store::Store;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::daemon::{T0, TestDaemon as Daemon, prometheus_env, sample};

const TOKEN: &str = "auth-token-9c1e5a7f3b2d4c6e8a0f";

/// A daemon's settings: its sources out of reach, the API token, English, and `extra`
/// (`HARVEN_WATCHDOG__` prefixed by this function).
fn env(data: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = prometheus_env("http://127.0.0.1:1", data);
    env.push(("HARVEN_WATCHDOG__SERVER__API_TOKEN".into(), TOKEN.into()));
    env.push(("HARVEN_WATCHDOG__RUNBOOK__LOCALE".into(), "en".into()));
    for (k, v) in extra {
        env.push((format!("HARVEN_WATCHDOG__{k}"), (*v).to_owned()));
    }
    env
}

/// An HTTP client from `local` (a loopback address: `127.0.0.2` is another client than
/// `127.0.0.1`), which does not follow redirects.
fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .local_address(local.parse::<IpAddr>().expect("ip"))
        .build()
        .expect("client")
}

/// `POST /api/maintenance` with `token`, from `http` (`xff`: an `X-Forwarded-For` to send).
async fn create_window(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    xff: Option<&str>,
) -> reqwest::Response {
    let mut req = http
        .post(format!("{base}/api/maintenance"))
        .bearer_auth(token)
        .json(&json!({"duration": "1h", "reason": "deploy", "by": "Ana"}));
    if let Some(x) = xff {
        req = req.header("x-forwarded-for", x);
    }
    req.send().await.expect("request")
}

async fn api_windows(d: &Daemon) -> usize {
    let list: Value = serde_json::from_str(&d.get("/api/maintenance").await).expect("JSON");
    list["windows"].as_array().expect("windows").len()
}

fn refusals(metrics: &str, reason: &str) -> f64 {
    sample(
        metrics,
        &format!("harven_watchdog_auth_refusals_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

/// The acceptance of issue 13: 10 wrong tokens are checked (403), the next are refused unchecked
/// (429 with `Retry-After`), and the right token as the 20th attempt is refused too and changes
/// nothing; another client is not held back; the budget refills on the daemon's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_twentieth_token_in_a_minute_is_refused_without_being_checked() {
    let data = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(env(data.path(), &[]), T0).await;
    let guesser = client_from("127.0.0.1");
    for i in 1..=19 {
        let resp = create_window(&guesser, &d.base, &format!("guess-{i}"), None).await;
        if i <= 10 {
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "guess {i} is checked");
        } else {
            assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "guess {i}");
            assert_eq!(resp.headers()["retry-after"], "6");
        }
    }
    let right = create_window(&guesser, &d.base, TOKEN, None).await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS, "not checked");
    let body: Value = right.json().await.expect("JSON");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("nothing was checked")
    );
    assert_eq!(api_windows(&d).await, 0, "the 20th changed nothing");
    // The pages' sign-in is the same budget.
    let signin = guesser
        .post(format!("{}/signin", d.base))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .expect("signin");
    assert_eq!(signin.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(signin.headers()["retry-after"], "6");
    assert!(signin.headers().get("set-cookie").is_none());

    // And so is an email link: not checked either.
    let link = guesser
        .get(format!("{}/act/some-link-token", d.base))
        .send()
        .await
        .expect("link");
    assert_eq!(link.status(), StatusCode::TOO_MANY_REQUESTS);

    let metrics = d.metrics().await;
    assert_eq!(refusals(&metrics, "bad_token"), 10.0, "{metrics}");
    assert_eq!(refusals(&metrics, "rate_limited"), 12.0, "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "harven_watchdog_form_refusals_total{reason=\"rate_limited\"}"
        ),
        Some(1.0)
    );

    // Another client has its own budget.
    let other = client_from("127.0.0.2");
    let resp = create_window(&other, &d.base, TOKEN, None).await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    // Six seconds on the daemon's clock: one more try, and the right token resets the guesser.
    d.hand.advance(Duration::from_secs(6));
    let resp = create_window(&guesser, &d.base, TOKEN, None).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(api_windows(&d).await, 2);
    for i in 1..=10 {
        let resp = create_window(&guesser, &d.base, "guess", None).await;
        assert_eq!(
            resp.status(),
            StatusCode::FORBIDDEN,
            "guess {i} after a success"
        );
    }
    d.stop().await;
}

/// `X-Forwarded-For` is anyone's to write: without `server.trusted_proxies` it changes nothing;
/// from a listed proxy it names the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
    let data = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(env(data.path(), &[]), T0).await;
    let http = client_from("127.0.0.1");
    for i in 0..10u8 {
        let xff = format!("203.0.113.{i}");
        let resp = create_window(&http, &d.base, "guess", Some(&xff)).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    let resp = create_window(&http, &d.base, TOKEN, Some("198.51.100.1")).await;
    assert_eq!(
        resp.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "spoofing gains nothing"
    );
    d.stop().await;

    let data = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        env(data.path(), &[("SERVER__TRUSTED_PROXIES", "127.0.0.0/8")]),
        T0,
    )
    .await;
    for _ in 0..10 {
        let resp = create_window(&http, &d.base, "guess", Some("203.0.113.7")).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }
    let held = create_window(&http, &d.base, TOKEN, Some("10.9.9.9, 203.0.113.7")).await;
    assert_eq!(
        held.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the same client"
    );
    let other = create_window(&http, &d.base, TOKEN, Some("203.0.113.8")).await;
    assert_eq!(
        other.status(),
        StatusCode::CREATED,
        "another client behind the proxy"
    );
    d.stop().await;
}

/// Signs in through the form; returns the session's `name=value`.
async fn sign_in(http: &reqwest::Client, base: &str) -> String {
    let resp = http
        .post(format!("{base}/signin"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .expect("signin");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let set = resp.headers()["set-cookie"].to_str().expect("ascii");
    set.split(';').next().expect("pair").to_owned()
}

async fn get_with(http: &reqwest::Client, url: &str, cookie: &str) -> (StatusCode, String) {
    let resp = http
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .expect("request");
    (resp.status(), resp.text().await.expect("body"))
}

/// The value of the first hidden `csrf` field of a page.
fn csrf_of(page: &str) -> String {
    let (_, rest) = page
        .split_once("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no csrf field: {page}"));
    rest.split('"').next().expect("value").to_owned()
}

/// Signing out ends the session on the server: the same cookie replayed is signed out, for reads
/// and forms, across a restart too; a session not signed out survives the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_replayed_after_sign_out_is_refused() {
    let data = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(env(data.path(), &[]), T0).await;
    let http = client_from("127.0.0.1");
    let gone = sign_in(&http, &d.base).await;
    let kept = sign_in(&http, &d.base).await;
    let (status, page) = get_with(&http, &format!("{}/maintenance", d.base), &gone).await;
    assert_eq!(status, 200);
    let csrf = csrf_of(&page);
    let out = http
        .post(format!("{}/signout", d.base))
        .header("cookie", &gone)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("signout");
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .expect("ascii")
            .contains("Max-Age=0")
    );

    // The old cookie, replayed: no session on the page, and its form is refused.
    let (_, page) = get_with(&http, &format!("{}/maintenance", d.base), &gone).await;
    assert!(!page.contains("name=\"csrf\""), "{page}");
    let replay = http
        .post(format!("{}/maintenance", d.base))
        .header("cookie", &gone)
        .form(&[
            ("csrf", csrf.as_str()),
            ("duration", "1h"),
            ("reason", "replayed"),
            ("by", "Mallory"),
        ])
        .send()
        .await
        .expect("replay");
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api_windows(&d).await, 0);
    let hand = d.stop().await;

    // After a restart on the same store: still signed out; the other session still signed in.
    let d = Daemon::start(env(data.path(), &[]), hand.now()).await;
    let (_, page) = get_with(&http, &format!("{}/maintenance", d.base), &gone).await;
    assert!(!page.contains("name=\"csrf\""), "{page}");
    let (_, page) = get_with(&http, &format!("{}/maintenance", d.base), &kept).await;
    assert!(page.contains("name=\"csrf\""), "{page}");
    d.stop().await;
}

/// The incident [`seed_incident`] stores.
const INCIDENT: &str = "latency-20261118T110640Z";

/// Stores an open incident in the store at `db` and returns the token of a signed ack link for it,
/// as an email would carry (valid for an hour from [`T0`]).
fn seed_incident(db: &Path) -> String {
    let store = Store::open(db).expect("store");
    let incident: Incident = serde_json::from_value(json!({
        "id": INCIDENT, "section": "latency", "severity": "major",
        "state": "open", "opened_at": T0.as_unix_millis(), "critical_since": null,
        "resolved_at": null, "reopened": 0, "paged": {}, "last_page": {}, "reminders": 0,
        "acks": {}, "symptoms": {}, "cause": "unknown", "timeline": [], "resolve_note": null
    }))
    .expect("incident");
    store.save_incidents(&[incident]).expect("saved");
    let key = store
        .get_or_create_secret(harven_watchdog::pipeline::pager::LINK_KEY)
        .expect("key");
    let claims = Claims::new(
        INCIDENT,
        Action::Ack,
        Level::L1,
        T0,
        Duration::from_secs(3600),
    );
    token::sign(&key, &claims)
}

/// Guessing from many addresses spends the global budget: API tokens and sign-in are then refused
/// unchecked for everyone, but the links of the emails (unguessable) still open, and so does a
/// session already signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_addresses_spend_the_global_budget_but_never_the_email_links() {
    let data = tempfile::tempdir().expect("tempdir");
    let link = seed_incident(&data.path().join("watchdog.db"));
    let d = Daemon::start(
        env(data.path(), &[("SERVER__TRUSTED_PROXIES", "127.0.0.1")]),
        T0,
    )
    .await;
    let http = client_from("127.0.0.1");
    let session = sign_in(&http, &d.base).await;
    for i in 0..100u32 {
        let xff = format!("203.0.{}.{}", i / 250, i % 250);
        let resp = create_window(&http, &d.base, "guess", Some(&xff)).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "guess {i} is checked");
    }
    let fresh = create_window(&http, &d.base, TOKEN, Some("198.51.100.1")).await;
    assert_eq!(
        fresh.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "held by the global budget"
    );
    let page = http
        .get(format!("{}/act/{link}", d.base))
        .header("x-forwarded-for", "198.51.100.1")
        .send()
        .await
        .expect("link");
    assert_eq!(page.status(), StatusCode::OK, "the email link opens");
    let ack = http
        .post(format!("{}/api/incidents/{INCIDENT}/ack", d.base))
        .header("x-forwarded-for", "198.51.100.1")
        .bearer_auth(&link)
        .json(&json!({"by": "Ana"}))
        .send()
        .await
        .expect("ack");
    assert_ne!(
        ack.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the link token is checked"
    );
    assert_ne!(ack.status(), StatusCode::FORBIDDEN);
    let (status, page) = get_with(&http, &format!("{}/maintenance", d.base), &session).await;
    assert_eq!(status, 200);
    assert!(page.contains("name=\"csrf\""), "still signed in: {page}");
    d.stop().await;
}

/// With `server.public_reads = false`: the pages send to the sign-in page and `GET /api/...` is 401,
/// unless signed in or with the token; health, readiness, metrics, the sign-in page and the email
/// links stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_public_reads_every_read_but_health_metrics_and_links_needs_a_credential() {
    let data = tempfile::tempdir().expect("tempdir");
    let db = data.path().join("watchdog.db");
    let link = seed_incident(&db);
    let d = Daemon::start(env(data.path(), &[("SERVER__PUBLIC_READS", "false")]), T0).await;
    let http = client_from("127.0.0.1");
    let get = |path: &str, auth: Option<&str>, cookie: Option<&str>| {
        let mut req = http.get(format!("{}{path}", d.base));
        if let Some(t) = auth {
            req = req.bearer_auth(t);
        }
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send()
    };
    let (page, detail) = (
        format!("/incidents/{INCIDENT}"),
        format!("/api/incidents/{INCIDENT}"),
    );
    let pages = ["/", "/maintenance", page.as_str()];
    let api = ["/api/incidents", detail.as_str(), "/api/maintenance"];
    for path in pages {
        let resp = get(path, None, None).await.expect("request");
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(resp.headers()["location"], "/signin", "{path}");
    }
    for path in api {
        let resp = get(path, None, None).await.expect("request");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let wrong = get(path, Some("not-the-token"), None)
            .await
            .expect("request");
        assert_eq!(wrong.status(), StatusCode::FORBIDDEN, "{path}");
        let ok = get(path, Some(TOKEN), None).await.expect("request");
        assert_eq!(ok.status(), StatusCode::OK, "{path}");
    }
    for open in ["/healthz", "/readyz", "/metrics", "/signin"] {
        let resp = get(open, None, None).await.expect("request");
        assert_eq!(resp.status(), StatusCode::OK, "{open}");
    }
    let act = get(&format!("/act/{link}"), None, None)
        .await
        .expect("request");
    assert_eq!(
        act.status(),
        StatusCode::OK,
        "the link carries its own token"
    );
    let text = act.text().await.expect("body");
    assert!(text.contains(INCIDENT), "{text}");

    let cookie = sign_in(&http, &d.base).await;
    for path in pages.iter().chain(api.iter()) {
        let resp = get(path, None, Some(&cookie)).await.expect("request");
        assert_eq!(resp.status(), StatusCode::OK, "{path} signed in");
    }
    let metrics = d.metrics().await;
    assert_eq!(refusals(&metrics, "no_credentials"), 6.0, "{metrics}");
    assert_eq!(refusals(&metrics, "bad_token"), 3.0, "{metrics}");
    d.stop().await;
}
