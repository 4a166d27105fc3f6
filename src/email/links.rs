//! The ack/resolve links of the emails: signed `{public_url}/act/{token}` URLs.

use std::time::Duration;

use url::Url;

use super::token::{self, Action, Claims};
use crate::clock::Timestamp;
use crate::incident::Level;

/// The signed links of one email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionLinks {
    pub ack_url: String,
    pub resolve_url: String,
    /// When both stop working (the configured `link_ttl` after the email).
    pub expires_at: Timestamp,
}

impl ActionLinks {
    /// Signs the ack and resolve links of `incident` for `level`, valid for `ttl` from `now`.
    pub fn sign(
        key: &[u8],
        public_url: &Url,
        incident: &str,
        level: Level,
        now: Timestamp,
        ttl: Duration,
    ) -> Self {
        let ack = Claims::new(incident, Action::Ack, level, now, ttl);
        let resolve = Claims::new(incident, Action::Resolve, level, now, ttl);
        Self {
            ack_url: act_url(public_url, &token::sign(key, &ack)),
            resolve_url: act_url(public_url, &token::sign(key, &resolve)),
            expires_at: ack.expires_at(),
        }
    }
}

/// `{public_url}/act/{token}`.
pub fn act_url(public_url: &Url, token: &str) -> String {
    super::public_link(public_url, &format!("act/{token}"))
}
