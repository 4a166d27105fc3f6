//! Signed-in sessions of the pages, and the CSRF token of each.
//!
//! Signing in with the API token sets a cookie holding `expires.id.tag`: an expiry (Unix seconds), a
//! random session ID and `HMAC-SHA256(session key, context || expires.id)`. The token itself never
//! goes into the cookie. The session key is derived from the link key kept in the store and the
//! configured API token, so sessions survive a restart and all end when the token changes.
//!
//! Each session's CSRF token is `HMAC-SHA256(session key, other context || id)`: a hidden field of
//! every form, which a cross-site page cannot read, checked on every POST (with `ring`'s constant-time
//! comparison). The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no cross-site request
//! carries it) and `Secure` when the public URL is `https`.

use std::time::Duration;

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::clock::Timestamp;
use crate::secret::Secret;

/// The session cookie's name.
pub const COOKIE: &str = "hw_session";
/// How long a sign-in lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

const KEY_CONTEXT: &[u8] = b"harven-watchdog/web-session-key/v1\n";
const SESSION_CONTEXT: &[u8] = b"harven-watchdog/web-session/v1\n";
const CSRF_CONTEXT: &[u8] = b"harven-watchdog/web-csrf/v1\n";

/// Issues and checks sessions. Exists only when an API token is configured (there is nothing to
/// sign in with otherwise).
pub struct Sessions {
    key: hmac::Key,
    /// `Secure` cookies: the public URL is `https`.
    secure: bool,
}

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    id: String,
}

impl Sessions {
    /// Sessions signed with a key derived from `link_key` and `token`; `None` without a token.
    pub fn new(link_key: &[u8], token: Option<&Secret>, secure: bool) -> Option<Self> {
        let token = token?;
        let mut msg = KEY_CONTEXT.to_vec();
        msg.extend_from_slice(token.expose().as_bytes());
        let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, link_key), &msg);
        Some(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            secure,
        })
    }

    fn tag(&self, context: &[u8], payload: &str) -> hmac::Tag {
        let mut msg = context.to_vec();
        msg.extend_from_slice(payload.as_bytes());
        hmac::sign(&self.key, &msg)
    }

    /// A new session from `now`, with its `Set-Cookie` value; `None` if the system random source
    /// failed.
    pub fn issue(&self, now: Timestamp) -> Option<(Session, String)> {
        let mut nonce = [0u8; 16];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let id = URL_SAFE_NO_PAD.encode(nonce);
        let expires = (now + SESSION_TTL).as_unix_millis().div_euclid(1000);
        let payload = format!("{expires}.{id}");
        let tag = URL_SAFE_NO_PAD.encode(self.tag(SESSION_CONTEXT, &payload).as_ref());
        let cookie = format!(
            "{COOKIE}={payload}.{tag}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
            SESSION_TTL.as_secs(),
            if self.secure { "; Secure" } else { "" }
        );
        Some((Session { id }, cookie))
    }

    /// The `Set-Cookie` value that ends the session in the browser.
    pub fn clear_cookie(&self) -> String {
        format!(
            "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// The request's session, if it carries one this watchdog signed and it has not expired at `now`.
    pub fn verify(&self, headers: &HeaderMap, now: Timestamp) -> Option<Session> {
        let value = cookie(headers, COOKIE)?;
        let (payload, tag) = value.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut msg = SESSION_CONTEXT.to_vec();
        msg.extend_from_slice(payload.as_bytes());
        hmac::verify(&self.key, &msg, &tag).ok()?;
        let (expires, id) = payload.split_once('.')?;
        let expires: i64 = expires.parse().ok()?;
        (now.as_unix_millis().div_euclid(1000) < expires).then(|| Session { id: id.to_owned() })
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
        Sessions::new(b"link key", Some(&Secret::new(token)), false).expect("sessions")
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
        assert!(Sessions::new(b"link key", None, false).is_none());
        let secure = Sessions::new(b"k", Some(&Secret::new("t")), true).expect("s");
        assert!(secure.issue(NOW).expect("issued").1.ends_with("; Secure"));
    }
}
