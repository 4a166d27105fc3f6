//! [`Remote`]: the alerts a *running* watchdog holds, read from its `GET /api/alerts`, for
//! `diagnose` (a one-off process receives no webhook). It reports the same observations as the
//! daemon's own feed, from the listing, and keeps the listing for the report.
//!
//! The daemon is reached at the configured `server.listen` address (its unspecified IP as
//! loopback: `diagnose` runs beside it, `docker exec`), with the API token when one is configured
//! (needed when `server.public_reads` is false). A daemon that does not answer is a failing source,
//! as any peer is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use super::{AlertState, Listed, observe};
use crate::clock::Timestamp;
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, FailureKind, Observation};
use crate::probe::Probe;
use crate::runbook::alerts::{Routed, Unmatched};
use crate::secret::Secret;

/// Most bytes read of the listing (the inbox holds at most [`super::MAX_ALERTS`]).
const MAX_LISTING: usize = 8 * 1024 * 1024;

/// The running daemon's alerts, as a source.
#[derive(Debug)]
pub struct Remote {
    url: String,
    token: Option<Secret>,
    sections: Vec<String>,
    resend_within: Duration,
    client: reqwest::Client,
    /// The latest listing read (empty until a poll succeeds).
    last: Vec<Listed>,
}

/// One alert of the listing, as `GET /api/alerts` writes it.
#[derive(Debug, Deserialize)]
struct Item {
    id: String,
    alertname: String,
    state: String,
    section: String,
    #[serde(default)]
    unmatched_reason: Option<String>,
    /// Graded critical by its sender (a daemon older than the field: not).
    #[serde(default)]
    critical: bool,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    ends_at: String,
    #[serde(default)]
    generator_url: String,
    #[serde(default)]
    heard_at: String,
    #[serde(default)]
    believed_until: String,
}

#[derive(Debug, Deserialize)]
struct Listing {
    alerts: Vec<Item>,
}

impl Remote {
    /// Reads the daemon listening on `listen`, with `token`, for a runbook with `sections` and
    /// `resend_within`.
    pub fn new(
        listen: SocketAddr,
        token: Option<Secret>,
        sections: Vec<String>,
        resend_within: Duration,
    ) -> Result<Self, crate::probe::BuildError> {
        let ip = match listen.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| crate::probe::BuildError(crate::probe::http::error_chain(&e)))?;
        Ok(Self {
            url: format!("http://{}/api/alerts", SocketAddr::new(ip, listen.port())),
            token,
            sections,
            resend_within,
            client,
            last: Vec::new(),
        })
    }

    /// The latest listing read.
    pub fn listing(&self) -> &[Listed] {
        &self.last
    }

    /// The running watchdog's role, as its `/readyz` says it (`solo`, `leader`, `standby (leader:
    /// node-a)`; issue 17); `None` when it does not answer, or says no role. Bounded like the
    /// listing.
    pub async fn role(&self) -> Option<String> {
        let url = self.url.strip_suffix("/api/alerts")?.to_owned() + "/readyz";
        let answer = self
            .client
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let body = crate::probe::http::read_capped(answer, 4096).await.ok()?;
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix("role: "))
            .map(str::to_owned)
    }

    async fn read(&self) -> Result<Vec<Listed>, Failure> {
        let mut request = self.client.get(&self.url);
        if let Some(t) = &self.token {
            request = request.bearer_auth(t.expose());
        }
        let answer = request
            .send()
            .await
            .map_err(|e| crate::probe::http::reqwest_failure(&e))?;
        if !answer.status().is_success() {
            return Err(Failure::said(
                FailureKind::Status,
                Msg::new(MsgId::RemoteAnswered).arg("status", answer.status().as_u16()),
            ));
        }
        let body = crate::probe::http::read_capped(answer, MAX_LISTING).await?;
        let listing: Listing = serde_json::from_slice(&body).map_err(|e| {
            Failure::said(
                FailureKind::Malformed,
                Msg::new(MsgId::RemoteNotListing).peer("error", e),
            )
        })?;
        Ok(listing.alerts.into_iter().map(listed).collect())
    }
}

/// An item back into the inbox's terms (an unreadable time is the epoch: shown, never compared).
fn listed(i: Item) -> Listed {
    let state = match i.state.as_str() {
        "firing" => AlertState::Firing,
        "stale" => AlertState::Stale,
        _ => AlertState::Resolved,
    };
    let routed = match i.unmatched_reason.as_deref() {
        Some("unknown_section") => Routed::Unmatched(Unmatched::UnknownSection),
        Some(_) => Routed::Unmatched(Unmatched::NoRoute),
        None => Routed::Section(i.section),
    };
    let time = |t: &str| super::payload::parse_time(t).unwrap_or(Timestamp::from_unix_millis(0));
    Listed {
        id: i.id,
        alertname: i.alertname,
        state,
        routed,
        critical: i.critical,
        labels: i.labels,
        annotations: i.annotations,
        starts_at: i.starts_at,
        ends_at: i.ends_at,
        generator_url: i.generator_url,
        heard_at: time(&i.heard_at),
        believed_until: time(&i.believed_until),
    }
}

impl Probe for Remote {
    fn source(&self) -> &str {
        super::SOURCE
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    async fn poll(&mut self, now: Timestamp) -> Result<Vec<Observation>, Failure> {
        let listed = self.read().await?;
        let obs = observe(&listed, &self.sections, now, None, self.resend_within);
        self.last = listed;
        Ok(obs)
    }
}
