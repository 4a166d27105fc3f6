//! Who may read and who may act: the API token, the pages' sessions, the failure budgets that bound
//! token guessing, and whether reads need any of them.
//!
//! - [`ApiToken`]: the configured token, kept only as an HMAC tag; every check goes through
//!   [`Auth::check_token`], which consults the budgets first.
//! - [`limit`]: the per-client and global failure budgets (a credential from a client over budget is
//!   refused with 429 and `Retry-After` **without being checked**) and the log throttle.
//! - [`client`]: the client a request counts as (its peer, or `X-Forwarded-For` from a trusted proxy).
//! - [`session`]: the pages' signed session cookies, listed on the server so signing out ends them.
//!
//! [`AuthShared`] is the process's (the budgets, the session list, the refusal counter): a reload
//! forgives no guesser and signs nobody out. [`Auth`] is one configuration's: token, proxies,
//! `server.public_reads`.
//!
//! Email link tokens (`/act/{token}`, and the API's ack and resolve) are HMAC-signed claims checked
//! in [`crate::email::token`]; they cannot be guessed, so their refusals do not spend a budget, and
//! only the client's own budget holds them back (refused unchecked while it is spent): a flood from
//! many addresses that spends the global budget locks out API tokens and sign-in, never the links
//! in the on-call person's email nor sessions already signed in.

pub mod client;
pub mod limit;
pub mod link;
pub mod session;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use ring::hmac;

use crate::clock::Clock;
use crate::config::IpNet;
use crate::config::ServerConfig;
use crate::secret::Secret;
use crate::store::Store;
pub use client::ClientKey;
use limit::{Limiter, Log};
use session::{Session, SessionList, Sessions};

/// The configured API token, kept only as an HMAC tag under a per-process random key: checking a
/// presented value compares tags ([`ring::hmac::verify`]), which takes the same time whatever the
/// value and its length.
pub(crate) struct ApiToken {
    /// `None`: no token configured, the mutating routes are closed.
    tag: Option<hmac::Tag>,
    key: hmac::Key,
}

/// Why a presented token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// The client (or every client together) failed too often: refused unchecked; retry after this.
    RateLimited(Duration),
    /// No token is configured: nothing can be authorised.
    NotConfigured,
    /// Not the configured token.
    Wrong,
}

impl Denied {
    /// The `reason` label of `harven_watchdog_auth_refusals_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::RateLimited(_) => "rate_limited",
            Self::NotConfigured => "not_configured",
            Self::Wrong => "bad_token",
        }
    }
}

impl ApiToken {
    fn new(token: Option<&Secret>) -> Self {
        let rng = ring::rand::SystemRandom::new();
        // The key only makes the comparison length-independent; a fixed one would do as well.
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, b"harven-watchdog api token"));
        let tag = token.map(|t| hmac::sign(&key, t.expose().as_bytes()));
        Self { tag, key }
    }

    fn matches(&self, presented: &str) -> Result<(), Denied> {
        let expected = self.tag.as_ref().ok_or(Denied::NotConfigured)?;
        hmac::verify(&self.key, presented.as_bytes(), expected.as_ref()).map_err(|_| Denied::Wrong)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// `harven_watchdog_auth_refusals_total{reason}`: credentials refused, and requests that needed one
/// and had none. `reason`: `rate_limited` (over budget, not checked), `bad_token` (not the API token),
/// `bad_link_token` (an email link token expired, altered, or for another incident or action),
/// `no_credentials` (none given where one is needed), `not_configured` (no API token configured).
/// Every `reason` of [`AuthMetrics`].
const REASONS: [&str; 5] = [
    "rate_limited",
    "bad_token",
    "bad_link_token",
    "no_credentials",
    "not_configured",
];

#[derive(Debug, Clone, Default)]
pub struct AuthMetrics {
    refusals: Family<ReasonLabel, Counter>,
}

impl AuthMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "auth_refusals",
            "Credentials refused (or missing where needed), by reason; rate_limited ones were not checked",
            m.refusals.clone(),
        );
        // Every reason from 0, so an increase() alert sees the first refusal.
        for reason in REASONS {
            let _ = m.refusals.get_or_create(&ReasonLabel { reason });
        }
        m
    }

    fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&ReasonLabel { reason }).inc();
    }
}

/// What outlives a reload: the failure budgets (a reload forgives no guesser), the list of
/// signed-in sessions (a reload signs nobody out) and the refusal counter.
pub struct AuthShared {
    limiter: Mutex<Limiter>,
    sessions: Arc<SessionList>,
    metrics: AuthMetrics,
    clock: Clock,
}

impl AuthShared {
    /// Reads the session list kept in `store` (blocking, once at start-up).
    pub fn new(store: Arc<Store>, clock: Clock, metrics: AuthMetrics) -> Self {
        Self::with(Arc::new(SessionList::load(store)), clock, metrics)
    }

    /// With the sessions in `list` (tests: [`SessionList::in_memory`]).
    pub fn with(list: Arc<SessionList>, clock: Clock, metrics: AuthMetrics) -> Self {
        Self {
            limiter: Mutex::new(Limiter::default()),
            sessions: list,
            metrics,
            clock,
        }
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What [`Auth`] takes of the configuration (`[server]`).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// `server.api_token`; `None`: nothing can be authorised, nobody signs in.
    pub api_token: Option<Secret>,
    /// `Secure` session cookies: `server.public_url` is `https`.
    pub secure_cookies: bool,
    /// `server.public_reads`.
    pub public_reads: bool,
    /// `server.trusted_proxies`.
    pub trusted_proxies: Vec<IpNet>,
}

impl AuthConfig {
    pub fn of(server: &ServerConfig) -> Self {
        Self {
            api_token: server.api_token.clone(),
            secure_cookies: server.public_url.scheme() == "https",
            public_reads: server.public_reads,
            trusted_proxies: server.trusted_proxies.clone(),
        }
    }
}

/// One configuration's authentication, shared by the API, the pages and the email links.
pub struct Auth {
    token: ApiToken,
    /// `None` when no API token is configured: nobody can sign in.
    sessions: Option<Sessions>,
    shared: Arc<AuthShared>,
    /// `server.trusted_proxies`: the peers whose `X-Forwarded-For` is believed.
    trusted_proxies: Vec<IpNet>,
    /// `server.public_reads`: whether the pages and `GET /api/...` need no sign-in.
    public_reads: bool,
}

impl Auth {
    /// `config`'s token, proxies and read policy, sessions signed with a key derived from
    /// `link_key` and the token, over `shared`.
    pub fn new(config: AuthConfig, link_key: &[u8], shared: Arc<AuthShared>) -> Self {
        Self {
            token: ApiToken::new(config.api_token.as_ref()),
            sessions: Sessions::new(
                link_key,
                config.api_token.as_ref(),
                config.secure_cookies,
                Arc::clone(&shared.sessions),
            ),
            shared,
            trusted_proxies: config.trusted_proxies,
            public_reads: config.public_reads,
        }
    }

    /// Whether a token is configured (the mutating API and sign-in are open).
    pub(crate) fn configured(&self) -> bool {
        self.token.tag.is_some()
    }

    /// Whether reads need no sign-in (`server.public_reads`).
    pub(crate) fn public_reads(&self) -> bool {
        self.public_reads
    }

    /// The sessions, when a token is configured.
    pub(crate) fn sessions(&self) -> Option<&Sessions> {
        self.sessions.as_ref()
    }

    /// The request's session, if signed in and not signed out.
    pub(crate) fn session(&self, headers: &HeaderMap) -> Option<(&Sessions, Session)> {
        let sessions = self.sessions.as_ref()?;
        sessions
            .verify(headers, self.shared.clock.now())
            .map(|s| (sessions, s))
    }

    /// The client a request counts as: its peer (from axum's `ConnectInfo`), or what a trusted
    /// proxy forwarded for.
    pub(crate) fn client(&self, extensions: &Extensions, headers: &HeaderMap) -> ClientKey {
        self.client_at(Peer::of(extensions), headers)
    }

    /// [`Auth::client`] of a request from `peer` with `headers`.
    pub(crate) fn client_at(&self, peer: Peer, headers: &HeaderMap) -> ClientKey {
        client::client_of(peer.0, headers, &self.trusted_proxies)
    }

    /// `Err(wait)` when `client` is over budget: refuse its credential unchecked (counted).
    pub(crate) fn admit(&self, client: ClientKey) -> Result<(), Duration> {
        let now = self.shared.clock.now();
        self.shared.limiter().check(client, now).inspect_err(|_| {
            self.shared.metrics.refused("rate_limited");
        })
    }

    /// `Err(wait)` when `client` itself is over budget, for an email link token (unguessable, so
    /// the global budget, which many addresses can spend together, does not hold it back).
    pub(crate) fn admit_link(&self, client: ClientKey) -> Result<(), Duration> {
        let now = self.shared.clock.now();
        self.shared
            .limiter()
            .check_own(client, now)
            .inspect_err(|_| {
                self.shared.metrics.refused("rate_limited");
            })
    }

    /// Whether `client` may have its API token compared now (neither budget spent); not counted.
    pub(crate) fn within_budget(&self, client: ClientKey) -> bool {
        let now = self.shared.clock.now();
        self.shared.limiter().check(client, now).is_ok()
    }

    /// Checks `presented` against the API token for `client`: refused unchecked when `client` is
    /// over budget; a wrong token spends its budget; the right one refills it. Counted either way.
    pub(crate) fn check_token(&self, client: ClientKey, presented: &str) -> Result<(), Denied> {
        self.admit(client).map_err(Denied::RateLimited)?;
        let now = self.shared.clock.now();
        match self.token.matches(presented) {
            Ok(()) => {
                self.shared.limiter().succeeded(client, now);
                Ok(())
            }
            Err(denied) => {
                if denied == Denied::Wrong {
                    self.shared.limiter().failed(client, now);
                }
                self.shared.metrics.refused(denied.label());
                Err(denied)
            }
        }
    }

    /// Whether `presented` is the API token, for `client`, when the same header may also hold an
    /// email link token: the right token refills the budget; anything else is left to the caller.
    /// Call it only [`Auth::within_budget`].
    pub(crate) fn is_token(&self, client: ClientKey, presented: &str) -> bool {
        let ok = self.token.matches(presented).is_ok();
        if ok {
            self.shared
                .limiter()
                .succeeded(client, self.shared.clock.now());
        }
        ok
    }

    /// Records that `client` presented something that is not the API token (nor another valid
    /// credential): spends its budget, counted as `bad_token`.
    pub(crate) fn wrong_token(&self, client: ClientKey) {
        self.shared
            .limiter()
            .failed(client, self.shared.clock.now());
        self.shared.metrics.refused(Denied::Wrong.label());
    }

    /// Counts a refusal that spends no budget (`no_credentials`, `bad_link_token`, …).
    pub(crate) fn refused(&self, reason: &'static str) {
        self.shared.metrics.refused(reason);
    }

    /// Whether to log a refusal of `client` now: `Some(held_back)` at most once a minute per client
    /// (and a few lines a minute in all), with how many were held back since.
    pub(crate) fn should_log(&self, client: ClientKey) -> Option<u64> {
        match self.shared.limiter().log(client, self.shared.clock.now()) {
            Log::Write { held_back } => Some(held_back),
            Log::Quiet => None,
        }
    }
}

/// The TCP peer of a request, from axum's `ConnectInfo` (`None` when the routes are called without a
/// socket, as unit tests do): for handlers that read the body whole.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<IpAddr>);

impl Peer {
    fn of(extensions: &Extensions) -> Self {
        Self(
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.extensions))
    }
}

/// `Retry-After`'s value: whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_millis()
        .div_ceil(1000)
        .clamp(1, u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;

    fn auth(token: Option<&str>) -> (Auth, crate::clock::ManualClock) {
        let (clock, hand) = Clock::manual(Timestamp::from_unix_millis(1_795_000_000_000));
        let shared = Arc::new(AuthShared::with(
            Arc::new(SessionList::in_memory()),
            clock,
            AuthMetrics::default(),
        ));
        let config = AuthConfig {
            api_token: token.map(Secret::new),
            secure_cookies: false,
            public_reads: true,
            trusted_proxies: Vec::new(),
        };
        (Auth::new(config, b"link key", shared), hand)
    }

    #[test]
    fn over_budget_even_the_right_token_is_refused_unchecked() {
        let token = "3f9c2a7e1b5d4c8a9e0f6b2d7a1c5e3f";
        let (auth, hand) = auth(Some(token));
        let client = ClientKey::of("192.0.2.1".parse().expect("ip"));
        assert_eq!(auth.check_token(client, token), Ok(()));
        for _ in 0..10 {
            assert_eq!(auth.check_token(client, "guess"), Err(Denied::Wrong));
        }
        assert_eq!(
            auth.check_token(client, token),
            Err(Denied::RateLimited(Duration::from_secs(6)))
        );
        hand.advance(Duration::from_secs(6));
        assert_eq!(
            auth.check_token(client, token),
            Ok(()),
            "refilled, then reset"
        );
        assert_eq!(auth.check_token(client, "guess"), Err(Denied::Wrong));
        let counted = |reason: &'static str| {
            auth.shared
                .metrics
                .refusals
                .get_or_create(&ReasonLabel { reason })
                .get()
        };
        assert_eq!(counted("bad_token"), 11);
        assert_eq!(counted("rate_limited"), 1);
    }

    #[test]
    fn without_a_token_nothing_is_authorised_and_nobody_signs_in() {
        let (auth, _) = auth(None);
        let client = ClientKey::of("192.0.2.1".parse().expect("ip"));
        assert_eq!(auth.check_token(client, ""), Err(Denied::NotConfigured));
        assert!(!auth.configured() && auth.sessions().is_none());
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(6000)), 6);
        assert_eq!(retry_after_secs(Duration::from_millis(6001)), 7);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
