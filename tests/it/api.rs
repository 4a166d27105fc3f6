//! The JSON API against a real incident: a real Prometheus scraping the slow simulated backend, the
//! daemon in-process on a manual clock, and plain HTTP requests to `/api/*`. First a daemon without
//! an API token (the mutating API is closed), then one on the same store with a token (emails go to
//! `.eml` files there). The email-link-token and maintenance tests page over the real SMTP server.

use std::path::Path;
use std::time::{Duration, Instant};

use harven_watchdog::clock::Timestamp;
use harven_watchdog::incident::Level;
use harven_watchdog::store::Store;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::escalation::{is, l1_incident};
use crate::support::backend::{Scenario, SimBackend, StatusStyle};
use crate::support::prometheus::PrometheusServer;
use crate::support::smtp::{SmtpServer, advance_until};

const T0: i64 = 1_795_000_000_000;
const TOKEN: &str = "api-token-7f3c9e1b5d2a4c6e8f0a";

/// The test Prometheus, the other sources out of reach, English, and the API token if given.
fn env(prom: &str, data: &Path, token: Option<&str>) -> Vec<(String, String)> {
    let mut env = prometheus_env(prom, data);
    env.push(("HARVEN_WATCHDOG__RUNBOOK__LOCALE".into(), "en".into()));
    if let Some(t) = token {
        env.push(("HARVEN_WATCHDOG__SERVER__API_TOKEN".into(), t.to_owned()));
    }
    env
}

use crate::support::daemon::{
    TestDaemon as Daemon, configured_window_file, paging_env, prometheus_env,
};

async fn start(env: Vec<(String, String)>, at: Timestamp) -> Daemon {
    Daemon::start(env, at).await
}

/// Every response seen, headers and body, to check the token never shows up in one.
#[derive(Default)]
struct Seen(Vec<String>);

/// A request's status, `WWW-Authenticate` header and JSON body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) www_authenticate: Option<String>,
    pub(crate) json: Value,
}

pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    seen: std::sync::Mutex<Seen>,
}

impl Api {
    pub(crate) fn new(base: &str) -> Self {
        Self {
            http: crate::support::http_client(),
            base: base.to_owned(),
            seen: Default::default(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = format!("{:?}", resp.headers());
        let www_authenticate = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().expect("ascii").to_owned());
        let text = resp.text().await.expect("body");
        self.seen.lock().expect("lock").0.push(headers);
        self.seen.lock().expect("lock").0.push(text.clone());
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {status}: {text}"));
        Answer {
            status,
            www_authenticate,
            json,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// A POST with `auth` as the whole `Authorization` header (none when `None`).
    pub(crate) async fn post(&self, path: &str, auth: Option<&str>, body: &Value) -> Answer {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        self.send(req).await
    }

    /// Panics if any response so far (headers or body) contained `token`.
    pub(crate) fn never_showed(&self, token: &str) {
        let seen = self.seen.lock().expect("lock");
        assert!(!seen.0.is_empty());
        for text in &seen.0 {
            assert!(!text.contains(token), "the token leaked: {text}");
        }
    }
}

pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Moves the clock 15 s at a time until the API lists an open latency incident that has paged;
/// returns it.
async fn wait_for_latency_incident(d: &Daemon, api: &Api) -> Value {
    wait_for_open_latency(d, api, |i| !i["level"].is_null()).await
}

/// Moves the clock 15 s at a time until the API lists an open latency incident for which `ready`
/// holds; returns it.
async fn wait_for_open_latency(d: &Daemon, api: &Api, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = api.get("/api/incidents").await;
        assert_eq!(list.status, 200, "{}", list.json);
        let found = list.json["incidents"]
            .as_array()
            .expect("incidents array")
            .iter()
            .find(|i| i["section"] == "latency" && i["state"] == "open" && ready(i))
            .cloned();
        if let Some(i) = found {
            return i;
        }
        assert!(
            Instant::now() < deadline,
            "no latency incident; list: {}",
            list.json
        );
        d.hand.advance(Duration::from_secs(15));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| humantime::parse_rfc3339(s).is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_lists_acks_resolves_and_mutes_behind_its_token() {
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let data = tempfile::tempdir().expect("tempdir");

    // ---- A daemon without a token: reads work, every change is refused with 403. ----
    let d = start(
        env(&prom.url(), data.path(), None),
        Timestamp::from_unix_millis(T0),
    )
    .await;
    let api = Api::new(&d.base);
    let listed = wait_for_latency_incident(&d, &api).await;
    let id = listed["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("latency-"), "{id}");

    // The list's shape.
    for key in [
        "id",
        "section",
        "severity",
        "state",
        "opened_at",
        "resolved_at",
        "level",
        "cause",
        "acks",
        "symptoms",
        "reopened",
    ] {
        assert!(listed.get(key).is_some(), "no {key} in {listed}");
    }
    assert_eq!(listed["severity"], "major");
    assert_eq!(listed["level"], "L1");
    assert!(is_rfc3339(&listed["opened_at"]), "{listed}");
    assert!(listed["resolved_at"].is_null());
    assert!(listed["cause"].is_string());
    assert_eq!(listed["acks"], json!({}));
    // The severe rule (30 s window, for 10 s) or the p95 rule (2 m window, for 30 s), whichever
    // fired first on the manual clock's steps.
    assert!(
        ["latency.slow_severe", "latency.p95_high"]
            .iter()
            .any(|r| listed["symptoms"].get(r).is_some()),
        "{listed}"
    );
    assert_eq!(listed["reopened"], 0);
    assert!(listed.get("timeline").is_none(), "the list has no timeline");
    let limited = api.get("/api/incidents?limit=1").await;
    assert_eq!(limited.json["incidents"].as_array().map(Vec::len), Some(1));
    let bad_limit = api.get("/api/incidents?limit=many").await;
    assert_eq!(bad_limit.status, 400);
    assert!(bad_limit.json["error"].is_string());

    // The detail's shape.
    let detail = api.get(&format!("/api/incidents/{id}")).await;
    assert_eq!(detail.status, 200);
    let timeline = detail.json["timeline"]
        .as_array()
        .expect("timeline")
        .clone();
    assert!(
        timeline
            .iter()
            .any(|e| e["kind"] == "opened" && is_rfc3339(&e["at"]) && e["text"].is_string()),
        "{timeline:?}"
    );
    // The diagnosis kept with the incident: every cause of the section, ranked, with evidence.
    let diagnosis = &detail.json["diagnosis"];
    assert!(is_rfc3339(&diagnosis["at"]), "{diagnosis}");
    let causes = diagnosis["causes"].as_array().expect("causes");
    assert!(!causes.is_empty(), "{diagnosis}");
    for c in causes {
        assert!(
            c["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("latency.")),
            "{c}"
        );
        assert!(
            ["likely", "unknown", "ruled_out"].contains(&c["status"].as_str().unwrap_or("")),
            "{c}"
        );
        assert!(c["score"].is_number(), "{c}");
        for e in c["evidence"].as_array().expect("evidence") {
            for field in ["condition", "truth", "observed", "role"] {
                assert!(e[field].is_string(), "{field}: {e}");
            }
            // Added beside the raw line: the line in (English) words, one per deciding instance.
            let sentences = e["sentences"].as_array().expect("sentences");
            assert!(
                !sentences.is_empty() && sentences.iter().all(serde_json::Value::is_string),
                "{e}"
            );
        }
    }
    assert_eq!(detail.json["id"], id.as_str());
    let missing = api.get("/api/incidents/latency-19700101T000000Z").await;
    assert_eq!(missing.status, 404);
    assert!(missing.json["error"].is_string());

    // Closed: 403 with the reason, whatever the header says.
    let ack_path = format!("/api/incidents/{id}/ack");
    let resolve_path = format!("/api/incidents/{id}/resolve");
    for auth in [None, Some(bearer(TOKEN))] {
        let r = api
            .post(&ack_path, auth.as_deref(), &json!({"by": "Eve"}))
            .await;
        assert_eq!(r.status, 403, "{}", r.json);
        assert_eq!(
            r.json["error"],
            "the API token is not configured (server.api_token_file)"
        );
    }
    let r = api
        .post(&resolve_path, None, &json!({"by": "Eve", "note": "x"}))
        .await;
    assert_eq!(r.status, 403);
    let window = json!({"sections": ["errors"], "duration": "2h", "reason": "deploy", "by": "Eve"});
    let r = api
        .post("/api/maintenance", Some(&bearer(TOKEN)), &window)
        .await;
    assert_eq!(r.status, 403);
    let unchanged = api.get(&format!("/api/incidents/{id}")).await;
    assert_eq!(unchanged.json["acks"], json!({}));
    assert_eq!(unchanged.json["state"], "open");
    assert!(
        !unchanged.json["timeline"]
            .as_array()
            .expect("timeline")
            .iter()
            .any(|e| e.to_string().contains("Eve")),
        "{}",
        unchanged.json
    );
    assert_eq!(
        api.get("/api/maintenance").await.json,
        json!({"windows": []})
    );
    api.never_showed(TOKEN);
    let now = d.stop().await;

    // ---- The same store, now with a token. ----
    let d = start(env(&prom.url(), data.path(), Some(TOKEN)), now.now()).await;
    let api = Api::new(&d.base);
    let before = api.get(&format!("/api/incidents/{id}")).await;
    assert_eq!(before.status, 200);
    assert_eq!(before.json["state"], "open");
    let before_timeline = by_people(&before.json);

    // Refused: no header (401 and a Bearer challenge), another scheme (401), a wrong token (403).
    let refused = [
        (None, 401),
        (Some(format!("Basic {TOKEN}")), 401),
        (Some(bearer("wrong-token")), 403),
        (Some(bearer(&format!("{TOKEN}x"))), 403),
    ];
    for (auth, want) in &refused {
        for (path, body) in [
            (ack_path.as_str(), json!({"by": "Mallory"})),
            (
                resolve_path.as_str(),
                json!({"by": "Mallory", "note": "bye"}),
            ),
            ("/api/maintenance", window.clone()),
        ] {
            let r = api.post(path, auth.as_deref(), &body).await;
            assert_eq!(r.status.as_u16(), *want, "{path} {auth:?}: {}", r.json);
            assert!(r.json["error"].is_string());
            if *want == 401 {
                assert_eq!(r.www_authenticate.as_deref(), Some("Bearer"));
            }
        }
    }
    let after = api.get(&format!("/api/incidents/{id}")).await;
    assert_eq!(
        after.json["state"], "open",
        "a refused request changes nothing"
    );
    assert_eq!(after.json["acks"], json!({}));
    assert_eq!(by_people(&after.json), before_timeline, "{}", after.json);
    assert_eq!(
        api.get("/api/maintenance").await.json,
        json!({"windows": []})
    );

    // Bad input with the token: 400, nothing changed.
    let auth = bearer(TOKEN);
    for body in [
        json!({}),
        json!({"by": ""}),
        json!({"by": "x".repeat(101)}),
        json!({"by": "Ana", "level": "L9"}),
        json!({"by": "Ana", "extra": 1}),
    ] {
        let r = api.post(&ack_path, Some(&auth), &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.json);
        assert!(r.json["error"].is_string());
    }
    let not_json = api
        .send(
            api.http
                .post(format!("{}{ack_path}", api.base))
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_eq!(not_json.status, 400);
    let too_long_note = api
        .post(
            &resolve_path,
            Some(&auth),
            &json!({"by": "Ana", "note": "n".repeat(2001)}),
        )
        .await;
    assert_eq!(too_long_note.status, 400);
    let unknown = api
        .post(
            "/api/incidents/latency-19700101T000000Z/ack",
            Some(&auth),
            &json!({"by": "Ana"}),
        )
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(
        api.get(&format!("/api/incidents/{id}")).await.json["acks"],
        json!({})
    );

    // Ack: 200 with the updated incident, recorded on the timeline.
    let acked = api
        .post(&ack_path, Some(&auth), &json!({"by": "Ana (API)"}))
        .await;
    assert_eq!(acked.status, 200, "{}", acked.json);
    assert_eq!(acked.json["acks"]["L1"]["by"], "Ana (API)");
    assert!(is_rfc3339(&acked.json["acks"]["L1"]["at"]));
    let detail = api.get(&format!("/api/incidents/{id}")).await;
    assert_eq!(detail.json["acks"]["L1"]["by"], "Ana (API)");
    assert!(
        detail.json["timeline"]
            .as_array()
            .expect("tl")
            .iter()
            .any(|e| e["kind"] == "acknowledged"
                && e["text"].as_str().is_some_and(|t| t.contains("Ana (API)"))),
        "{}",
        detail.json
    );

    // Maintenance: invalid input is 400 and stores nothing; a valid window is 201 and listed.
    // A refused input also says its field and a stable code, so a client need not read the English.
    for (bad, field, code) in [
        (
            json!({"sections": ["nope"], "duration": "2h", "reason": "deploy", "by": "Ana"}),
            "sections",
            "input_unknown_section",
        ),
        (
            json!({"sections": ["errors"], "starts": "2027-03-01T02:00:00Z", "ends": "2027-03-01T01:00:00Z", "reason": "deploy", "by": "Ana"}),
            "ends",
            "window_ends_before_starts",
        ),
        (
            json!({"sections": ["errors"], "duration": "soon", "reason": "deploy", "by": "Ana"}),
            "duration",
            "window_not_a_duration",
        ),
        (
            json!({"sections": ["errors"], "reason": "deploy", "by": "Ana"}),
            "ends",
            "window_no_end",
        ),
        (
            json!({"sections": ["errors"], "duration": "2h", "by": "Ana", "reason": " "}),
            "reason",
            "input_required",
        ),
    ] {
        let r = api.post("/api/maintenance", Some(&auth), &bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.json);
        assert!(r.json["error"].is_string());
        assert_eq!(
            (&r.json["field"], &r.json["code"]),
            (&json!(field), &json!(code)),
            "{}",
            r.json
        );
    }
    // A body that is not a window request at all (no `by`) is refused by the JSON decoder: no code.
    let no_by = json!({"sections": ["errors"], "duration": "2h", "reason": "deploy"});
    let r = api.post("/api/maintenance", Some(&auth), &no_by).await;
    assert_eq!(r.status, 400, "{}", r.json);
    assert!(
        r.json["error"].is_string() && r.json["code"].is_null(),
        "{}",
        r.json
    );
    assert_eq!(
        api.get("/api/maintenance").await.json,
        json!({"windows": []})
    );
    let created = api.post("/api/maintenance", Some(&auth), &window).await;
    assert_eq!(created.status, 201, "{}", created.json);
    let w = &created.json;
    assert_eq!(w["sections"], json!(["errors"]));
    assert_eq!(w["reason"], "deploy");
    assert_eq!(w["created_by"], "Eve");
    assert!(w["id"].is_i64());
    let (starts, ends) = (
        humantime::parse_rfc3339(w["starts"].as_str().expect("starts")).expect("rfc3339"),
        humantime::parse_rfc3339(w["ends"].as_str().expect("ends")).expect("rfc3339"),
    );
    assert_eq!(
        ends.duration_since(starts).expect("ends after starts"),
        Duration::from_secs(2 * 3600)
    );
    assert!(is_rfc3339(&w["created_at"]));
    let listed = api.get("/api/maintenance").await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json["windows"], json!([created.json]));

    // Resolve: 200, resolved with the note; a second resolve or ack is 409.
    let resolved = api
        .post(
            &resolve_path,
            Some(&auth),
            &json!({"by": "Ana (API)", "note": "restarted the backend"}),
        )
        .await;
    assert_eq!(resolved.status, 200, "{}", resolved.json);
    assert_eq!(resolved.json["state"], "resolved");
    assert!(is_rfc3339(&resolved.json["resolved_at"]));
    assert_eq!(resolved.json["resolve_note"], "restarted the backend");
    assert!(
        resolved.json["timeline"]
            .as_array()
            .expect("tl")
            .iter()
            .any(|e| e["kind"] == "resolved"
                && e["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("restarted the backend"))),
        "{}",
        resolved.json
    );
    let again = api
        .post(&resolve_path, Some(&auth), &json!({"by": "Ana"}))
        .await;
    assert_eq!(again.status, 409, "{}", again.json);
    let late_ack = api
        .post(&ack_path, Some(&auth), &json!({"by": "Ana"}))
        .await;
    assert_eq!(late_ack.status, 409, "{}", late_ack.json);
    let listed = api.get("/api/incidents").await;
    let entry = listed.json["incidents"]
        .as_array()
        .expect("incidents")
        .iter()
        .find(|i| i["id"] == id.as_str())
        .cloned()
        .expect("still listed");
    assert_eq!(entry["state"], "resolved");

    api.never_showed(TOKEN);
    d.stop().await;
}

/// The token of the email link on the line of `text` that starts with `label` (`Acknowledge as L1:`,
/// `Resolve:`): the part of the URL after `/act/`.
fn link_token(text: &str, label: &str) -> String {
    text.lines()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|url| url.split_once("/act/"))
        .map(|(_, token)| token.to_owned())
        .unwrap_or_else(|| panic!("no {label:?} link in:\n{text}"))
}

/// The tokens of an email's ack and resolve links also work on `/api/incidents/{id}/ack|resolve`
/// (as `Authorization: Bearer`), for exactly that incident and action: the same token on another
/// incident or the other action, an altered one, one past its expiry, one asking for another level,
/// and any link token on the maintenance and reload routes are refused and change nothing. The
/// tokens come from the email the real SMTP server received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_link_tokens_act_on_their_incident_through_the_api() {
    use harven_watchdog::email::token::{self, Action, Claims};

    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let smtp = SmtpServer::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let mut env = paging_env(&prom.url(), smtp.port(), data.path());
    env.push(("HARVEN_WATCHDOG__SERVER__API_TOKEN".into(), TOKEN.into()));
    let d = start(env, Timestamp::from_unix_millis(T0)).await;
    let api = Api::new(&d.base);

    let id = l1_incident(&d.hand, &smtp).await;
    let mail = smtp.messages();
    let email = mail
        .iter()
        .find(|m| is(m, "L1", "opened"))
        .expect("the L1 email");
    let text = email.text().expect("text part");
    let ack_token = link_token(&text, "Acknowledge as L1:");
    let resolve_token = link_token(&text, "Resolve:");
    let ack_path = format!("/api/incidents/{id}/ack");
    let resolve_path = format!("/api/incidents/{id}/resolve");
    let before = api.get(&format!("/api/incidents/{id}")).await;
    assert_eq!(before.json["state"], "open", "{}", before.json);
    let before_timeline = by_people(&before.json);

    // A link token signed by this watchdog's own key, but expired an hour ago: authentic, too late.
    let store = Store::open(data.path().join("watchdog.db")).expect("store");
    let key = store
        .get_or_create_secret(harven_watchdog::pipeline::pager::LINK_KEY)
        .expect("the link key");
    let now = d.hand.now();
    let expired = token::sign(
        &key,
        &Claims::new(
            &id,
            Action::Resolve,
            Level::L1,
            now - Duration::from_secs(7200),
            Duration::from_secs(3600),
        ),
    );
    let mut altered = ack_token.clone().into_bytes();
    // The payload's first character: `v2\n…` encodes as `djI…`; any other letter breaks the tag.
    altered[0] = if altered[0] == b'd' { b'e' } else { b'd' };
    let altered = String::from_utf8(altered).expect("ascii");
    let other = "latency-19700101T000000Z";
    let window = json!({"sections": ["latency"], "duration": "1h", "reason": "r", "by": "Mallory"});
    let refused: Vec<(&str, String, Method, String, Value)> = vec![
        (
            "the resolve token on ack",
            resolve_token.clone(),
            Method::POST,
            ack_path.clone(),
            json!({"by": "Mallory"}),
        ),
        (
            "the ack token on resolve",
            ack_token.clone(),
            Method::POST,
            resolve_path.clone(),
            json!({"by": "Mallory"}),
        ),
        (
            "the ack token on another incident",
            ack_token.clone(),
            Method::POST,
            format!("/api/incidents/{other}/ack"),
            json!({"by": "Mallory"}),
        ),
        (
            "an altered token",
            altered,
            Method::POST,
            ack_path.clone(),
            json!({"by": "Mallory"}),
        ),
        (
            "an expired token",
            expired,
            Method::POST,
            resolve_path.clone(),
            json!({"by": "Mallory"}),
        ),
        (
            "the L1 ack token asking for L2",
            ack_token.clone(),
            Method::POST,
            ack_path.clone(),
            json!({"by": "Mallory", "level": "L2"}),
        ),
        (
            "a link token creating a window",
            ack_token.clone(),
            Method::POST,
            "/api/maintenance".to_owned(),
            window,
        ),
        (
            "a link token reloading",
            ack_token.clone(),
            Method::POST,
            "/-/reload".to_owned(),
            json!({}),
        ),
    ];
    for (what, token, method, path, body) in &refused {
        let r = api
            .send(
                api.http
                    .request(method.clone(), format!("{}{path}", api.base))
                    .header("Authorization", bearer(token))
                    .json(body),
            )
            .await;
        assert_eq!(r.status, 403, "{what}: {}", r.json);
        assert!(r.json["error"].is_string(), "{what}: {}", r.json);
    }
    let after = api.get(&format!("/api/incidents/{id}")).await;
    assert_eq!(after.json["state"], "open", "{}", after.json);
    assert_eq!(after.json["acks"], json!({}));
    assert_eq!(
        by_people(&after.json),
        before_timeline,
        "a refused request changes nothing: {}",
        after.json
    );
    assert_eq!(
        api.get("/api/maintenance").await.json,
        json!({"windows": []})
    );

    // The ack token acks its incident for its level; the resolve token resolves it.
    let acked = api
        .post(
            &ack_path,
            Some(&bearer(&ack_token)),
            &json!({"by": "Ana (link)"}),
        )
        .await;
    assert_eq!(acked.status, 200, "{}", acked.json);
    assert_eq!(acked.json["acks"]["L1"]["by"], "Ana (link)");
    let resolved = api
        .post(
            &resolve_path,
            Some(&bearer(&resolve_token)),
            &json!({"by": "Ana (link)", "note": "restarted"}),
        )
        .await;
    assert_eq!(resolved.status, 200, "{}", resolved.json);
    assert_eq!(resolved.json["state"], "resolved");
    assert_eq!(resolved.json["resolve_note"], "restarted");
    api.never_showed(TOKEN);
    d.stop().await;
}

/// The timeline entries of `incident` (an API view) that people's actions could add: the
/// evaluation's own (a symptom joining, the cause moving) may still arrive as readings come in, and
/// are not what a refused request could change.
fn by_people(incident: &Value) -> Vec<Value> {
    incident["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|e| !matches!(e["kind"].as_str(), Some("symptom" | "cause")))
        .cloned()
        .collect()
}

/// `DELETE /api/maintenance/{id}?by=…` with `auth` as the whole `Authorization` header.
async fn end_window(api: &Api, id: &str, query: &str, auth: Option<&str>) -> Answer {
    let mut req = api
        .http
        .delete(format!("{}/api/maintenance/{id}{query}", api.base));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    api.send(req).await
}

/// A time of the API as a [`Timestamp`].
fn timestamp(v: &Value) -> Timestamp {
    let text = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    Timestamp::from_system_time(humantime::parse_rfc3339(text).expect("rfc3339"))
}

/// A window created through the API mutes the latency incident (recorded, not paged); ending it
/// early (`DELETE /api/maintenance/{id}`, API token only) lets the L1 page out at the pager's next
/// step, long before the window's planned end, and the L2 clock resumes: L2 comes 30 minutes after
/// the opening plus only the time the window really lasted. Refused deletions change nothing; a
/// window of the configuration cannot be deleted (409), nor one already over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_ended_early_unmutes_its_section_and_resumes_its_clocks() {
    let backend = SimBackend::start(StatusStyle::Grouped, Scenario::Slow).await;
    let prom = PrometheusServer::start(&[backend.target()]).await;
    let smtp = SmtpServer::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let file = configured_window_file(data.path());
    let mut env = paging_env(&prom.url(), smtp.port(), data.path());
    env.push(("HARVEN_WATCHDOG__SERVER__API_TOKEN".into(), TOKEN.into()));
    let d = Daemon::start_with_files(&[file], env, Timestamp::from_unix_millis(T0)).await;
    let api = Api::new(&d.base);
    let auth = bearer(TOKEN);

    let window =
        json!({"sections": ["latency"], "duration": "4h", "reason": "deploy", "by": "Ana"});
    let created = api.post("/api/maintenance", Some(&auth), &window).await;
    assert_eq!(created.status, 201, "{}", created.json);
    let wid = created.json["id"].as_i64().expect("a stored window's ID");
    let planned_ends = timestamp(&created.json["ends"]);

    // The incident opens under the window: recorded, nothing paged.
    let incident = wait_for_open_latency(&d, &api, |_| true).await;
    let id = incident["id"].as_str().expect("id").to_owned();
    assert_eq!(incident["paged"], json!({}), "muted: {incident}");
    assert!(incident["level"].is_null(), "{incident}");
    let opened = timestamp(&incident["opened_at"]);

    // Refused: no token, a wrong one; bad or unknown IDs; the configuration's window.
    let stored = |json: &Value| json["windows"][1].clone();
    let listed = api.get("/api/maintenance").await.json;
    assert_eq!(listed["windows"][0]["id"], "config-1", "{listed}");
    assert_eq!(listed["windows"][0]["source"], "config");
    let untouched = stored(&listed);
    let path = wid.to_string();
    for (auth, want) in [
        (None, 401),
        (Some(bearer("wrong-token")), 403),
        (Some(format!("Basic {TOKEN}")), 401),
    ] {
        let r = end_window(&api, &path, "?by=Mallory", auth.as_deref()).await;
        assert_eq!(r.status.as_u16(), want, "{auth:?}: {}", r.json);
        assert!(r.json["error"].is_string());
    }
    for (id, query, want) in [
        (path.as_str(), "", 400),
        (path.as_str(), "?by=", 400),
        ("999", "?by=Bob", 404),
        ("config-9", "?by=Bob", 404),
        ("nope", "?by=Bob", 404),
        ("config-1", "?by=Bob", 409),
    ] {
        let r = end_window(&api, id, query, Some(&auth)).await;
        assert_eq!(r.status.as_u16(), want, "{id}{query}: {}", r.json);
        assert!(r.json["error"].is_string(), "{}", r.json);
    }
    let config_refusal = end_window(&api, "config-1", "?by=Bob", Some(&auth)).await;
    assert!(
        config_refusal.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("configuration")),
        "{}",
        config_refusal.json
    );
    assert_eq!(stored(&api.get("/api/maintenance").await.json), untouched);
    let still = api.get(&format!("/api/incidents/{id}")).await;
    assert_eq!(still.json["paged"], json!({}), "{}", still.json);

    // Ended now: the row stays, with who ended it and what was planned.
    let ended_at = d.hand.now();
    let ended = end_window(&api, &path, "?by=Bob", Some(&auth)).await;
    assert_eq!(ended.status, 200, "{}", ended.json);
    assert_eq!(ended.json["id"], wid);
    assert_eq!(timestamp(&ended.json["ends"]), ended_at);
    assert_eq!(timestamp(&ended.json["planned_ends"]), planned_ends);
    assert_eq!(ended.json["ended_by"], "Bob");
    assert_eq!(ended.json["created_by"], "Ana");
    assert_eq!(
        stored(&api.get("/api/maintenance").await.json),
        ended.json,
        "listed as ended"
    );
    let again = end_window(&api, &path, "?by=Bob", Some(&auth)).await;
    assert_eq!(again.status, 409, "{}", again.json);

    // The muted L1 page goes out at the pager's next step, not at the planned end.
    advance_until(
        &d.hand,
        Duration::from_secs(15),
        &smtp,
        "the L1 email after the window ended",
        |m| m.iter().any(|x| is(x, "L1", "opened")),
    )
    .await;
    assert!(d.hand.now() < planned_ends);

    // The L2 clock was paused from the opening to the early end only.
    let due = opened + Duration::from_secs(30 * 60) + ended_at.saturating_since(opened);
    assert!(due < planned_ends);
    let now = d.hand.now();
    d.hand
        .advance((due - Duration::from_secs(1)).saturating_since(now));
    advance_until(
        &d.hand,
        Duration::from_secs(1),
        &smtp,
        "the L2 email",
        |m| m.iter().any(|x| is(x, "L2", "escalated")),
    )
    .await;
    let paged = api.get(&format!("/api/incidents/{id}")).await;
    let l2_at = timestamp(&paged.json["paged"]["L2"]);
    assert!(
        due <= l2_at && l2_at < due + Duration::from_secs(15),
        "L2 at {l2_at}, due at {due}"
    );
    api.never_showed(TOKEN);
    d.stop().await;
}
