//! The act routes: their templates, the cleaning of the form, and every plain answer and result
//! message pinned word for word in both languages (status codes included), through the routes or
//! the functions that build them, so moving their words never changes a byte.

use std::net::IpAddr;

use axum::body::Body;
use axum::http::{Request, header};
use tower::ServiceExt;

use super::*;
use crate::config::MaintenanceWindow;
use crate::http::actions::Desk;
use crate::http::auth::session::SessionList;
use crate::http::auth::{AuthConfig, AuthMetrics, AuthShared};
use crate::incident::Level;
use crate::store::{EndWindow, StoredWindow};

#[test]
fn every_template_parses() {
    let env = environment();
    for (name, _) in TEMPLATES {
        env.get_template(name)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
}

#[test]
fn names_and_notes_are_cleaned() {
    assert_eq!(clean("  Ana\r\n\u{7}  ", MAX_BY, false), "Ana");
    assert_eq!(clean("a\nb", 10, true), "a\nb");
    assert_eq!(clean(&"x".repeat(500), MAX_BY, false).len(), MAX_BY);
}

const KEY: &[u8] = b"act answers key";
/// 2026-11-18 11:06:40 UTC.
const NOW: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);
const PUBLIC: &str = "https://watchdog.example/";
const ID: &str = "errors-1";

/// A desk on which every ack and resolve succeeds and no incident is stored.
struct Done;

impl Desk for Done {
    fn incident(&self, _: &str) -> Result<Option<Incident>, ActionError> {
        Ok(None)
    }

    fn ack(
        &self,
        _: &str,
        level: Option<Level>,
        _: Option<u32>,
        _: &str,
    ) -> Result<Level, ActionError> {
        Ok(level.unwrap_or(Level::L1))
    }

    fn resolve(&self, _: &str, _: Option<u32>, _: &str, _: &str) -> Result<(), ActionError> {
        Ok(())
    }

    fn windows(&self) -> Result<Vec<StoredWindow>, ActionError> {
        unreachable!("the links never list windows")
    }

    fn add_window(&self, _: &MaintenanceWindow, _: &str, _: Timestamp) -> Result<i64, ActionError> {
        unreachable!("the links never create windows")
    }

    fn end_window(&self, _: i64, _: &str, _: Timestamp) -> Result<EndWindow, ActionError> {
        unreachable!("the links never end windows")
    }
}

fn auth(clock: &Clock) -> Arc<Auth> {
    let shared = Arc::new(AuthShared::with(
        Arc::new(SessionList::in_memory()),
        clock.clone(),
        AuthMetrics::default(),
    ));
    let config = AuthConfig {
        api_token: None,
        secure_cookies: false,
        public_reads: true,
        trusted_proxies: Vec::new(),
    };
    Arc::new(Auth::new(config, KEY, shared))
}

fn actions() -> Arc<Actions> {
    Arc::new(Actions::new(Arc::new(Done), Vec::new(), Vec::new()))
}

/// The state the routes build, for the functions that answer.
fn state(locale: Locale) -> ActState {
    let (clock, _) = Clock::manual(NOW);
    ActState {
        actions: actions(),
        auth: auth(&clock),
        keys: Arc::new(LinkKeys::new(KEY)),
        clock,
        public_url: Url::parse(PUBLIC).expect("url"),
        locale,
        env: environment(),
    }
}

fn router(locale: Locale) -> Router {
    let (clock, _) = Clock::manual(NOW);
    let auth = auth(&clock);
    routes(
        actions(),
        Arc::new(LinkKeys::new(KEY)),
        clock,
        Url::parse(PUBLIC).expect("url"),
        locale,
        auth,
    )
}

fn token(action: Action) -> String {
    LinkKeys::new(KEY).sign(&Claims::new(
        ID,
        action,
        Level::L2,
        NOW,
        Duration::from_secs(3600),
    ))
}

async fn body_of(resp: Response) -> (StatusCode, String) {
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, String::from_utf8(bytes.to_vec()).expect("utf-8"))
}

/// `POST /act/{token}` with `form` (a form body when `Some`) and `origin`.
async fn post(
    locale: Locale,
    token: &str,
    form: Option<&str>,
    origin: Option<&str>,
) -> (StatusCode, String) {
    let mut req = Request::post(format!("/act/{token}"));
    if form.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    if let Some(origin) = origin {
        req = req.header(header::ORIGIN, origin);
    }
    let req = req
        .body(Body::from(form.unwrap_or("").to_owned()))
        .expect("request");
    body_of(router(locale).oneshot(req).await.expect("answer")).await
}

/// The text in `locale`: `pt` in pt-BR, `en` in English.
fn pick(locale: Locale, pt: &'static str, en: &'static str) -> &'static str {
    match locale {
        Locale::PtBr => pt,
        Locale::En => en,
    }
}

#[tokio::test]
async fn the_routes_answer_word_for_word_in_both_languages() {
    for locale in Locale::ALL {
        let result = |message: &str| format!("<p class=\"result\">{message}</p>");

        let form = format!("incident={ID}&action=ack&by=Ana");
        let (status, html) = post(locale, &token(Action::Ack), Some(&form), None).await;
        assert_eq!(status, StatusCode::OK, "{locale:?}: {html}");
        let want = pick(
            locale,
            "Reconhecido por Ana como L2 em 2026-11-18 11:06:40 UTC.",
            "Acknowledged by Ana as L2 at 2026-11-18 11:06:40 UTC.",
        );
        assert!(html.contains(&result(want)), "{locale:?}: {html}");

        // A blank name stands for the link's level, in English whatever the language: it is a
        // name recorded on the incident, not a word of the page.
        let form = format!("incident={ID}&action=ack&by=");
        let (status, html) = post(locale, &token(Action::Ack), Some(&form), None).await;
        assert_eq!(status, StatusCode::OK, "{locale:?}: {html}");
        let want = pick(
            locale,
            "Reconhecido por L2 via email link como L2 em 2026-11-18 11:06:40 UTC.",
            "Acknowledged by L2 via email link as L2 at 2026-11-18 11:06:40 UTC.",
        );
        assert!(html.contains(&result(want)), "{locale:?}: {html}");

        let form = format!("incident={ID}&action=resolve&by=Ana&note=restarted");
        let (status, html) = post(locale, &token(Action::Resolve), Some(&form), None).await;
        assert_eq!(status, StatusCode::OK, "{locale:?}: {html}");
        let want = pick(
            locale,
            "Resolvido por Ana em 2026-11-18 11:06:40 UTC.",
            "Resolved by Ana at 2026-11-18 11:06:40 UTC.",
        );
        assert!(html.contains(&result(want)), "{locale:?}: {html}");

        let form = format!("incident={ID}&action=ack&by=Ana");
        let answer = post(
            locale,
            &token(Action::Ack),
            Some(&form),
            Some("https://evil.example"),
        )
        .await;
        let want = pick(
            locale,
            "Recusado: o formulário veio de https://evil.example, não de https://watchdog.example. Nada foi alterado.\n",
            "Refused: the form came from https://evil.example, not from https://watchdog.example. Nothing was changed.\n",
        );
        assert_eq!(
            answer,
            (StatusCode::FORBIDDEN, want.to_owned()),
            "{locale:?}"
        );

        // A form for the other action than the token's.
        let form = format!("incident={ID}&action=resolve&by=Ana");
        let answer = post(locale, &token(Action::Ack), Some(&form), None).await;
        let want = pick(
            locale,
            "Recusado: este link é de outro incidente ou ação que não os do formulário. Nada foi alterado.\n",
            "Refused: this link is for another incident or action than the form names. Nothing was changed.\n",
        );
        assert_eq!(
            answer,
            (StatusCode::FORBIDDEN, want.to_owned()),
            "{locale:?}"
        );

        let answer = post(locale, "nonsense", Some(&form), None).await;
        let want = pick(
            locale,
            "Recusado: este link está danificado ou incompleto (o cliente de email o cortou?). Nada foi alterado.\n",
            "Refused: this link is damaged or incomplete (was it cut by the mail client?). Nothing was changed.\n",
        );
        assert_eq!(
            answer,
            (StatusCode::FORBIDDEN, want.to_owned()),
            "{locale:?}"
        );

        // No form content type: not a form.
        let answer = post(locale, &token(Action::Ack), None, None).await;
        assert_eq!(
            answer,
            (StatusCode::BAD_REQUEST, "bad form\n".to_owned()),
            "{locale:?}"
        );
    }
}

#[tokio::test]
async fn the_refusals_and_failures_answer_word_for_word_in_both_languages() {
    let client = ClientKey::of("192.0.2.7".parse::<IpAddr>().expect("ip"));
    for locale in Locale::ALL {
        let st = state(locale);

        let resp = rate_limited(&st, client, Duration::from_millis(2500));
        assert_eq!(
            resp.headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"3"[..])
        );
        let want = pick(
            locale,
            "Recusado sem verificar: tentativas erradas demais deste endereço; tente de novo em 3 s. Nada foi alterado.\n",
            "Refused without checking: too many failed attempts from this address; try again in 3 s. Nothing was changed.\n",
        );
        assert_eq!(
            body_of(resp).await,
            (StatusCode::TOO_MANY_REQUESTS, want.to_owned()),
            "{locale:?}"
        );

        let refusals = [
            (
                TokenError::Malformed,
                "Recusado: este link está danificado ou incompleto (o cliente de email o cortou?). Nada foi alterado.\n",
                "Refused: this link is damaged or incomplete (was it cut by the mail client?). Nothing was changed.\n",
            ),
            (
                TokenError::BadSignature,
                "Recusado: este link não foi emitido por este watchdog. Nada foi alterado.\n",
                "Refused: this link was not issued by this watchdog. Nothing was changed.\n",
            ),
            (
                TokenError::Expired { expired_at: NOW },
                "Recusado: este link expirou em 2026-11-18 11:06:40 UTC; use a página de status. Nada foi alterado.\n",
                "Refused: this link expired at 2026-11-18 11:06:40 UTC; use the status page. Nothing was changed.\n",
            ),
            (
                TokenError::WrongIncident,
                "Recusado: este link é de outro incidente ou ação que não os do formulário. Nada foi alterado.\n",
                "Refused: this link is for another incident or action than the form names. Nothing was changed.\n",
            ),
            (
                TokenError::WrongAction,
                "Recusado: este link é de outro incidente ou ação que não os do formulário. Nada foi alterado.\n",
                "Refused: this link is for another incident or action than the form names. Nothing was changed.\n",
            ),
        ];
        for (e, pt, en) in refusals {
            let answer = body_of(refused(&st, &e, "POST", client)).await;
            let want = pick(locale, pt, en);
            assert_eq!(answer, (StatusCode::FORBIDDEN, want.to_owned()), "{e:?}");
        }

        let not_found_text = pick(
            locale,
            "Incidente errors-1 não encontrado. Nada foi alterado.\n",
            "No incident errors-1. Nothing was changed.\n",
        );
        assert_eq!(
            body_of(not_found(&st, ID)).await,
            (StatusCode::NOT_FOUND, not_found_text.to_owned())
        );

        let reopened = pick(
            locale,
            "o incidente errors-1 reabriu (2ª reabertura) depois que o email com este link foi enviado, então o link não vale mais. Use os links do email mais recente, ou a página de status.",
            "incident errors-1 reopened (reopening #2) after the email with this link was sent, so the link no longer acts. Use the links of the newest email, or the status page.",
        );
        assert_eq!(reopened_text(locale, ID, 2), reopened);

        let failures = [
            (
                ActionError::UnknownIncident(ID.into()),
                StatusCode::NOT_FOUND,
                not_found_text.to_owned(),
            ),
            (
                ActionError::AlreadyResolved(ID.into()),
                StatusCode::CONFLICT,
                pick(
                    locale,
                    "O incidente errors-1 já está resolvido. Nada foi alterado.\n",
                    "Incident errors-1 is already resolved. Nothing was changed.\n",
                )
                .to_owned(),
            ),
            (
                ActionError::Reopened {
                    id: ID.into(),
                    reopened: 2,
                },
                StatusCode::CONFLICT,
                format!(
                    "{} {reopened} {}\n",
                    pick(locale, "Recusado:", "Refused:"),
                    pick(locale, "Nada foi alterado.", "Nothing was changed.")
                ),
            ),
            (
                ActionError::Unavailable("store: disk full".into()),
                StatusCode::SERVICE_UNAVAILABLE,
                pick(
                    locale,
                    "O watchdog não conseguiu registrar agora; tente de novo em instantes.\n",
                    "The watchdog could not record this now; try again in a moment.\n",
                )
                .to_owned(),
            ),
            (
                ActionError::invalid("by", "by is too long"),
                StatusCode::BAD_REQUEST,
                "bad form\n".to_owned(),
            ),
            (
                ActionError::OtherLevel {
                    link: Level::L2,
                    asked: Level::L1,
                },
                StatusCode::BAD_REQUEST,
                "bad form\n".to_owned(),
            ),
            // Issue 17: a standby sends the reader to the leader.
            (
                ActionError::Standby {
                    leader: Some("node-a".into()),
                },
                StatusCode::SERVICE_UNAVAILABLE,
                pick(
                    locale,
                    "Este watchdog é uma réplica em espera: só a líder (node-a) reconhece, resolve e altera janelas de manutenção; abra a página da líder, ou tente de novo em instantes se ela estiver assumindo. Nada foi alterado.\n",
                    "This watchdog is a standby replica: only the leader (node-a) acknowledges, resolves and changes maintenance windows; open the leader's page, or try again in a moment if it is taking over. Nothing was changed.\n",
                )
                .to_owned(),
            ),
        ];
        for (e, status, want) in failures {
            let answer = body_of(action_failed(&st, &e)).await;
            assert_eq!(answer, (status, want), "{locale:?}: {e:?}");
        }
    }
}
