//! Signed, expiring tokens for the ack/resolve links in emails.
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(key, context || payload))`, unpadded, so
//! it sits in a URL path as is. The payload binds the action (`ack` | `resolve`), the level the email
//! went to, the expiry (Unix seconds), the incident's *episode* and the incident ID; changing any
//! byte of it, or signing with another key, fails verification. ring compares tags in constant time.
//!
//! The episode is how many times the incident had reopened when the email was sent
//! ([`Incident::reopened`](crate::incident::Incident::reopened)). A link acts only while the incident
//! is still in that episode: once it is resolved, a resolve link has nothing left to do (the incident
//! is resolved), and once it reopens, every link of the emails before is void (the reopened email
//! carries new ones). So a resolve link works once, and an ack link never acknowledges an episode
//! its reader has not been told about. Tokens of the first format (`v1`, before episodes) read as
//! episode 0.
//!
//! A valid token proves only that this watchdog issued it for that incident and action and that it has
//! not expired. Whoever serves the link still checks that the incident it acts on is the token's
//! ([`Claims::authorize`]) and that the incident is still in the token's episode (the pager, which
//! owns the incidents), and the ack/resolve page acts only on POST (mail scanners fetch links).
//!
//! [`LinkKeys`] are the keys a watchdog signs and verifies with: the current one, and after a
//! rotation the previous one, still accepted until every link it signed has expired.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::incident::Level;

/// Prefixed to every signed payload: a tag made for another use of the same key never verifies here.
const CONTEXT: &[u8] = b"harven-watchdog/act/v1\n";

/// The payload's format version, its first field.
const VERSION: &str = "v2";

/// The first format: no episode field (read as episode 0).
const VERSION_1: &str = "v1";

/// Bytes in a key made by [`generate_key`]: the HMAC-SHA256 block-size recommendation is at least 32.
pub const KEY_LEN: usize = 32;

/// What a link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Ack,
    Resolve,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ack => "ack",
            Self::Resolve => "resolve",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ack" => Some(Self::Ack),
            "resolve" => Some(Self::Resolve),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a token says. Trust it only as returned by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub incident: String,
    pub action: Action,
    /// The level the email was addressed to: an ack acknowledges for this level.
    pub level: Level,
    /// Unix seconds after which the token is refused. Seconds, not milliseconds: it is all a link
    /// needs, and it keeps the URL short.
    pub expires: i64,
    /// The incident's reopen count when the link was issued: the link acts only while the incident
    /// is still in this episode (see the module doc).
    pub episode: u32,
}

impl Claims {
    /// Claims for a link issued at `now`, valid for `ttl` (the configured `link_ttl`).
    pub fn new(
        incident: impl Into<String>,
        action: Action,
        level: Level,
        now: Timestamp,
        ttl: std::time::Duration,
    ) -> Self {
        Self {
            incident: incident.into(),
            action,
            level,
            expires: (now + ttl).as_unix_millis().div_euclid(1000),
            episode: 0,
        }
    }

    /// These claims for episode `episode` of the incident (its reopen count when the email is sent).
    #[must_use]
    pub fn in_episode(mut self, episode: u32) -> Self {
        self.episode = episode;
        self
    }

    /// When the token stops being accepted.
    pub fn expires_at(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.expires.saturating_mul(1000))
    }

    /// Checks that these (verified) claims allow `action` on `incident`: a valid token for another
    /// incident or another action is refused, never silently applied to what the token names.
    pub fn authorize(&self, incident: &str, action: Action) -> Result<(), TokenError> {
        if self.incident != incident {
            return Err(TokenError::WrongIncident);
        }
        if self.action != action {
            return Err(TokenError::WrongAction);
        }
        Ok(())
    }

    fn payload(&self) -> String {
        // The incident goes last: it is the only free-form field, and `splitn` leaves it whole.
        format!(
            "{VERSION}\n{}\n{}\n{}\n{}\n{}",
            self.action, self.level, self.expires, self.episode, self.incident
        )
    }

    fn parse(payload: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?;
        let (version, rest) = text.split_once('\n')?;
        let with_episode = match version {
            VERSION => true,
            VERSION_1 => false,
            _ => return None,
        };
        let mut fields = rest.splitn(if with_episode { 5 } else { 4 }, '\n');
        let action = Action::parse(fields.next()?)?;
        let level = Level::parse(fields.next()?)?;
        let expires = fields.next()?.parse().ok()?;
        let episode = if with_episode {
            fields.next()?.parse().ok()?
        } else {
            0
        };
        let incident = fields.next()?;
        if incident.is_empty() {
            return None;
        }
        Some(Self {
            incident: incident.to_owned(),
            action,
            level,
            expires,
            episode,
        })
    }
}

/// Why a token was refused. Every variant means "nothing happens"; they differ only in what the page
/// tells the person who clicked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token at all: truncated by a mail client, wrong characters, unknown format.
    #[error("malformed token")]
    Malformed,
    /// Well formed, but not signed by this watchdog's key: forged, altered, or from another watchdog.
    #[error("bad token signature")]
    BadSignature,
    /// Authentic, but past its expiry.
    #[error("token expired at {expired_at}")]
    Expired { expired_at: Timestamp },
    /// Authentic and current, but for another incident than the one acted on.
    #[error("token is for another incident")]
    WrongIncident,
    /// Authentic and current, but for the other action.
    #[error("token is for another action")]
    WrongAction,
}

impl TokenError {
    /// A stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
            Self::Expired { .. } => "expired",
            Self::WrongIncident => "wrong_incident",
            Self::WrongAction => "wrong_action",
        }
    }
}

fn hmac_key(key: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, key)
}

fn signed_bytes(payload: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(CONTEXT.len() + payload.len());
    msg.extend_from_slice(CONTEXT);
    msg.extend_from_slice(payload);
    msg
}

/// The token for `claims`, signed with `key`.
pub fn sign(key: &[u8], claims: &Claims) -> String {
    let payload = claims.payload();
    let tag = hmac::sign(&hmac_key(key), &signed_bytes(payload.as_bytes()));
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

/// The claims of `token` if `key` signed it and it has not expired at `now`.
///
/// The signature is checked before the payload is read, so an expired or malformed-inside token is
/// reported as such only when it is authentic. The caller still checks the incident and action with
/// [`Claims::authorize`].
pub fn verify(key: &[u8], token: &str, now: Timestamp) -> Result<Claims, TokenError> {
    let (payload_b64, tag_b64) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| TokenError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag_b64)
        .map_err(|_| TokenError::Malformed)?;
    if payload.is_empty() || tag.len() != hmac::HMAC_SHA256.digest_algorithm().output_len() {
        return Err(TokenError::Malformed);
    }
    hmac::verify(&hmac_key(key), &signed_bytes(&payload), &tag)
        .map_err(|_| TokenError::BadSignature)?;
    let claims = Claims::parse(&payload).ok_or(TokenError::Malformed)?;
    if now.as_unix_millis().div_euclid(1000) >= claims.expires {
        return Err(TokenError::Expired {
            expired_at: claims.expires_at(),
        });
    }
    Ok(claims)
}

/// The keys links are signed and verified with: the current key signs; after a rotation, the previous
/// key still verifies until `previous_until` (when the last link it signed expires), so a rotation
/// does not break the links of emails already sent unless it is meant to.
#[derive(Clone)]
pub struct LinkKeys {
    current: Vec<u8>,
    previous: Option<(Vec<u8>, Timestamp)>,
}

impl fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkKeys")
            .field("previous_until", &self.previous.as_ref().map(|(_, t)| *t))
            .finish_non_exhaustive()
    }
}

impl LinkKeys {
    /// Only `current`: no rotation pending.
    pub fn new(current: impl Into<Vec<u8>>) -> Self {
        Self {
            current: current.into(),
            previous: None,
        }
    }

    /// Also accepts tokens signed with `previous` while `now` is before `until`.
    #[must_use]
    pub fn with_previous(mut self, previous: impl Into<Vec<u8>>, until: Timestamp) -> Self {
        self.previous = Some((previous.into(), until));
        self
    }

    /// The key that signs (and from which the pages' session key is derived).
    pub fn current(&self) -> &[u8] {
        &self.current
    }

    /// The token for `claims`, signed with the current key.
    pub fn sign(&self, claims: &Claims) -> String {
        sign(&self.current, claims)
    }

    /// [`verify`] with the current key, then, for a token it did not sign, with the previous key
    /// while it is still accepted at `now`.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Claims, TokenError> {
        match (verify(&self.current, token, now), &self.previous) {
            (Err(TokenError::BadSignature), Some((previous, until))) if now < *until => {
                verify(previous, token, now)
            }
            (result, _) => result,
        }
    }
}

/// A fresh random key of [`KEY_LEN`] bytes from the operating system. The daemon makes one on first
/// start and keeps it with its data, so links survive a restart; a new key invalidates every link
/// already sent (unless the old one is kept as [`LinkKeys`]' previous key).
pub fn generate_key() -> Result<[u8; KEY_LEN], ring::error::Unspecified> {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new().fill(&mut key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use std::time::Duration;

    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: Timestamp = Timestamp::from_unix_millis(1_795_000_000_500);

    fn claims() -> Claims {
        Claims::new(
            "errors-20261118T110640Z",
            Action::Ack,
            Level::L2,
            NOW,
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn round_trip_and_url_safety() {
        let token = sign(KEY, &claims());
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{token}"
        );
        assert_eq!(verify(KEY, &token, NOW), Ok(claims()));
        assert_eq!(claims().expires, 1_795_003_600);
    }

    #[test]
    fn expiry_is_exclusive_at_the_second() {
        let token = sign(KEY, &claims());
        let last_ok = Timestamp::from_unix_millis(1_795_003_599_999);
        assert!(verify(KEY, &token, last_ok).is_ok());
        let at = Timestamp::from_unix_millis(1_795_003_600_000);
        assert_eq!(
            verify(KEY, &token, at),
            Err(TokenError::Expired { expired_at: at })
        );
    }

    #[test]
    fn a_payload_signed_without_the_context_does_not_verify() {
        // Someone holding a tag over the bare payload (another use of the key) cannot make a token.
        let c = claims();
        let payload = c.payload();
        let tag = hmac::sign(&hmac_key(KEY), payload.as_bytes());
        let token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        );
        assert_eq!(verify(KEY, &token, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn authorize_checks_incident_then_action() {
        let c = claims();
        assert_eq!(c.authorize("errors-20261118T110640Z", Action::Ack), Ok(()));
        assert_eq!(
            c.authorize("latency-20261118T110640Z", Action::Ack),
            Err(TokenError::WrongIncident)
        );
        assert_eq!(
            c.authorize("errors-20261118T110640Z", Action::Resolve),
            Err(TokenError::WrongAction)
        );
    }

    #[test]
    fn a_first_format_token_reads_as_episode_zero() {
        let c = claims();
        let payload = format!(
            "v1\n{}\n{}\n{}\n{}",
            c.action, c.level, c.expires, c.incident
        );
        let tag = hmac::sign(&hmac_key(KEY), &signed_bytes(payload.as_bytes()));
        let token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        );
        assert_eq!(verify(KEY, &token, NOW), Ok(c.clone()));
        let later = c.in_episode(3);
        assert_eq!(
            verify(KEY, &sign(KEY, &later), NOW).map(|c| c.episode),
            Ok(3)
        );
    }

    /// After a rotation the new key signs; a link signed with the previous key verifies until the
    /// rotation's `until` and not after, and a key that was never ours never does.
    #[test]
    fn rotated_keys_accept_the_previous_key_until_its_links_expire() {
        const NEW: &[u8] = b"the new key, also 32 bytes long!";
        let until = NOW + Duration::from_secs(600);
        let keys = LinkKeys::new(NEW).with_previous(KEY, until);
        let old_link = sign(KEY, &claims());
        assert_eq!(keys.verify(&old_link, NOW), Ok(claims()));
        let at_until = Timestamp::from_unix_millis(until.as_unix_millis());
        assert_eq!(
            keys.verify(&old_link, at_until),
            Err(TokenError::BadSignature),
            "the previous key is refused from `until` on"
        );
        let new_link = keys.sign(&claims());
        assert_eq!(verify(NEW, &new_link, NOW), Ok(claims()));
        assert_eq!(keys.verify(&new_link, at_until), Ok(claims()));
        let forged = sign(b"never ours, never accepted here!", &claims());
        assert_eq!(keys.verify(&forged, NOW), Err(TokenError::BadSignature));
        // An expired link signed with the previous key says so (it is authentic).
        let short = Claims::new("x", Action::Ack, Level::L1, NOW, Duration::from_secs(60));
        let expired = sign(KEY, &short);
        assert!(matches!(
            keys.verify(&expired, NOW + Duration::from_secs(61)),
            Err(TokenError::Expired { .. })
        ));
        let debug = format!("{keys:?}");
        assert!(!debug.contains(&format!("{:?}", &NEW[..4])), "{debug}");
        assert!(!debug.contains(&format!("{:?}", &KEY[..4])), "{debug}");
    }

    #[test]
    fn generated_keys_differ() {
        let a = generate_key().expect("random");
        let b = generate_key().expect("random");
        assert_ne!(a, b);
    }

    fn action() -> impl Strategy<Value = Action> {
        prop::sample::select(vec![Action::Ack, Action::Resolve])
    }

    fn level() -> impl Strategy<Value = Level> {
        prop::sample::select(vec![Level::L1, Level::L2, Level::L3])
    }

    proptest! {
        #![proptest_config(crate::mutate::cases(256))]

        #[test]
        fn prop_no_text_but_a_signed_token_verifies(token in crate::mutate::garbage()) {
            let e = verify(KEY, &token, NOW).expect_err("unsigned");
            prop_assert!(matches!(e, TokenError::Malformed | TokenError::BadSignature), "{e:?}");
        }

        #[test]
        fn prop_an_edited_token_never_verifies(edited in crate::mutate::near_text(&sign(KEY, &claims()))) {
            if edited != sign(KEY, &claims()) {
                let e = verify(KEY, &edited, NOW).expect_err("edited");
                prop_assert!(matches!(e, TokenError::Malformed | TokenError::BadSignature), "{e:?}");
            }
        }

        #[test]
        fn prop_claims_round_trip(
            incident in ".{1,80}",
            action in action(),
            level in level(),
            expires in (NOW.as_unix_millis() / 1000 + 1)..i64::MAX,
            episode in any::<u32>(),
        ) {
            let claims = Claims { incident, action, level, expires, episode };
            prop_assert_eq!(verify(KEY, &sign(KEY, &claims), NOW), Ok(claims));
        }

        #[test]
        fn prop_action_words_are_parsed_or_none(word in crate::mutate::garbage()) {
            if let Some(a) = Action::parse(&word) {
                prop_assert_eq!(a.as_str(), word);
            }
        }
    }
}
