//! The forms: the checks every mutating form passes before anything is read or changed (same
//! origin, a session, its CSRF token), the refusals and their pages, reading a form body, and the
//! answers to a form once the actions service has said what happened.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::views::{MessagePage, SessionView, page_kind};
use super::{PagesState, labels};
use crate::http::auth::ClientKey;
use crate::http::auth::session::Session;
use crate::http::{action_status, cross_site, html_page};
use crate::incident::ActionError;
use crate::locale::human_time;

impl PagesState {
    /// `None` when the request may read the pages: reads are public, or it is signed in. Otherwise
    /// the way to the sign-in page.
    pub(super) fn must_sign_in(&self, session: Option<&SessionView>) -> Option<Response> {
        if self.auth.public_reads() || session.is_some() {
            return None;
        }
        self.auth.refused("no_credentials");
        Some(see_other("/signin", None))
    }

    /// A page with a title and a message, in the page's kind for `session`.
    pub(super) fn message(
        &self,
        status: StatusCode,
        title_key: &'static str,
        message: String,
        session: Option<SessionView>,
    ) -> Response {
        let t = labels(self.locale);
        let kind = page_kind(session.as_ref());
        let page = MessagePage {
            t: &t,
            now: human_time(self.clock.now()),
            session,
            title: t[title_key],
            message,
            api_open: self.auth.configured(),
        };
        html_page(&self.env, "web_refused.html", &page, status, kind)
    }

    /// Refuses a form of `client`: logs why (at most once a minute per client, saying how many were
    /// held back), and answers a page that says it and that nothing changed.
    pub(super) fn refuse(&self, r: Refusal, client: ClientKey) -> Response {
        if let Some(held_back) = self.auth.should_log(client) {
            tracing::warn!(%client, reason = r.reason, detail = %r.detail, held_back, "refused a form on the status pages");
        }
        self.metrics
            .refused(r.reason.strip_prefix("refused_").unwrap_or(r.reason));
        let t = labels(self.locale);
        let message = format!("{} {}", t[r.reason], t["nothing_changed"]);
        let message = if r.detail.is_empty() {
            message
        } else {
            format!("{message} ({})", r.detail)
        };
        let mut page = self.message(r.status, "refused", message, None);
        if let Some(secs) = r.retry_after {
            page.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        page
    }

    /// The checks every mutating form passes before anything is read or changed: a same-origin
    /// request, a valid session, and that session's CSRF token in the `csrf` field.
    pub(super) fn authorize(
        &self,
        headers: &HeaderMap,
        form: &FormData,
    ) -> Result<Session, Refusal> {
        if let Some(origin) = cross_site(headers, &self.public_url) {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "refused_cross_site",
                origin,
            ));
        }
        let Some(sessions) = self.auth.sessions() else {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "refused_no_token",
                String::new(),
            ));
        };
        let Some((_, session)) = self.auth.session(headers) else {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "refused_signed_out",
                String::new(),
            ));
        };
        if !sessions.check_csrf(&session, form.get("csrf")) {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "refused_csrf",
                String::new(),
            ));
        }
        Ok(session)
    }
}

/// A form that passed [`PagesState::authorize`]: its fields, and the session that sent it. As the
/// last extractor of a handler it reads the body, then checks it before any field is looked at, so
/// the handler runs only for a form from our own origin, signed in, with the session's CSRF token;
/// any other answer is the refusal page.
pub(super) struct SignedForm {
    pub(super) form: FormData,
    pub(super) session: Session,
}

impl FromRequest<Arc<PagesState>> for SignedForm {
    type Rejection = Response;

    async fn from_request(request: Request, st: &Arc<PagesState>) -> Result<Self, Response> {
        let headers = request.headers().clone();
        let client = st.auth.client(request.extensions(), &headers);
        let body = Bytes::from_request(request, st)
            .await
            .map_err(IntoResponse::into_response)?;
        let form = FormData::parse(&body);
        match st.authorize(&headers, &form) {
            Ok(session) => Ok(Self { form, session }),
            Err(refused) => Err(st.refuse(refused, client)),
        }
    }
}

/// Why a form is refused: the answer's status, the label that says why, and a detail (the foreign
/// origin).
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) reason: &'static str,
    pub(super) detail: String,
    /// 429's `Retry-After`, in seconds.
    pub(super) retry_after: Option<u64>,
}

impl Refusal {
    pub(super) fn new(status: StatusCode, reason: &'static str, detail: String) -> Self {
        Self {
            status,
            reason,
            detail,
            retry_after: None,
        }
    }
}

/// A form body (`application/x-www-form-urlencoded`), with repeated fields (the sections of a
/// window) kept.
pub(super) struct FormData(Vec<(String, String)>);

impl FormData {
    pub(super) fn parse(body: &[u8]) -> Self {
        Self(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`; empty when absent.
    pub(super) fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub(super) fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The value of `name`, `None` when absent or blank.
    pub(super) fn optional(&self, name: &str) -> Option<String> {
        Some(self.get(name).trim().to_owned()).filter(|v| !v.is_empty())
    }
}

/// `303 See Other` to `to` (after a form: a reload does not post again), with `cookie` set if given.
pub(super) fn see_other(to: &str, cookie: Option<String>) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(to) {
        h.insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Turns the outcome of a form into the way back to the incident, or a page saying why not.
pub(super) fn answer_form<T>(
    st: &PagesState,
    id: &str,
    result: Result<T, ActionError>,
) -> Response {
    let t = labels(st.locale);
    match result {
        Ok(_) => see_other(&format!("/incidents/{id}"), None),
        // (`Reopened` answers email links only; the pages act on the incident as it is now.)
        Err(
            ActionError::AlreadyResolved(_)
            | ActionError::UnknownIncident(_)
            | ActionError::Reopened { .. },
        ) => st.message(
            StatusCode::CONFLICT,
            "not_acted",
            format!("{} {}", t["not_open"], t["nothing_changed"]),
            None,
        ),
        Err(ActionError::Unavailable(why)) => {
            tracing::warn!(error = %why, "a form on the status pages could not be carried out");
            st.message(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_acted",
                t["unavailable"].to_owned(),
                None,
            )
        }
        Err(e) => not_done(st, &e),
    }
}

/// A form that was not carried out (bad input, a window that cannot be ended, a store failure): a
/// page saying why, with the API's status and words.
pub(super) fn not_done(st: &PagesState, e: &ActionError) -> Response {
    tracing::warn!(error = %e, "a form on the status pages was not carried out");
    let status = action_status(e);
    if status.is_client_error() {
        st.metrics.refused("bad_input");
    }
    let t = labels(st.locale);
    st.message(
        status,
        "not_acted",
        format!("{} {}", error_words(e, st.locale), t["nothing_changed"]),
        None,
    )
}

/// Why an action was not taken, in the page's language (the API's `Display` is English).
fn error_words(e: &ActionError, locale: crate::locale::Locale) -> String {
    use crate::locale::{fill, human_time};
    let t = locale.text();
    let sentence = match e {
        ActionError::Invalid { field, words } => fill(
            t.err_invalid,
            &[("field", field), ("why", &words.words(locale))],
        ),
        ActionError::OtherLevel { link, .. } => fill(t.err_other_level, &[("link", link)]),
        ActionError::UnknownWindow(id) => fill(t.err_unknown_window, &[("id", id)]),
        ActionError::ConfiguredWindow(id) => fill(t.err_configured_window, &[("id", id)]),
        ActionError::WindowOver { id, ended_at } => fill(
            t.err_window_over,
            &[("id", id), ("ended_at", &human_time(*ended_at))],
        ),
        ActionError::UnknownIncident(_)
        | ActionError::AlreadyResolved(_)
        | ActionError::Reopened { .. } => t.not_open.to_owned(),
        ActionError::Unavailable(_) => t.unavailable.to_owned(),
        ActionError::Standby { leader } => fill(
            t.standby_refused,
            &[("leader", &leader.as_deref().unwrap_or(t.leader_unknown))],
        ),
    };
    // A sentence, as the page shows it: capitalized, with its period.
    let mut chars = sentence.chars();
    let first = chars.next().map(|c| c.to_uppercase().collect::<String>());
    let sentence = first.unwrap_or_default() + chars.as_str();
    if sentence.ends_with('.') {
        sentence
    } else {
        sentence + "."
    }
}
