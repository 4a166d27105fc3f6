//! The webhook's body: Alertmanager's webhook payload, version 4, as its documentation gives it
//! (<https://prometheus.io/docs/alerting/latest/configuration/#webhook_config>), which Grafana's
//! webhook contact point also sends with extra fields (`orgId`, `state`, `title`, `message`, and per
//! alert `silenceURL`, `values`…; its `version` is `"1"`:
//! <https://grafana.com/docs/grafana/latest/alerting/configure-notifications/manage-contact-points/integrations/webhook-notifier/>).
//!
//! Unknown fields are ignored (both senders add fields over time); a missing optional field is
//! empty. Every text is the sender's: it is cut to a bound here before anything keeps it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::clock::Timestamp;

/// Most labels (and, separately, annotations) kept of one alert; the rest are dropped.
pub const MAX_LABELS: usize = 64;
/// Most characters kept of a label or annotation name or value, a URL or a fingerprint.
pub const MAX_TEXT: usize = 1024;

/// One webhook notification: a group of alerts sharing its `groupLabels`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// `"4"` from Alertmanager, `"1"` from Grafana: the shape is the same.
    #[serde(default)]
    pub version: String,
    /// The group's key in the sender (`{}:{alertname="HighLatencyP95"}`).
    #[serde(default)]
    pub group_key: String,
    /// `firing` while any alert of the group fires, else `resolved`.
    #[serde(default)]
    pub status: String,
    /// The sender's receiver name.
    #[serde(default)]
    pub receiver: String,
    /// The labels the group is grouped by.
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert of the group carries.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations every alert of the group carries.
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    /// The sender's own address (`http://alertmanager:9093`).
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    /// Alerts left out by the sender's `max_alerts` (they reach no section: counted).
    #[serde(default)]
    pub truncated_alerts: u64,
    /// The group's alerts, firing and resolved.
    pub alerts: Vec<WebhookAlert>,
}

/// One alert of a notification.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    /// `firing` or `resolved`.
    pub status: AlertStatus,
    /// Its identity: `alertname` and the rule's and series' labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `summary`, `description`, `runbook_url`…
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339, with any offset.
    #[serde(default)]
    pub starts_at: String,
    /// RFC 3339; `0001-01-01T00:00:00Z` for a firing alert from Alertmanager (it hides an end not
    /// reached yet) and Grafana, the time it ended for a resolved one.
    #[serde(default)]
    pub ends_at: String,
    /// The rule's page in Prometheus or Grafana.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// The sender's hash of the labels: the alert's identity across notifications. Absent (an
    /// older or another sender): the labels themselves are its identity.
    #[serde(default)]
    pub fingerprint: String,
}

/// An alert's status in a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Firing when the sender sent it.
    Firing,
    /// Over, by the sender's word.
    Resolved,
}

impl WebhookAlert {
    /// The alert's identity: the fingerprint, or its labels written out when it has none.
    pub fn identity(&self) -> String {
        let fp = cut(self.fingerprint.trim());
        if !fp.is_empty() {
            return fp;
        }
        let mut id = String::from("labels:");
        for (k, v) in &self.labels {
            id.push_str(&format!("{k}={v:?},"));
        }
        cut(&id)
    }
}

/// At most [`MAX_LABELS`] pairs, each name and value cut to [`MAX_TEXT`] characters.
pub fn bounded(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.iter()
        .take(MAX_LABELS)
        .map(|(k, v)| (cut(k), cut(v)))
        .collect()
}

/// The first [`MAX_TEXT`] characters (never a split UTF-8 sequence).
pub fn cut(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

/// An RFC 3339 time as the senders write it (`2026-12-07T00:20:45.123456789Z`,
/// `2021-10-12T09:51:03.157076+02:00`); `None` for Alertmanager's zero time (`0001-01-01…`), an
/// empty or unreadable one.
pub fn parse_time(text: &str) -> Option<Timestamp> {
    let t = text.trim();
    if t.len() < 20 || t.starts_with("0001-") {
        return None;
    }
    if let Some(base) = t.strip_suffix('Z').or_else(|| t.strip_suffix('z')) {
        return humantime::parse_rfc3339_weak(base)
            .ok()
            .map(Timestamp::from_system_time);
    }
    // `±hh:mm` at the end: parse the local time as UTC, then move it by the offset.
    let at = t.len() - 6;
    if !t.is_char_boundary(at) {
        return None;
    }
    let (base, offset) = t.split_at(at);
    let sign = match offset.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return None,
    };
    let (h, m) = offset[1..].split_once(':')?;
    let minutes = h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?;
    let local = humantime::parse_rfc3339_weak(base).ok()?;
    let utc_ms = Timestamp::from_system_time(local).as_unix_millis() - sign * minutes * 60_000;
    Some(Timestamp::from_unix_millis(utc_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_offsets_and_the_zero_time() {
        let z = parse_time("2021-10-12T07:51:03.157076Z").expect("UTC");
        assert_eq!(parse_time("2021-10-12T09:51:03.157076+02:00"), Some(z));
        assert_eq!(parse_time("2021-10-12T04:51:03.157076-03:00"), Some(z));
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_time(""), None);
        assert_eq!(parse_time("yesterday at noon, roughly"), None);
    }

    #[test]
    fn grafanas_extras_are_ignored_and_an_alert_without_fingerprint_is_its_labels() {
        let body = r#"{"receiver":"My Super Webhook","status":"firing","orgId":1,"version":"1",
            "state":"alerting","title":"[FIRING:1]","message":"…",
            "alerts":[{"status":"firing","labels":{"alertname":"High memory usage","team":"blue"},
              "annotations":{"summary":"zone us-1"},"startsAt":"2021-10-12T09:51:03.157076+02:00",
              "endsAt":"0001-01-01T00:00:00Z","generatorURL":"https://play.grafana.org/x",
              "fingerprint":"","silenceURL":"https://…","values":{"B":44.2,"C":1}}]}"#;
        let hook: Webhook = serde_json::from_str(body).expect("Grafana's shape");
        assert_eq!(hook.version, "1");
        let alert = &hook.alerts[0];
        assert_eq!(alert.status, AlertStatus::Firing);
        assert_eq!(
            alert.identity(),
            r#"labels:alertname="High memory usage",team="blue","#
        );
    }
}
