//! Every route of the served app, driven in-process (`crate::http::App::call`, no socket) with
//! arbitrary requests: methods, known routes with garbage segments, long and percent-encoded paths,
//! `Authorization`, `Cookie`, `Origin`, `Sec-Fetch-Site`, `Content-Type` and `Content-Length` that
//! may not match the body, and bodies of random bytes, JSON-ish and form-ish text, with and without
//! the valid API token, link tokens and a signed-in session.
//!
//! The app is [`crate::http::app`] over a real generation (store, pager task, routes) on a temporary
//! directory, exactly as [`super::run`] serves it, request bounds and panic catching included. The
//! store holds open incidents and a run-time maintenance window, so the paths naming them reach
//! the handlers' deeper branches (and a valid token acks, resolves, ends and creates for real).
//!
//! What must hold for every request:
//! - no handler panics: a panic would be caught as a 500 and counted, and the count stays 0;
//! - no 5xx, except the one documented: `POST /-/reload` with the token answers 503, because this
//!   harness runs no reload loop (`Outcome::Unavailable`; the API documents 503 for it). The store
//!   is up throughout, so its documented 503s must not happen here either;
//! - no answer (headers or body) holds the API token.
//!
//! `PROPTEST_CASES` raises the case count (`crate::mutate::cases`).

use super::{Generation, Shared, prepare};
use crate::clock::{Clock, Timestamp};
use crate::config::{Config, MaintenanceWindow};
use crate::email::token::{self, Action, Claims};
use crate::http::{App, AppState};
use crate::incident::{Incident, Level};
use crate::runbook::Severity;
use ::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestRunner;

const TOKEN: &str = "fuzz-api-token-3b7e1c9d5a";
const PUBLIC: &str = "http://127.0.0.1:9464";
const T0: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);

/// What the generated requests may name: the seeded incident and window, valid link tokens and a
/// signed-in session with its CSRF token.
#[derive(Debug, Clone)]
struct Known {
    /// The seeded open incidents.
    incidents: Vec<String>,
    window: String,
    /// An ack and a resolve link token for each incident.
    links: Vec<String>,
    cookie: String,
    csrf: String,
}

/// One generated request.
#[derive(Debug, Clone)]
struct Fuzzed {
    method: Method,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Vec<u8>,
}

impl Fuzzed {
    fn request(&self) -> Request<Vec<u8>> {
        let mut r = Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .body(self.body.clone())
            .expect("a generated request is well formed");
        for (name, value) in &self.headers {
            r.headers_mut().append(name.clone(), value.clone());
        }
        r
    }

    /// The one 5xx the harness allows, documented in the module doc.
    fn may_be_unavailable(&self) -> bool {
        self.method == Method::POST && self.path.split('?').next() == Some("/-/reload")
    }
}

#[test]
fn prop_no_request_panics_or_fails_the_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, known, shared, _generation) = rt.block_on(start(dir.path()));

    let mut runner = TestRunner::new(crate::mutate::cases(1024));
    let result = runner.run(&request(known), |fuzzed| {
        let answer = rt.block_on(app.call(fuzzed.request()));
        let status = answer.status();
        let headers = format!("{:?}", answer.headers());
        let body = String::from_utf8_lossy(answer.body());
        prop_assert!(
            !status.is_server_error()
                || (status == StatusCode::SERVICE_UNAVAILABLE && fuzzed.may_be_unavailable()),
            "{status} for {fuzzed:?}: {body}"
        );
        prop_assert!(
            !headers.contains(TOKEN) && !body.contains(TOKEN),
            "the API token in the answer to {fuzzed:?}"
        );
        Ok(())
    });
    let panics = shared.http_metrics.panics_so_far();
    if let Err(e) = result {
        panic!("{e}");
    }
    assert_eq!(panics, 0, "handlers panicked (logged above)");
}

/// The daemon's app over a real generation on `dir`, with open incidents, a run-time window, link
/// tokens and a signed-in session.
async fn start(dir: &std::path::Path) -> (App, Known, Shared, Generation) {
    crate::install_crypto_provider();
    let env: Vec<(String, String)> = [
        ("STORE__PATH", dir.join("watchdog.db").display().to_string()),
        ("SERVER__PUBLIC_URL", PUBLIC.to_owned()),
        ("SERVER__API_TOKEN", TOKEN.to_owned()),
        ("PROMETHEUS__URL", "http://127.0.0.1:1".to_owned()),
        ("REDIS__URL", "redis://127.0.0.1:1".to_owned()),
        ("DOCKER__HOST", "unix:///nonexistent/docker.sock".to_owned()),
        (
            "STATUS__OPENAI__URL",
            "http://127.0.0.1:1/s.json".to_owned(),
        ),
        (
            "STATUS__SUPABASE__URL",
            "http://127.0.0.1:1/s.json".to_owned(),
        ),
        ("RUNBOOK__LOCALE", "en".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("HARVEN_WATCHDOG__{k}"), v))
    .collect();
    let config = Config::load_with_env(&[], env).expect("the harness's configuration");
    let limits = config.server.limits;
    let (clock, hand) = Clock::manual(T0);
    // No reload loop: `POST /-/reload` finds its channel closed (see the module doc).
    let reloader = crate::reload::Reload::new(crate::config::ConfigSource::with_env(
        Vec::new(),
        Vec::new(),
    ))
    .handle();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let prepared = prepare(config).expect("prepare");
    let (shared, metrics) =
        Shared::open(&prepared.config, reloader, &clock, &shutdown).expect("shared");

    // Seeded before the generation starts, so its pager owns them.
    // Resolved at the pager's first step (their sections are not active): the pages and the API show
    // resolved incidents, and acting on them is a 409.
    let seeded: Vec<Incident> = ["errors", "latency", "auth", "database"]
        .iter()
        .map(|section| open_incident(section, T0))
        .collect();
    shared
        .store
        .save_incidents(&seeded)
        .expect("seed the incidents");
    let window = MaintenanceWindow {
        sections: vec!["latency".to_owned()],
        starts: T0,
        ends: T0 + std::time::Duration::from_secs(3600),
        reason: "fuzz".to_owned(),
    };
    let window = shared
        .store
        .add_window(&window, "fuzz", T0)
        .expect("seed a window")
        .to_string();

    let (generation, routes) = Generation::start(prepared, &shared).expect("generation");
    let (_routes_tx, routes_rx) = tokio::sync::watch::channel(routes);
    // The sender half is dropped: the routes stay as they are, as between reloads.
    let data_dir = dir.to_path_buf();
    let app = crate::http::app(
        AppState {
            metrics,
            data_dir,
            leadership: shared.leadership.clone(),
            shared_store: shared
                .store
                .is_shared()
                .then(|| std::sync::Arc::clone(&shared.store)),
            store_health: shared.store_health.clone(),
        },
        routes_rx,
        &limits,
        &shared.http_metrics,
    );

    // The sources are out of reach: once the blind rules' `for` (2 min) has passed on the clock, the
    // watchdog's own incident opens, and stays open while they are (until the fuzz resolves it).
    let open = wait_for_open_incident(&app, &hand).await;
    let mut incidents = vec![open];
    incidents.extend(seeded.into_iter().map(|i| i.id));

    let key = shared
        .store
        .get_or_create_secret(crate::pipeline::pager::LINK_KEY)
        .expect("link key");
    let links = incidents
        .iter()
        .flat_map(|i| [(i, Action::Ack), (i, Action::Resolve)])
        .map(|(incident, action)| {
            let day = std::time::Duration::from_secs(86_400);
            token::sign(&key, &Claims::new(incident, action, Level::L1, T0, day))
        })
        .collect();
    let (cookie, csrf) = sign_in(&app).await;
    let known = Known {
        incidents,
        window,
        links,
        cookie,
        csrf,
    };
    (app, known, shared, generation)
}

/// Moves the clock 10 s at a time until `GET /api/incidents` lists an open incident; its ID. Panics
/// after 60 s of real time.
async fn wait_for_open_incident(app: &App, hand: &crate::clock::ManualClock) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    hand.advance(std::time::Duration::from_secs(120));
    loop {
        let list = app
            .call(
                Request::get("/api/incidents")
                    .body(Vec::new())
                    .expect("request"),
            )
            .await;
        let list: serde_json::Value = serde_json::from_slice(list.body()).expect("JSON");
        let open = list["incidents"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["state"] == "open")
            .and_then(|i| i["id"].as_str());
        if let Some(id) = open {
            return id.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no incident opened: {list}"
        );
        hand.advance(std::time::Duration::from_secs(10));
        // A real pause, so the probes' failed polls reach the watch loop.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Signs in through the app as a browser would; returns the session cookie and its CSRF token.
async fn sign_in(app: &App) -> (String, String) {
    let signed = app
        .call(
            Request::post("/signin")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header("sec-fetch-site", "same-origin")
                .body(format!("token={TOKEN}").into_bytes())
                .expect("request"),
        )
        .await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let cookie = signed.headers()[header::SET_COOKIE]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    let page = app
        .call(
            Request::get("/maintenance")
                .header(header::COOKIE, &cookie)
                .body(Vec::new())
                .expect("request"),
        )
        .await;
    let page = String::from_utf8_lossy(page.body());
    let csrf = page
        .split_once("name=\"csrf\" value=\"")
        .and_then(|(_, rest)| rest.split('"').next())
        .unwrap_or_else(|| panic!("no csrf field in the signed-in maintenance page: {page}"))
        .to_owned();
    (cookie, csrf)
}

/// An open major incident of `section`, opened at `at`.
fn open_incident(section: &str, at: Timestamp) -> Incident {
    let mut incident = Incident::open(section, Severity::Major, "errors.supabase_down", at);
    incident.symptoms = [("error_ratio".to_owned(), "12.4% > 5%".to_owned())].into();
    incident
}

// -------------------------------------------------------------------------------------------------
// Strategies
// -------------------------------------------------------------------------------------------------

/// What a route takes, for the plausible requests.
#[derive(Debug, Clone, Copy)]
enum Takes {
    /// Nothing (a page, a list).
    Nothing,
    /// A form from a signed-in page: the session cookie, its CSRF token, from our origin.
    Form(&'static [&'static str]),
    /// The form of an email link's page (`/act/{token}`): no session.
    LinkForm,
    /// JSON behind the API token (or, on the incident routes, a link token).
    Json(&'static [&'static str]),
    /// The API token, nothing else.
    Token,
}

/// Every route, its method and what it takes; `{}` is a segment to fill.
const ROUTES: &[(&str, &str, Takes)] = &[
    ("GET", "/", Takes::Nothing),
    ("GET", "/healthz", Takes::Nothing),
    ("GET", "/readyz", Takes::Nothing),
    ("GET", "/metrics", Takes::Nothing),
    ("GET", "/incidents/{}", Takes::Nothing),
    (
        "POST",
        "/incidents/{}/ack",
        Takes::Form(&["by", "level", "csrf"]),
    ),
    (
        "POST",
        "/incidents/{}/resolve",
        Takes::Form(&["by", "note", "csrf"]),
    ),
    ("GET", "/maintenance", Takes::Nothing),
    (
        "POST",
        "/maintenance",
        Takes::Form(&[
            "sections", "sections", "starts", "ends", "duration", "reason", "by", "csrf",
        ]),
    ),
    ("POST", "/maintenance/{}/end", Takes::Form(&["by", "csrf"])),
    ("GET", "/signin", Takes::Nothing),
    ("POST", "/signin", Takes::Form(&["token"])),
    ("POST", "/signout", Takes::Form(&["csrf"])),
    ("GET", "/act/{}", Takes::Nothing),
    ("POST", "/act/{}", Takes::LinkForm),
    ("GET", "/api/incidents", Takes::Nothing),
    ("GET", "/api/incidents/{}", Takes::Nothing),
    (
        "POST",
        "/api/incidents/{}/ack",
        Takes::Json(&["by", "level"]),
    ),
    (
        "POST",
        "/api/incidents/{}/resolve",
        Takes::Json(&["by", "note"]),
    ),
    ("GET", "/api/maintenance", Takes::Nothing),
    (
        "POST",
        "/api/maintenance",
        Takes::Json(&["sections", "starts", "ends", "duration", "reason", "by"]),
    ),
    ("DELETE", "/api/maintenance/{}", Takes::Token),
    ("POST", "/-/reload", Takes::Token),
    ("GET", "/api/alerts", Takes::Nothing),
    (
        "POST",
        "/api/webhooks/alertmanager",
        Takes::Json(&["version", "status", "receiver", "groupKey", "alerts"]),
    ),
];

/// Half the requests are plausible (a route's own method, credentials, content type and fields, with
/// arbitrary values), so the handlers' deeper branches run; half are wild.
fn request(known: Known) -> impl Strategy<Value = Fuzzed> {
    prop_oneof![plausible(known.clone()), wild(known)]
}

/// A route called as its clients call it, with arbitrary field values and, at times, a segment of
/// garbage or a query.
fn plausible(known: Known) -> impl Strategy<Value = Fuzzed> {
    select(ROUTES).prop_flat_map(move |(method, template, takes)| {
        let k = known.clone();
        let segment = prop_oneof![
            3 => select(known_segments(&k, template)),
            1 => segment_garbage(),
        ];
        let credentials = credentials(&k, template, takes);
        let body = plausible_body(&k, takes);
        // `DELETE /api/maintenance/{id}` reads who ends the window from the query.
        let query = if method == "DELETE" {
            text_value(&k, "by")
                .prop_map(|by| Some(format!("by={}", percent_encode(by.as_bytes()))))
                .boxed()
        } else {
            prop::option::weighted(0.3, query(&k)).boxed()
        };
        (segment, credentials, body, query).prop_map(move |(segment, headers, body, query)| {
            let mut path = template.replace("{}", &segment);
            if let Some(q) = query {
                path = format!("{path}?{q}");
            }
            let mut headers = headers;
            headers.push((header::CONTENT_LENGTH, HeaderValue::from(body.len() as u64)));
            Fuzzed {
                method: Method::from_bytes(method.as_bytes()).expect("a method"),
                path,
                headers,
                body,
            }
        })
    })
}

/// What the route's paths name: the seeded incident, link tokens, the seeded window.
fn known_segments(k: &Known, template: &str) -> Vec<String> {
    if template.starts_with("/act/") {
        k.links.clone()
    } else if template.contains("maintenance/") {
        vec![k.window.clone(), "config-1".to_owned()]
    } else {
        k.incidents.clone()
    }
}

/// The headers a route's real client sends (a browser's for forms, a script's for the API).
fn credentials(
    k: &Known,
    template: &'static str,
    takes: Takes,
) -> BoxedStrategy<Vec<(HeaderName, HeaderValue)>> {
    let value = |s: &str| HeaderValue::from_str(s).expect("a header value");
    let form = || {
        vec![
            (
                header::CONTENT_TYPE,
                value("application/x-www-form-urlencoded"),
            ),
            (
                HeaderName::from_static("sec-fetch-site"),
                value("same-origin"),
            ),
        ]
    };
    match takes {
        Takes::Nothing => prop::option::of(Just(value(&k.cookie)))
            .prop_map(|cookie| cookie.map(|c| (header::COOKIE, c)).into_iter().collect())
            .boxed(),
        Takes::Form(_) => {
            let mut headers = form();
            headers.push((header::COOKIE, value(&k.cookie)));
            Just(headers).boxed()
        }
        Takes::LinkForm => Just(form()).boxed(),
        Takes::Json(_) | Takes::Token => {
            let mut tokens = vec![TOKEN.to_owned()];
            if template.starts_with("/api/incidents/") {
                tokens.extend(k.links.iter().cloned());
            }
            select(tokens)
                .prop_map(move |t| {
                    vec![
                        (header::AUTHORIZATION, value(&format!("Bearer {t}"))),
                        (header::CONTENT_TYPE, value("application/json")),
                    ]
                })
                .boxed()
        }
    }
}

/// The body a route reads, its fields (a subset, in any order) holding arbitrary values.
fn plausible_body(k: &Known, takes: Takes) -> BoxedStrategy<Vec<u8>> {
    match takes {
        Takes::Nothing | Takes::Token => Just(Vec::new()).boxed(),
        Takes::Form(fields) => form_body(k, fields.to_vec()),
        Takes::LinkForm => form_body(k, vec!["incident", "action", "by", "note"]),
        Takes::Json(fields) => {
            let k = k.clone();
            some_of(fields.to_vec())
                .prop_flat_map(move |fields| {
                    let values: Vec<_> = fields.iter().map(|f| json_value(&k, f)).collect();
                    (Just(fields), values)
                })
                .prop_map(|(fields, values)| {
                    let object: serde_json::Map<String, serde_json::Value> =
                        fields.into_iter().map(str::to_owned).zip(values).collect();
                    serde_json::to_vec(&object).expect("json")
                })
                .boxed()
        }
    }
}

fn form_body(k: &Known, fields: Vec<&'static str>) -> BoxedStrategy<Vec<u8>> {
    let k = k.clone();
    some_of(fields)
        .prop_flat_map(move |fields| {
            let values: Vec<_> = fields.iter().map(|f| text_value(&k, f)).collect();
            (Just(fields), values)
        })
        .prop_map(|(fields, values)| {
            fields
                .iter()
                .zip(values)
                .map(|(f, v)| format!("{f}={}", percent_encode(v.as_bytes())))
                .collect::<Vec<_>>()
                .join("&")
                .into_bytes()
        })
        .boxed()
}

/// Most of `fields` (all, or all but one) most of the time; any subset at times.
fn some_of(fields: Vec<&'static str>) -> impl Strategy<Value = Vec<&'static str>> {
    let n = fields.len();
    prop_oneof![
        3 => prop::sample::subsequence(fields.clone(), n.saturating_sub(1)..=n),
        1 => prop::sample::subsequence(fields, 0..=n),
    ]
}

/// A value for `field` as text: a valid one or arbitrary text.
fn text_value(k: &Known, field: &str) -> BoxedStrategy<String> {
    let valid: Vec<String> = match field {
        "by" => vec!["Ana (on call)".into(), " ".into()],
        "level" => vec![
            "L1".into(),
            "L2".into(),
            "L3".into(),
            "L9".into(),
            String::new(),
        ],
        "note" | "reason" => vec!["restarted the backend".into()],
        "sections" => vec!["latency".into(), "errors".into(), "no-such-section".into()],
        "starts" | "ends" => vec![
            "2026-11-18T11:00:00Z".into(),
            "2030-01-01T00:00:00Z".into(),
            "1970-01-01T00:00:00Z".into(),
            "9999-12-31T23:59:59Z".into(),
        ],
        "duration" => vec![
            "30m".into(),
            "2h".into(),
            "0s".into(),
            "99999999999h".into(),
        ],
        "csrf" => vec![k.csrf.clone()],
        "token" => vec![TOKEN.into()],
        "incident" => k.incidents.clone(),
        "action" => vec!["ack".into(), "resolve".into()],
        _ => Vec::new(),
    };
    let arbitrary = prop_oneof![".{0,40}", (300..2000usize).prop_map(|n| "é".repeat(n))];
    if valid.is_empty() {
        arbitrary.boxed()
    } else {
        prop_oneof![3 => select(valid), 1 => arbitrary].boxed()
    }
}

/// A JSON value for `field`: its text value, or at times a value of another type.
fn json_value(k: &Known, field: &str) -> BoxedStrategy<serde_json::Value> {
    let text = text_value(k, field);
    let typed = if field == "sections" {
        prop::collection::vec(text, 0..3)
            .prop_map(serde_json::Value::from)
            .boxed()
    } else {
        text.prop_map(serde_json::Value::from).boxed()
    };
    prop_oneof![
        6 => typed,
        1 => Just(serde_json::Value::Null),
        1 => any::<i64>().prop_map(serde_json::Value::from),
        1 => any::<f64>().prop_map(|f| serde_json::json!(f)),
        1 => Just(serde_json::json!({"nested": [1, {"deep": null}]})),
    ]
    .boxed()
}

/// Any method, any path (a known route with any segment, or garbage), any of the headers the
/// handlers read (valid, foreign or garbage), any body, and a `Content-Length` that may lie.
fn wild(known: Known) -> impl Strategy<Value = Fuzzed> {
    (
        method(),
        path(known.clone()),
        headers(known.clone()),
        body(known),
        0..4u8,
    )
        .prop_map(|(method, path, mut headers, body, length)| {
            // Content-Length: none, the body's, another number, or not a number.
            let length = match length {
                0 => None,
                1 => Some(body.len().to_string()),
                2 => Some((body.len() + 7).to_string()),
                _ => Some("99999999999999999999999".to_owned()),
            };
            if let Some(l) = length {
                headers.push((
                    header::CONTENT_LENGTH,
                    HeaderValue::from_str(&l).expect("digits"),
                ));
            }
            Fuzzed {
                method,
                path,
                headers,
                body,
            }
        })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        4 => select(vec![Method::GET, Method::POST]),
        2 => select(vec![
            Method::DELETE,
            Method::PUT,
            Method::PATCH,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
        ]),
        1 => "[A-Za-z]{1,12}".prop_map(|m| Method::from_bytes(m.as_bytes()).expect("a token")),
    ]
}

/// A path: a known route with its segment filled (by something it knows or garbage), or one made
/// of garbage, with or without a query.
fn path(known: Known) -> impl Strategy<Value = String> {
    let route = select(ROUTES).prop_flat_map(move |(_, route, _)| {
        segment(known.clone()).prop_map(move |s| route.replace("{}", &s))
    });
    let garbage = prop::collection::vec(segment_garbage(), 0..6)
        .prop_map(|segments| format!("/{}", segments.join("/")));
    (
        prop_oneof![4 => route, 1 => garbage],
        prop::option::of(query_garbage()),
    )
        .prop_map(|(path, query)| match query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        })
}

fn segment(known: Known) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(
            [known.incidents, known.links, vec![known.window]]
                .concat()
                .into_iter()
                .chain(["config-1", "0", "-1", "99999999999999999999"].map(str::to_owned))
                .collect::<Vec<_>>()
        ),
        2 => segment_garbage(),
    ]
}

/// A path segment as a URI can carry it: arbitrary text percent-encoded (invalid UTF-8 included),
/// raw percent signs, dots, or a long run.
fn segment_garbage() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| percent_encode(&b)),
        "[a-zA-Z0-9._~!$&'()*+,;=:@-]{0,30}",
        select(vec![
            "%",
            "%zz",
            "%00",
            "%ff%fe",
            "%2F",
            "..",
            ".",
            "%2e%2e",
            "%C0%AF",
            "%E2%80%AE",
        ])
        .prop_map(str::to_owned),
        (1..9000usize).prop_map(|n| "a".repeat(n)),
    ]
}

/// A query the handlers read (`limit`, `by`) with arbitrary values.
fn query(k: &Known) -> BoxedStrategy<String> {
    let key = select(vec!["limit", "by", "level"]);
    let value = prop_oneof![
        "-?[0-9]{1,25}".boxed(),
        text_value(k, "by")
            .prop_map(|v| percent_encode(v.as_bytes()))
            .boxed(),
    ];
    prop::collection::vec((key, value), 1..3)
        .prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        })
        .boxed()
}

fn query_garbage() -> impl Strategy<Value = String> {
    let key = select(vec!["limit", "by", "level", "x", ""]);
    let value = prop_oneof![
        "-?[0-9]{1,25}".boxed(),
        prop::collection::vec(any::<u8>(), 0..30)
            .prop_map(|b| percent_encode(&b))
            .boxed(),
        "[a-zA-Z%=&]{0,20}".boxed(),
    ];
    prop::collection::vec((key, value), 0..4).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn headers(known: Known) -> impl Strategy<Value = Vec<(HeaderName, HeaderValue)>> {
    let auth = prop::option::of(prop_oneof![
        Just(format!("Bearer {TOKEN}").into_bytes()),
        select(known.links.clone()).prop_map(|l| format!("Bearer {l}").into_bytes()),
        Just(b"Bearer ".to_vec()),
        Just(b"Basic dXNlcjpwYXNz".to_vec()),
        header_garbage(),
    ]);
    let cookie = prop::option::of(prop_oneof![
        Just(known.cookie.clone().into_bytes()),
        Just(format!("{}; other=1", known.cookie).into_bytes()),
        Just(b"hw_session=AAAA.BBBB".to_vec()),
        header_garbage(),
    ]);
    let origin = prop::option::of(prop_oneof![
        Just(PUBLIC.as_bytes().to_vec()),
        Just(b"null".to_vec()),
        Just(b"http://evil.example".to_vec()),
        header_garbage(),
    ]);
    let fetch_site = prop::option::of(prop_oneof![
        select(vec!["same-origin", "same-site", "cross-site", "none"])
            .prop_map(|s| s.as_bytes().to_vec()),
        header_garbage(),
    ]);
    let content_type = prop::option::of(prop_oneof![
        select(vec![
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain",
            "application/json; charset=utf-16",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        header_garbage(),
    ]);
    (auth, cookie, origin, fetch_site, content_type).prop_map(
        |(auth, cookie, origin, fetch_site, content_type)| {
            [
                (header::AUTHORIZATION, auth),
                (header::COOKIE, cookie),
                (header::ORIGIN, origin),
                (HeaderName::from_static("sec-fetch-site"), fetch_site),
                (header::CONTENT_TYPE, content_type),
            ]
            .into_iter()
            .filter_map(|(name, value)| Some((name, HeaderValue::from_bytes(&value?).ok()?)))
            .collect()
        },
    )
}

/// Bytes a header value may hold (visible ASCII, spaces, tabs and obs-text), up to 200 of them.
fn header_garbage() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![0x20..0x7fu8, Just(b'\t'), 0x80..=0xffu8],
        0..200,
    )
}

/// A body: nothing, random bytes, JSON-ish or form-ish text with the fields the handlers read, or
/// one over every route's body limit.
fn body(known: Known) -> impl Strategy<Value = Vec<u8>> {
    let field = select(vec![
        "by", "level", "note", "sections", "starts", "ends", "duration", "reason", "csrf", "token",
        "incident", "action", "",
    ]);
    let k = known.clone();
    let json = prop::collection::vec(field.clone(), 0..6)
        .prop_flat_map(move |fields| {
            let values: Vec<_> = fields.iter().map(|f| json_value(&k, f)).collect();
            (Just(fields), values)
        })
        .prop_map(|(fields, values)| {
            let object: serde_json::Map<String, serde_json::Value> =
                fields.into_iter().map(str::to_owned).zip(values).collect();
            serde_json::to_vec(&object).expect("json")
        });
    let form =
        prop::collection::vec(field, 0..6).prop_flat_map(move |fields| form_body(&known, fields));
    prop_oneof![
        2 => Just(Vec::new()),
        2 => prop::collection::vec(any::<u8>(), 0..512),
        3 => json,
        3 => form,
        1 => (16_385..20_000usize).prop_map(|n| vec![b'a'; n]),
    ]
}

/// Every byte not unreserved in a URI, as `%XX`.
fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
