//! The ack/resolve links of the emails: `GET /act/{token}` shows a confirmation page and changes
//! nothing (mail scanners and link previews fetch every link on delivery); `POST /act/{token}` acts.
//!
//! The token in the path is the authority: signed by this watchdog, bound to the incident, the action,
//! the level and the incident's episode, and expiring ([`crate::email::token`]). A forged, altered or expired
//! token is refused with 403 before anything is read or changed. A link acts only on the episode its
//! email was sent in: a second POST of a resolve link finds the incident resolved, and after a reopen
//! every earlier link is refused (409, a page saying why), so a replayed link never resolves or
//! acknowledges an episode its reader was not told about; the reopened email carries new links. The POST also carries the incident and action the page
//! showed, and they must be the token's, so a form is never applied to what its page did not name.
//! Cross-site form posts are refused ([`crate::http::cross_site`]: `Sec-Fetch-Site`, `Origin` or,
//! without one, `Referer`, when the browser sends them): they must come from the watchdog's own
//! `public_url`.
//!
//! Acting is the actions service's ([`Actions`], shared with the API and the pages: the same
//! checks, the same outcome), so these routes know nothing of the store or the daemon; they clean
//! the form (a name and a note, cut to length, control characters dropped, a blank name standing for
//! the link's level) and render the outcome as a page. Every word they answer with is the
//! locale's ([`crate::locale::Text`]: the pages' labels and the `link_*` plain answers), so this
//! module holds no sentence of either language; its own, the same in both, are only `bad form`
//! and the name a blank form records (`L2 via email link`), which is data, not a page's word.
//!
//! A token is not guessable (HMAC-SHA256), so a refused one spends no failure budget, but a client
//! over its own budget ([`crate::http::auth::limit`]) has its link refused with 429 unchecked like
//! any credential, and refusals are logged at most once a minute per client.

mod labels;

use std::sync::Arc;
use std::time::Duration;

use axum::Form;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use minijinja::Environment;
use serde::{Deserialize, Serialize};
use url::Url;

use super::actions::{Actions, MAX_BY, MAX_NOTE, Via};
use crate::clock::{Clock, Timestamp};
use crate::email::public_link;
use crate::email::token::{Action, Claims, LinkKeys, TokenError};
use crate::http::auth::{Auth, ClientKey, Peer};
use crate::http::{PageKind, cross_site, html_page, text_page};
use crate::incident::{ActionError, Incident, IncidentState};
use crate::locale::{fill, human_duration, human_time};
use crate::runbook::Locale;
use labels::page_labels;

/// The pages' templates, compiled in. `.html`: auto-escaped.
const TEMPLATES: &[(&str, &str)] = &[
    ("act.html", include_str!("templates/act.html")),
    ("act_result.html", include_str!("templates/act_result.html")),
];

/// The email module's template environment with these pages' templates.
fn environment() -> Environment<'static> {
    super::page_environment(TEMPLATES)
}

fn plain_text(status: StatusCode, body: String) -> Response {
    text_page(status, body, PageKind::Action)
}

struct ActState {
    /// Acks and resolves, carried out as for the API and the pages.
    actions: Arc<Actions>,
    /// The failure budgets and the log throttle (the links take no other credential).
    auth: Arc<Auth>,
    keys: Arc<LinkKeys>,
    clock: Clock,
    public_url: Url,
    locale: Locale,
    env: Environment<'static>,
}

/// The `/act/{token}` routes. `keys` are the link keys the emails were signed with; `public_url` is
/// the origin form posts must come from; `locale` is the language of the pages; `auth` holds the
/// failure budgets and the log throttle.
pub fn routes(
    actions: Arc<Actions>,
    keys: Arc<LinkKeys>,
    clock: Clock,
    public_url: Url,
    locale: Locale,
    auth: Arc<Auth>,
) -> Router {
    let state = Arc::new(ActState {
        actions,
        auth,
        keys,
        clock,
        public_url,
        locale,
        env: environment(),
    });
    Router::new()
        .route("/act/{token}", get(confirm_page).post(act))
        // A name and a note: anything larger is not a person filling the form.
        .layer(DefaultBodyLimit::max(16 * 1024))
        .with_state(state)
}

/// The fields of the confirmation form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ActForm {
    /// The incident the page showed: must be the token's.
    incident: String,
    /// The action the page showed: must be the token's.
    action: String,
    by: String,
    note: String,
}

#[derive(Serialize)]
struct PageView {
    t: std::collections::BTreeMap<&'static str, &'static str>,
    action: &'static str,
    level: &'static str,
    incident: Option<IncidentBrief>,
    /// The form is shown only when the action can still be taken.
    can_act: bool,
    /// Why not, when it cannot.
    why_not: String,
    expires_at: String,
    incident_url: String,
    /// The result page: what happened.
    message: String,
}

#[derive(Serialize)]
struct IncidentBrief {
    id: String,
    section: String,
    severity: String,
    state: &'static str,
    opened_at: String,
    open_for: String,
    acks: Vec<String>,
}

/// `GET /act/{token}`: the confirmation page. Reads, never writes.
async fn confirm_page(
    State(st): State<Arc<ActState>>,
    Path(token): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> Response {
    let now = st.clock.now();
    let client = st.auth.client_at(peer, &headers);
    if let Err(wait) = st.auth.admit_link(client) {
        return rate_limited(&st, client, wait);
    }
    let claims = match st.keys.verify(&token, now) {
        Ok(c) => c,
        Err(e) => return refused(&st, &e, "GET", client),
    };
    let incident = match st.actions.incident(&claims.incident).await {
        Ok(Some(i)) => i,
        Ok(None) => return not_found(&st, &claims.incident),
        Err(e) => return action_failed(&st, &e),
    };
    let why_not = if incident.reopened != claims.episode {
        reopened_text(st.locale, &incident.id, incident.reopened)
    } else if incident.state != IncidentState::Open {
        page_labels(st.locale)["not_open"].to_owned()
    } else {
        String::new()
    };
    let mut view = page_view(
        &st,
        &claims,
        Some(&incident),
        now,
        why_not.is_empty(),
        String::new(),
    );
    view.why_not = why_not;
    html_page(&st.env, "act.html", &view, StatusCode::OK, PageKind::Action)
}

/// `POST /act/{token}`: checks the origin, the token and the form, then acts once.
async fn act(
    State(st): State<Arc<ActState>>,
    Path(token): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    form: Result<Form<ActForm>, FormRejection>,
) -> Response {
    let client = st.auth.client_at(peer, &headers);
    if let Some(origin) = cross_site(&headers, &st.public_url) {
        if let Some(held_back) = st.auth.should_log(client) {
            tracing::warn!(%client, %origin, held_back, "refused a cross-site ack/resolve post");
        }
        let ours = st.public_url.origin().ascii_serialization();
        let msg = fill(
            st.locale.text().link_cross_site,
            &[("origin", &origin), ("ours", &ours)],
        );
        return plain_text(StatusCode::FORBIDDEN, msg + "\n");
    }
    if let Err(wait) = st.auth.admit_link(client) {
        return rate_limited(&st, client, wait);
    }
    let now = st.clock.now();
    let claims = match st.keys.verify(&token, now) {
        Ok(c) => c,
        Err(e) => return refused(&st, &e, "POST", client),
    };
    let Ok(Form(form)) = form else {
        return plain_text(StatusCode::BAD_REQUEST, "bad form\n".to_owned());
    };
    // The form names what its page showed; a form without `action` (curl) means the token's.
    let form_action = match form.action.trim() {
        "" => Some(claims.action),
        a => Action::parse(a),
    };
    let checked = form_action
        .ok_or(TokenError::WrongAction)
        .and_then(|a| claims.authorize(form.incident.trim(), a));
    if let Err(e) = checked {
        return refused(&st, &e, "POST", client);
    }
    let by = clean(&form.by, MAX_BY, false);
    let by = if by.is_empty() {
        format!("{} via email link", claims.level)
    } else {
        by
    };
    let note = clean(&form.note, MAX_NOTE, true);

    let (id, link) = (&claims.incident, Some(&claims));
    let result = match claims.action {
        Action::Ack => st
            .actions
            .ack(id, &by, None, link, Via::EmailLink)
            .await
            .map(drop),
        Action::Resolve => {
            st.actions
                .resolve(id, &by, &note, link, Via::EmailLink)
                .await
        }
    };
    match result {
        Ok(()) => {
            tracing::info!(
                incident = %claims.incident,
                action = %claims.action,
                level = %claims.level,
                by = %by,
                "acted through an email link"
            );
            let (t, at) = (st.locale.text(), human_time(now));
            let message = match claims.action {
                Action::Ack => fill(
                    t.link_acked,
                    &[("by", &by), ("level", &claims.level), ("at", &at)],
                ),
                Action::Resolve => fill(t.link_resolved, &[("by", &by), ("at", &at)]),
            };
            let view = page_view(&st, &claims, None, now, false, message);
            html_page(
                &st.env,
                "act_result.html",
                &view,
                StatusCode::OK,
                PageKind::Action,
            )
        }
        Err(e) => action_failed(&st, &e),
    }
}

fn page_view(
    st: &ActState,
    claims: &Claims,
    incident: Option<&Incident>,
    now: Timestamp,
    can_act: bool,
    message: String,
) -> PageView {
    let t = page_labels(st.locale);
    PageView {
        action: claims.action.as_str(),
        level: claims.level.as_str(),
        incident: incident.map(|i| IncidentBrief {
            id: i.id.clone(),
            section: i.section.clone(),
            severity: i.severity.to_string(),
            state: match i.state {
                IncidentState::Open => t["state_open"],
                IncidentState::Resolved => t["state_resolved"],
            },
            opened_at: human_time(i.opened_at),
            open_for: human_duration(i.resolved_at.unwrap_or(now).saturating_since(i.opened_at)),
            acks: i
                .acks
                .iter()
                .map(|(level, a)| format!("{level}: {} ({})", a.by, human_time(a.at)))
                .collect(),
        }),
        can_act,
        why_not: String::new(),
        expires_at: human_time(claims.expires_at()),
        incident_url: public_link(&st.public_url, &format!("incidents/{}", claims.incident)),
        message,
        t,
    }
}

/// 429 for a client over its failure budget: the link was not checked.
fn rate_limited(st: &ActState, client: ClientKey, wait: Duration) -> Response {
    if let Some(held_back) = st.auth.should_log(client) {
        tracing::warn!(%client, held_back, "refused an ack/resolve link unchecked: too many failures");
    }
    let secs = crate::http::auth::retry_after_secs(wait);
    let msg = fill(st.locale.text().link_rate_limited, &[("secs", &secs)]);
    let mut resp = plain_text(StatusCode::TOO_MANY_REQUESTS, msg + "\n");
    resp.headers_mut()
        .insert(axum::http::header::RETRY_AFTER, secs.into());
    resp
}

/// 403 with a plain message saying why, and that nothing changed; logged at most once a minute per
/// client, counted as `bad_link_token`.
fn refused(st: &ActState, e: &TokenError, method: &str, client: ClientKey) -> Response {
    st.auth.refused("bad_link_token");
    if let Some(held_back) = st.auth.should_log(client) {
        tracing::warn!(%client, reason = e.label(), method, held_back, "refused an ack/resolve link");
    }
    let t = st.locale.text();
    let why = match e {
        TokenError::Malformed => t.link_why_malformed.to_owned(),
        TokenError::BadSignature => t.link_why_bad_signature.to_owned(),
        TokenError::Expired { expired_at } => {
            fill(t.link_why_expired, &[("at", &human_time(*expired_at))])
        }
        TokenError::WrongIncident | TokenError::WrongAction => t.link_why_mismatch.to_owned(),
    };
    let msg = fill(t.link_refused, &[("why", &why)]);
    plain_text(StatusCode::FORBIDDEN, msg + "\n")
}

fn not_found(st: &ActState, id: &str) -> Response {
    let msg = fill(st.locale.text().link_not_found, &[("id", &id)]);
    plain_text(StatusCode::NOT_FOUND, msg + "\n")
}

fn action_failed(st: &ActState, e: &ActionError) -> Response {
    let t = st.locale.text();
    match e {
        ActionError::UnknownIncident(id) => not_found(st, id),
        ActionError::AlreadyResolved(id) => plain_text(
            StatusCode::CONFLICT,
            fill(t.link_already_resolved, &[("id", id)]) + "\n",
        ),
        ActionError::Reopened { id, reopened } => {
            tracing::warn!(incident = %id, reopened, "refused an email link of an episode before the incident reopened");
            let why = reopened_text(st.locale, id, *reopened);
            plain_text(
                StatusCode::CONFLICT,
                fill(t.link_refused_because, &[("why", &why)]) + "\n",
            )
        }
        ActionError::Unavailable(why) => {
            tracing::error!(error = %why, "ack/resolve through an email link failed");
            plain_text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{}\n", t.unavailable),
            )
        }
        // A standby acts on nothing (issue 17): the reader is sent to the leader.
        ActionError::Standby { leader } => {
            let why = fill(
                t.standby_refused,
                &[("leader", &leader.as_deref().unwrap_or(t.leader_unknown))],
            );
            plain_text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{why} {}\n", t.nothing_changed),
            )
        }
        // A link's form is cleaned into valid input and acts for the link's level on an incident;
        // what is left cannot come from it.
        ActionError::Invalid { .. }
        | ActionError::OtherLevel { .. }
        | ActionError::UnknownWindow(_)
        | ActionError::ConfiguredWindow(_)
        | ActionError::WindowOver { .. } => {
            plain_text(StatusCode::BAD_REQUEST, "bad form\n".to_owned())
        }
    }
}

/// Why a link of an earlier episode no longer acts, and what to use instead.
fn reopened_text(locale: Locale, id: &str, reopened: u32) -> String {
    fill(
        locale.text().link_why_reopened,
        &[("id", &id), ("reopened", &reopened)],
    )
}

/// Trimmed, control characters dropped (newlines kept in notes), at most `max` characters.
fn clean(s: &str, max: usize, multiline: bool) -> String {
    s.trim()
        .chars()
        .filter(|c| !c.is_control() || (multiline && *c == '\n'))
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests;
