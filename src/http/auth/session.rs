//! Signed-in sessions of the pages, and the CSRF token of each.
//!
//! Signing in with the API token sets a cookie holding `expires.id.tag`: an expiry (Unix seconds), a
//! random session ID and `HMAC-SHA256(session key, context || expires.id)`. The token itself never
//! goes into the cookie. The session key is derived from the link key kept in the store and the
//! configured API token, so sessions survive a restart and all end when the token changes.
//!
//! A signature alone cannot be taken back, so the server also keeps the IDs of the sessions signed in
//! and not signed out ([`SessionList`], persisted in the store's key/value table): a cookie is valid
//! only while its ID is listed. Signing out removes it, so the same cookie replayed afterwards (from a
//! stolen copy, a shared computer, a proxy's log) is refused, across restarts too. The list holds at
//! most [`MAX_SESSIONS`]; past that the session closest to expiring is dropped (it signs in again).
//!
//! Each session's CSRF token is `HMAC-SHA256(session key, other context || id)`: a hidden field of
//! every form, which a cross-site page cannot read, checked on every POST (with `ring`'s constant-time
//! comparison). The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no cross-site request
//! carries it) and `Secure` when the public URL is `https`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::clock::Timestamp;
use crate::secret::Secret;
use crate::store::{Store, StoreError};

/// The session cookie's name.
pub const COOKIE: &str = "hw_session";
/// How long a sign-in lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The most sessions signed in at once (people on call, not visitors: sign-in takes the token).
pub const MAX_SESSIONS: usize = 256;
/// Where the list of live sessions is kept in the store's key/value table (each replica's its own
/// on a shared store: [`Store::own_name`]).
pub const LIST_KEY: &str = "web-sessions";

const KEY_CONTEXT: &[u8] = b"harven-watchdog/web-session-key/v1\n";
const SESSION_CONTEXT: &[u8] = b"harven-watchdog/web-session/v1\n";
const CSRF_CONTEXT: &[u8] = b"harven-watchdog/web-csrf/v1\n";

/// Issues and checks sessions. Exists only when an API token is configured (there is nothing to
/// sign in with otherwise). Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    key: hmac::Key,
    /// `Secure` cookies: the public URL is `https`.
    secure: bool,
    /// The sessions signed in and not out: outlives a reload (it is the process's, and the store's).
    list: Arc<SessionList>,
}

/// The IDs of the sessions signed in and not signed out, with their expiry (Unix seconds), in
/// memory and in the store (written on every sign-in and sign-out, read at start-up).
#[derive(Debug)]
pub struct SessionList {
    store: Option<Arc<Store>>,
    live: Mutex<BTreeMap<String, i64>>,
    /// Held across a change and its write, so the store gets the changes in the order made.
    writing: Mutex<()>,
}

impl SessionList {
    /// The list kept in `store` (empty if none was kept, or it cannot be read: everyone signs in
    /// again, which is safe).
    pub fn load(store: Arc<Store>) -> Self {
        let kept = match store.value(&store.own_name(LIST_KEY)) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes)
                .inspect_err(|e| tracing::warn!(error = %e, "ignoring the unreadable list of signed-in sessions"))
                .unwrap_or_default(),
            Ok(None) => BTreeMap::new(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the list of signed-in sessions; everyone signs in again");
                BTreeMap::new()
            }
        };
        Self {
            store: Some(store),
            live: Mutex::new(kept),
            writing: Mutex::new(()),
        }
    }

    /// A list kept in memory only (tests).
    pub fn in_memory() -> Self {
        Self {
            store: None,
            live: Mutex::new(BTreeMap::new()),
            writing: Mutex::new(()),
        }
    }

    fn is_live(&self, id: &str, now_secs: i64) -> bool {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.get(id).is_some_and(|expires| now_secs < *expires)
    }

    /// Applies `change` and writes the list. Blocking: call it on the blocking pool.
    fn change(&self, change: impl FnOnce(&mut BTreeMap<String, i64>)) -> Result<(), StoreError> {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let snapshot = {
            let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
            change(&mut live);
            serde_json::to_vec(&*live)?
        };
        match &self.store {
            Some(store) => store.put_value(&store.own_name(LIST_KEY), &snapshot),
            None => Ok(()),
        }
    }

    /// How many sessions are listed.
    pub fn len(&self) -> usize {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no session is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    id: String,
}

impl Sessions {
    /// Sessions signed with a key derived from `link_key` and `token`, listed in `list`; `None`
    /// without a token.
    pub fn new(
        link_key: &[u8],
        token: Option<&Secret>,
        secure: bool,
        list: Arc<SessionList>,
    ) -> Option<Self> {
        let token = token?;
        let mut msg = KEY_CONTEXT.to_vec();
        msg.extend_from_slice(token.expose().as_bytes());
        let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, link_key), &msg);
        Some(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            secure,
            list,
        })
    }

    fn tag(&self, context: &[u8], payload: &str) -> hmac::Tag {
        let mut msg = context.to_vec();
        msg.extend_from_slice(payload.as_bytes());
        hmac::sign(&self.key, &msg)
    }

    /// A new session from `now`, listed, with its `Set-Cookie` value. Blocking (it writes the list
    /// to the store): call it on the blocking pool.
    pub fn issue(&self, now: Timestamp) -> Result<(Session, String), StoreError> {
        let mut nonce = [0u8; 16];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| StoreError::Random)?;
        let id = URL_SAFE_NO_PAD.encode(nonce);
        let now_secs = now.as_unix_millis().div_euclid(1000);
        let expires = (now + SESSION_TTL).as_unix_millis().div_euclid(1000);
        self.list.change(|live| {
            live.retain(|_, e| now_secs < *e);
            while live.len() >= MAX_SESSIONS {
                let Some(soonest) = live.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone())
                else {
                    break;
                };
                live.remove(&soonest);
            }
            live.insert(id.clone(), expires);
        })?;
        let payload = format!("{expires}.{id}");
        let tag = URL_SAFE_NO_PAD.encode(self.tag(SESSION_CONTEXT, &payload).as_ref());
        let cookie = format!(
            "{COOKIE}={payload}.{tag}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
            SESSION_TTL.as_secs(),
            if self.secure { "; Secure" } else { "" }
        );
        Ok((Session { id }, cookie))
    }

    /// Ends `session` on the server: its cookie is refused from now on, wherever it is replayed.
    /// Blocking, like [`Sessions::issue`].
    pub fn revoke(&self, session: &Session) -> Result<(), StoreError> {
        self.list.change(|live| {
            live.remove(&session.id);
        })
    }

    /// The `Set-Cookie` value that ends the session in the browser.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// The request's session, if it carries one this watchdog signed, not expired at `now` and not
    /// signed out.
    pub fn verify(&self, headers: &HeaderMap, now: Timestamp) -> Option<Session> {
        let value = cookie(headers, COOKIE)?;
        let (payload, tag) = value.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut msg = SESSION_CONTEXT.to_vec();
        msg.extend_from_slice(payload.as_bytes());
        hmac::verify(&self.key, &msg, &tag).ok()?;
        let (expires, id) = payload.split_once('.')?;
        let expires: i64 = expires.parse().ok()?;
        let now_secs = now.as_unix_millis().div_euclid(1000);
        (now_secs < expires && self.list.is_live(id, now_secs))
            .then(|| Session { id: id.to_owned() })
    }

    /// The CSRF token of `session`, for the forms' hidden field.
    pub fn csrf(&self, session: &Session) -> String {
        URL_SAFE_NO_PAD.encode(self.tag(CSRF_CONTEXT, &session.id).as_ref())
    }

    /// Whether `presented` is `session`'s CSRF token.
    pub fn check_csrf(&self, session: &Session, presented: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(presented.trim()) else {
            return false;
        };
        let mut msg = CSRF_CONTEXT.to_vec();
        msg.extend_from_slice(session.id.as_bytes());
        hmac::verify(&self.key, &msg, &tag).is_ok()
    }
}

/// The value of the cookie `name` among the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const NOW: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);

    fn sessions(token: &str) -> Sessions {
        let list = Arc::new(SessionList::in_memory());
        Sessions::new(b"link key", Some(&Secret::new(token)), false, list).expect("sessions")
    }

    fn request_with(cookie_header: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(cookie_header).expect("header"),
        );
        h
    }

    /// The `name=value` part of a `Set-Cookie` value.
    fn pair(set_cookie: &str) -> &str {
        set_cookie.split(';').next().expect("pair")
    }

    #[test]
    fn a_session_verifies_until_it_expires_and_its_csrf_token_is_its_own() {
        let s = sessions("token-1");
        let (session, set_cookie) = s.issue(NOW).expect("issued");
        assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
        assert!(!set_cookie.contains("Secure"));
        assert!(
            !set_cookie.contains("token-1"),
            "the token never goes in the cookie"
        );
        let h = request_with(&format!("theme=dark; {}", pair(&set_cookie)));
        assert_eq!(s.verify(&h, NOW), Some(session.clone()));
        assert_eq!(s.verify(&h, NOW + SESSION_TTL), None, "expired");

        let csrf = s.csrf(&session);
        assert!(s.check_csrf(&session, &csrf));
        assert!(!s.check_csrf(&session, ""));
        assert!(!s.check_csrf(&session, "not-base64!"));
        let (other, _) = s.issue(NOW).expect("issued");
        assert!(!s.check_csrf(&other, &csrf), "another session's token");
    }

    #[test]
    fn forged_altered_and_foreign_cookies_are_refused() {
        let s = sessions("token-1");
        let (_, set_cookie) = s.issue(NOW).expect("issued");
        let value = pair(&set_cookie).trim_start_matches("hw_session=");
        let (payload, tag) = value.rsplit_once('.').expect("tag");
        let (expires, id) = payload.split_once('.').expect("id");
        let later = format!(
            "hw_session={}.{id}.{tag}",
            expires.parse::<i64>().expect("n") + 1
        );
        assert_eq!(s.verify(&request_with(&later), NOW), None, "altered expiry");
        assert_eq!(
            s.verify(&request_with("hw_session=garbage"), NOW),
            None,
            "malformed"
        );
        // Another token (rotated, or another watchdog) signs other sessions.
        let rotated = sessions("token-2");
        assert_eq!(rotated.verify(&request_with(pair(&set_cookie)), NOW), None);
        let list = Arc::new(SessionList::in_memory());
        assert!(Sessions::new(b"link key", None, false, Arc::clone(&list)).is_none());
        let secure = Sessions::new(b"k", Some(&Secret::new("t")), true, list).expect("s");
        assert!(secure.issue(NOW).expect("issued").1.ends_with("; Secure"));
    }

    #[test]
    fn a_signed_out_cookie_replayed_is_refused_and_other_sessions_live_on() {
        let s = sessions("token-1");
        let (a, cookie_a) = s.issue(NOW).expect("issued");
        let (b, cookie_b) = s.issue(NOW).expect("issued");
        let (ha, hb) = (request_with(pair(&cookie_a)), request_with(pair(&cookie_b)));
        assert_eq!(s.verify(&ha, NOW), Some(a.clone()));
        s.revoke(&a).expect("revoked");
        assert_eq!(s.verify(&ha, NOW), None, "the same cookie after sign-out");
        assert_eq!(s.verify(&hb, NOW), Some(b));
        // A cookie signed with the key but never issued (or issued before the list existed).
        let unlisted = sessions("token-1");
        assert_eq!(unlisted.verify(&hb, NOW), None);
    }

    #[test]
    fn the_list_is_kept_in_the_store_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path().join("w.db")).expect("store"));
        let list = Arc::new(SessionList::load(Arc::clone(&store)));
        let s = Sessions::new(b"k", Some(&Secret::new("t")), false, list).expect("s");
        let (kept, cookie) = s.issue(NOW).expect("issued");
        let (gone, gone_cookie) = s.issue(NOW).expect("issued");
        s.revoke(&gone).expect("revoked");
        // After a restart: the same store, a new list.
        let reloaded = Arc::new(SessionList::load(Arc::clone(&store)));
        let s =
            Sessions::new(b"k", Some(&Secret::new("t")), false, Arc::clone(&reloaded)).expect("s");
        assert_eq!(s.verify(&request_with(pair(&cookie)), NOW), Some(kept));
        assert_eq!(s.verify(&request_with(pair(&gone_cookie)), NOW), None);
        // Expired sessions go at the next sign-in; past the cap, the one closest to expiring.
        let later = NOW + SESSION_TTL;
        let (first, first_cookie) = s.issue(later).expect("issued");
        assert_eq!(reloaded.len(), 1, "the expired one was dropped");
        for i in 1..MAX_SESSIONS {
            s.issue(later + Duration::from_secs(i as u64))
                .expect("issued");
        }
        assert_eq!(reloaded.len(), MAX_SESSIONS);
        s.issue(later + Duration::from_secs(3600)).expect("issued");
        assert_eq!(reloaded.len(), MAX_SESSIONS);
        assert_eq!(
            s.verify(&request_with(pair(&first_cookie)), later),
            None,
            "{first:?}"
        );
    }
}
