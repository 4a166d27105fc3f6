//! The pages' handlers: the reads (`/`, an incident, the windows, the sign-in page) and the forms
//! (ack, resolve, window made or ended, sign-in and sign-out), each checked by [`super::forms`] and
//! carried out by the actions service.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::forms::{FormData, Refusal, SignedForm, answer_form, not_done, see_other};
use super::views::{IncidentPage, IndexPage, MaintenancePage, MessagePage, page_kind};
use super::{PagesState, RECENT, SCAN, labels};
use crate::http::actions::{Via, WindowRequest, store_unavailable};
use crate::http::auth::{self, Peer};
use crate::http::{PageKind, blocking, cross_site, html_page, text_page};
use crate::incident::{ActionError, Incident, IncidentState};
use crate::locale::{Locale, human_time};
use crate::store::{Store, StoreError};

/// Runs a store read or write on the blocking pool; `Err` is the 503 page, in `locale`.
async fn store_task<T: Send + 'static>(
    locale: Locale,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Response> {
    blocking(move || f().map_err(store_unavailable))
        .await
        .map_err(|e| unavailable(&e, locale))
}

/// The 503 page of a read or write the store could not do, in the page's language.
pub(super) fn unavailable(e: &ActionError, locale: Locale) -> Response {
    tracing::warn!(error = %e, "status page: the store could not be read or written");
    text_page(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{}\n", locale.text().store_read_failed),
        PageKind::Status,
    )
}

impl PagesState {
    pub(super) fn store(&self) -> Arc<Store> {
        Arc::clone(&self.store)
    }
}

/// `GET /`.
pub(super) async fn index(
    State(st): State<Arc<PagesState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let now = st.clock.now();
    let session = st.session_view(&headers);
    if let Some(sign_in) = st.must_sign_in(session.as_ref()) {
        return sign_in;
    }
    let store = st.store();
    let loaded = store_task(st.locale, move || {
        let latest = store.latest_per_section()?;
        let recent = store.recent_incidents(SCAN)?;
        Ok((latest, recent))
    })
    .await;
    let store_down = st
        .store_health
        .finding()
        .map(|f| super::views::store_down_view(&f, st.locale));
    // While the store finding says the store is down, a read it fails still shows the page (503):
    // the finding on top, and in place of each list a line saying it cannot be read now.
    let mut unreadable = false;
    let (latest, recent) = match loaded {
        Ok(v) => v,
        Err(_) if store_down.is_some() => {
            unreadable = true;
            (Vec::new(), Vec::new())
        }
        Err(resp) => return resp,
    };
    let stored = match st.actions.windows().await {
        Ok(v) => v,
        Err(_) if store_down.is_some() => {
            unreadable = true;
            Vec::new()
        }
        Err(e) => return unavailable(&e, st.locale),
    };
    let t = labels(st.locale);
    let mut open: Vec<&Incident> = latest
        .iter()
        .filter(|i| i.state == IncidentState::Open)
        .collect();
    // Worst first: critical before major, then the highest level paged, then the oldest.
    open.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(b.highest_paged().cmp(&a.highest_paged()))
            .then(a.opened_at.cmp(&b.opened_at))
    });
    let resolved = recent
        .iter()
        .filter(|i| i.state == IncidentState::Resolved)
        .take(RECENT)
        .map(|i| st.row(i, now, &t))
        .collect();
    let windows = st.window_rows(&stored, now, &t, |w| w.starts <= now && now < w.ends);
    let kind = page_kind(session.as_ref());
    let blind_spots = super::views::blind_views(&st.blind_spots.borrow(), st.locale);
    let glances = st.glances(&open, now).await;
    let listed = st.alerts.list(now);
    let alerts = super::views::alert_rows(&listed, &st.runbook, st.locale);
    let page = IndexPage {
        blind_spots,
        store_down,
        unreadable,
        t: &t,
        now: human_time(now),
        refresh: refreshes(query.as_deref()).then_some(REFRESH_EVERY.as_secs()),
        session,
        open: open
            .into_iter()
            .zip(glances)
            .map(|(i, g)| st.row(i, now, &t).with_glance(g))
            .collect(),
        resolved,
        windows,
        role: super::views::role_words(st.actions.leadership(), st.locale),
        alerts_more: listed.len().saturating_sub(alerts.len()),
        alerts,
    };
    let status = if unreadable {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    html_page(&st.env, "web_index.html", &page, status, kind)
}

/// How often the status page reloads itself: a little over the default Prometheus interval, so an
/// incident opened or resolved shows within a poll or two, and seldom enough that a page left open on
/// a wall screen costs the watchdog one store read every half minute.
pub(super) const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether `GET /` asks the browser to reload it (`<meta http-equiv="refresh">`, no script, so the
/// CSP holds): yes unless the query says `refresh=0` (or `off`, `no`, `false`), for someone reading
/// a long list who does not want it to move under them. Only the index refreshes: the pages with
/// forms never do, as a reload would lose what is being typed.
pub(super) fn refreshes(query: Option<&str>) -> bool {
    !query.unwrap_or("").split('&').any(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        key == "refresh" && matches!(value, "0" | "off" | "no" | "false")
    })
}

/// `GET /incidents/{id}`.
pub(super) async fn incident_page(
    State(st): State<Arc<PagesState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let now = st.clock.now();
    let session = st.session_view(&headers);
    if let Some(sign_in) = st.must_sign_in(session.as_ref()) {
        return sign_in;
    }
    let store = st.store();
    let key = id.clone();
    let incident = match store_task(st.locale, move || store.incident(&key)).await {
        Ok(i) => i,
        Err(resp) => return resp,
    };
    let t = labels(st.locale);
    match incident {
        Some(i) => {
            let kind = page_kind(session.as_ref());
            let charts = st.incident_charts(&i, now).await;
            let page = IncidentPage {
                charts,
                t: &t,
                now: human_time(now),
                session,
                incident: st.detail(&i, now, &t),
                api_open: st.auth.configured(),
                levels: i.paged.keys().map(ToString::to_string).collect(),
            };
            html_page(&st.env, "web_incident.html", &page, StatusCode::OK, kind)
        }
        None => st.message(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{} {id}.", t["not_found_text"]),
            session,
        ),
    }
}

/// `POST /incidents/{id}/ack`: `csrf`, `by`, `level` (blank: the highest level paged).
pub(super) async fn ack(
    State(st): State<Arc<PagesState>>,
    Path(id): Path<String>,
    SignedForm { form, .. }: SignedForm,
) -> Response {
    let (by, level) = (form.get("by"), Some(form.get("level")));
    let result = st.actions.ack(&id, by, level, None, Via::Pages).await;
    answer_form(&st, &id, result)
}

/// `POST /incidents/{id}/resolve`: `csrf`, `by`, `note`.
pub(super) async fn resolve(
    State(st): State<Arc<PagesState>>,
    Path(id): Path<String>,
    SignedForm { form, .. }: SignedForm,
) -> Response {
    let (by, note) = (form.get("by"), form.get("note"));
    let result = st.actions.resolve(&id, by, note, None, Via::Pages).await;
    answer_form(&st, &id, result)
}

/// `GET /maintenance`: the windows not over yet, and the form to add one when signed in.
pub(super) async fn maintenance_page(
    State(st): State<Arc<PagesState>>,
    headers: HeaderMap,
) -> Response {
    let now = st.clock.now();
    let session = st.session_view(&headers);
    if let Some(sign_in) = st.must_sign_in(session.as_ref()) {
        return sign_in;
    }
    let stored = match st.actions.windows().await {
        Ok(v) => v,
        Err(e) => return unavailable(&e, st.locale),
    };
    let t = labels(st.locale);
    let kind = page_kind(session.as_ref());
    let page = MaintenancePage {
        t: &t,
        now: human_time(now),
        session,
        windows: st.window_rows(&stored, now, &t, |w| now < w.ends),
        sections: st
            .runbook
            .sections
            .iter()
            .map(|s| (s.id.clone(), s.title.get(st.locale).to_owned()))
            .collect(),
        api_open: st.auth.configured(),
    };
    html_page(&st.env, "web_maintenance.html", &page, StatusCode::OK, kind)
}

/// `POST /maintenance`: `csrf`, `sections` (repeated; none: every section), `starts`?, `duration` or
/// `ends`, `reason`, `by`; checked like the API's windows.
pub(super) async fn create_window(
    State(st): State<Arc<PagesState>>,
    SignedForm { form, .. }: SignedForm,
) -> Response {
    let request = WindowRequest {
        sections: form.all("sections"),
        starts: form.optional("starts"),
        ends: form.optional("ends"),
        duration: form.optional("duration"),
        reason: form.get("reason").to_owned(),
        by: form.get("by").to_owned(),
    };
    let now = st.clock.now();
    if let Err(e) = st.actions.add_window(request, now, Via::Pages).await {
        return not_done(&st, &e);
    }
    see_other("/maintenance", None)
}

/// `POST /maintenance/{id}/end`: `csrf`, `by`; ends the window now, like
/// `DELETE /api/maintenance/{id}`.
pub(super) async fn end_window(
    State(st): State<Arc<PagesState>>,
    Path(id): Path<String>,
    SignedForm { form, .. }: SignedForm,
) -> Response {
    let now = st.clock.now();
    let ended = st.actions.end_window(&id, form.get("by"), now, Via::Pages);
    if let Err(e) = ended.await {
        return not_done(&st, &e);
    }
    see_other("/maintenance", None)
}

/// `GET /signin`.
pub(super) async fn signin_page(State(st): State<Arc<PagesState>>, headers: HeaderMap) -> Response {
    let now = st.clock.now();
    let t = labels(st.locale);
    let session = st.session_view(&headers);
    let page = MessagePage {
        t: &t,
        now: human_time(now),
        session,
        title: t["signin"],
        message: String::new(),
        api_open: st.auth.configured(),
    };
    // The sign-in form posts to us whether signed in or not.
    html_page(
        &st.env,
        "web_signin.html",
        &page,
        StatusCode::OK,
        PageKind::Action,
    )
}

/// `POST /signin`: `token` is the API token; a session cookie on success. There is no session yet
/// to hold a CSRF token, so the same-origin check stands alone here (a forged sign-in would need the
/// token anyway).
pub(super) async fn signin(
    State(st): State<Arc<PagesState>>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = FormData::parse(&body);
    let client = st.auth.client_at(peer, &headers);
    let refuse =
        |reason, detail| st.refuse(Refusal::new(StatusCode::FORBIDDEN, reason, detail), client);
    if let Some(origin) = cross_site(&headers, &st.public_url) {
        return refuse("refused_cross_site", origin);
    }
    let Some(sessions) = st.auth.sessions().cloned() else {
        return refuse("refused_no_token", String::new());
    };
    // Over budget, the token is not even compared: a guesser learns nothing.
    match st.auth.check_token(client, form.get("token").trim()) {
        Ok(()) => {}
        Err(auth::Denied::RateLimited(wait)) => {
            let secs = auth::retry_after_secs(wait);
            let refusal = Refusal {
                retry_after: Some(secs),
                ..Refusal::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "refused_rate_limited",
                    format!("{secs} s"),
                )
            };
            return st.refuse(refusal, client);
        }
        Err(auth::Denied::NotConfigured) => return refuse("refused_no_token", String::new()),
        Err(auth::Denied::Wrong) => return refuse("refused_wrong_token", String::new()),
    }
    let now = st.clock.now();
    let cookie = match store_task(st.locale, move || sessions.issue(now)).await {
        Ok((_, cookie)) => cookie,
        Err(resp) => return resp,
    };
    tracing::info!("signed in on the status pages");
    see_other("/", Some(cookie))
}

/// `POST /signout`: `csrf`; ends the session on the server and clears the cookie.
pub(super) async fn signout(
    State(st): State<Arc<PagesState>>,
    SignedForm { session, .. }: SignedForm,
) -> Response {
    let Some(sessions) = st.auth.sessions().cloned() else {
        return see_other("/", None);
    };
    // Ended on the server: the same cookie, replayed, is refused from now on.
    let cookie = sessions.clear_cookie();
    if let Err(resp) = store_task(st.locale, move || sessions.revoke(&session)).await {
        return resp;
    }
    tracing::info!("signed out of the status pages");
    see_other("/", Some(cookie))
}

#[cfg(test)]
mod tests {
    use super::{Locale, refreshes, unavailable};
    use crate::incident::ActionError;

    /// The 503 page of a failed store read speaks the page's language, and never the store's
    /// own words (they are logged).
    #[tokio::test]
    async fn the_store_failure_page_speaks_the_page_language() {
        for (locale, words) in [
            (Locale::PtBr, "não pôde ser lido agora"),
            (Locale::En, "could not be read now"),
        ] {
            let e = ActionError::Unavailable("store: disk I/O error".into());
            let resp = unavailable(&e, locale);
            assert_eq!(resp.status(), 503);
            let body = axum::body::to_bytes(resp.into_body(), 4096)
                .await
                .expect("body");
            let body = String::from_utf8(body.to_vec()).expect("utf-8");
            assert!(body.contains(words), "{locale:?}: {body}");
            assert!(!body.contains("disk I/O"), "{body}");
        }
    }

    #[test]
    fn the_index_refreshes_unless_the_query_turns_it_off() {
        for on in [
            None,
            Some(""),
            Some("x=1"),
            Some("refresh=1"),
            Some("refresh"),
            Some("norefresh=0"),
        ] {
            assert!(refreshes(on), "{on:?}");
        }
        for off in [
            "refresh=0",
            "refresh=off",
            "a=b&refresh=no",
            "refresh=false&a=b",
        ] {
            assert!(!refreshes(Some(off)), "{off}");
        }
    }
}
