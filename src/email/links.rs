//! The signed ack/resolve links an email carries: their URLs, `{public_url}/act/{token}`. The routes
//! behind them (`GET/POST /act/{token}`) are `crate::http::act`'s; the tokens are [`super::token`]'s.

use std::time::Duration;

use url::Url;

use super::token::{Action, Claims, LinkKeys};
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
    /// Signs the ack and resolve links of `incident` in its episode `episode` (its reopen count now)
    /// for `level`, valid for `ttl` from `now`.
    pub fn sign(
        keys: &LinkKeys,
        public_url: &Url,
        incident: &str,
        episode: u32,
        level: Level,
        now: Timestamp,
        ttl: Duration,
    ) -> Self {
        let ack = Claims::new(incident, Action::Ack, level, now, ttl).in_episode(episode);
        let resolve = Claims::new(incident, Action::Resolve, level, now, ttl).in_episode(episode);
        Self {
            ack_url: act_url(public_url, &keys.sign(&ack)),
            resolve_url: act_url(public_url, &keys.sign(&resolve)),
            expires_at: ack.expires_at(),
        }
    }
}

/// `{public_url}/act/{token}`.
pub fn act_url(public_url: &Url, token: &str) -> String {
    super::public_link(public_url, &format!("act/{token}"))
}
