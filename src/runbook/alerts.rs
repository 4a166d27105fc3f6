//! The runbook's `[alerts]` table: which section an alert from Alertmanager or Grafana belongs to,
//! by label matchers, and how long an ingested alert is believed without word from its sender.
//!
//! Matchers are Alertmanager's own syntax (`route.matchers` in `alertmanager.yml`): `name op value`
//! with `op` one of `=`, `!=`, `=~`, `!~`, the value quoted (`"HighLatency.*"`, with `\"` and `\\`
//! escapes) or bare. Regular expressions are anchored at both ends, as Alertmanager anchors them
//! (`=~"HighLatency.*"` matches `HighLatencyP95`, not `SlowHighLatency`), and a label the alert does
//! not carry reads as the empty string (`severity=""` matches an alert without `severity`).
//!
//! Routing is, in order: the alert's `section_label` (`harven_section="errors"`) when it carries one,
//! naming a section of the runbook (another value is `unknown_section`, never a guess); then the
//! first route all of whose matchers match; else `no_route`. Nothing here keeps alerts: see
//! [`crate::alerts`].

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

/// `[alerts]`: the routes from alerts to sections, and the ingested alerts' time limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRouting {
    /// A label that names the section itself (`harven_section`): checked before the routes, so a
    /// team can send any alert to any section from its own rule. Unset: routes only.
    #[serde(default)]
    pub section_label: Option<String>,
    /// Matchers to sections, first match wins.
    #[serde(default)]
    pub routes: Vec<AlertRoute>,
    /// How long a firing alert is believed without the sender saying it again. Alertmanager repeats
    /// a firing group every `repeat_interval` (4h by default) checked at each `group_interval`
    /// (5m): this must be at least their sum. Past it the alert is *stale*: its section's reading
    /// is unknown (the symptom neither fires nor clears) and `watchdog.alerts_stale` pages; it is
    /// never taken as resolved. Also how long after a restart a section whose alert symptom was
    /// firing stays unknown without an alert (one still firing is re-sent within it).
    #[serde(default = "default_resend_within", with = "humantime_serde")]
    pub resend_within: Duration,
    /// How long after the sender's last word a stale alert is forgotten (its section then reads
    /// what the other alerts say, and its symptom can clear): a sender gone for this long is not
    /// coming back with that alert. Longer than `resend_within`.
    #[serde(default = "default_forget_after", with = "humantime_serde")]
    pub forget_after: Duration,
    /// The label that makes an alert critical (`severity`, the label Prometheus' and Grafana's
    /// rules conventionally carry): a firing alert whose `critical_label` is `critical_value`
    /// counts in `alerts.critical{section}`, whose rule makes the section's incident critical
    /// (so L3 is paged after `critical_for`).
    #[serde(default = "default_critical_label")]
    pub critical_label: String,
    /// The value of `critical_label` that makes an alert critical (`critical`).
    #[serde(default = "default_critical_value")]
    pub critical_value: String,
}

impl Default for AlertRouting {
    fn default() -> Self {
        Self {
            section_label: None,
            routes: Vec::new(),
            resend_within: default_resend_within(),
            forget_after: default_forget_after(),
            critical_label: default_critical_label(),
            critical_value: default_critical_value(),
        }
    }
}

/// `severity`: the label alerting rules conventionally grade alerts by.
fn default_critical_label() -> String {
    "severity".to_owned()
}

/// `critical`: the grade that means downtime (Prometheus' and Grafana's examples use it).
fn default_critical_value() -> String {
    "critical".to_owned()
}

/// Alertmanager's default `repeat_interval` (4h) plus its `group_interval` (5m) and a margin.
fn default_resend_within() -> Duration {
    Duration::from_secs(4 * 3600 + 15 * 60)
}

/// A day: a stale alert is listed (and pages `watchdog.alerts_stale`) that long before it goes.
fn default_forget_after() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// One route: every matcher must match.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRoute {
    /// The section's ID (checked at load).
    pub section: String,
    /// Alertmanager matchers (`alertname=~"HighLatency.*"`), parsed at load; at least one.
    pub matchers: Vec<String>,
}

/// A matcher's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// One parsed matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    /// The anchored regex of `=~` and `!~`.
    regex: Option<Regex>,
}

impl Matcher {
    /// Parses `name op value`; the error says what is wrong, for a problem naming the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let name_end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(text.len());
        let name = &text[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "{text:?} does not start with a label name (letters, digits, `_`)"
            ));
        }
        let rest = text[name_end..].trim_start();
        let (op, rest) = [
            ("=~", MatchOp::Regex),
            ("!~", MatchOp::NotRegex),
            ("!=", MatchOp::NotEqual),
            ("=", MatchOp::Equal),
        ]
        .into_iter()
        .find_map(|(sym, op)| rest.strip_prefix(sym).map(|r| (op, r)))
        .ok_or_else(|| format!("{text:?} has no operator after {name:?} (=, !=, =~ or !~)"))?;
        let value = unquote(rest.trim())?;
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("{text:?}: not a regular expression: {e}"))?,
            ),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Self {
            name: name.to_owned(),
            op,
            value,
            regex,
        })
    }

    /// Whether the alert's `labels` satisfy it (a missing label is the empty string).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        let re = || self.regex.as_ref().is_some_and(|r| r.is_match(v));
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Regex => re(),
            MatchOp::NotRegex => !re(),
        }
    }
}

/// A matcher's value: `"…"` with `\"`, `\\` and `\n` escapes, or bare text without quotes.
fn unquote(v: &str) -> Result<String, String> {
    let Some(inner) = v.strip_prefix('"') else {
        if v.contains('"') {
            return Err(format!("{v:?}: a bare value cannot hold a quote"));
        }
        return Ok(v.to_owned());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' if chars.as_str().is_empty() => return Ok(out),
            '"' => return Err(format!("{v:?}: text after the closing quote")),
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some(e @ ('"' | '\\')) => out.push(e),
                // Regex escapes (`\.`, `\d`) stay as written, as Alertmanager keeps them.
                Some(e) => {
                    out.push('\\');
                    out.push(e);
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(format!("{v:?}: the quote is not closed"))
}

/// Where an alert goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// To this section's ID.
    Section(String),
    /// Nowhere: listed and counted, never dropped silently.
    Unmatched(Unmatched),
}

/// Why an alert reached no section: the `reason` label of `harven_watchdog_alerts_unmatched_total`
/// (a closed set, so the series stay few).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unmatched {
    /// No route matched and it carries no section label.
    NoRoute,
    /// Its section label names no section of the runbook.
    UnknownSection,
}

impl Unmatched {
    /// Every reason, for creating the counters at 0.
    pub const ALL: [Unmatched; 2] = [Unmatched::NoRoute, Unmatched::UnknownSection];

    /// The metric label and the API's word.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoRoute => "no_route",
            Self::UnknownSection => "unknown_section",
        }
    }
}

/// The compiled `[alerts]` of one runbook: what the alert inbox routes with.
#[derive(Debug, Clone)]
pub struct AlertRouter {
    /// Every section of the runbook, in its order: each gets an `alerts.firing` reading.
    sections: Vec<String>,
    section_label: Option<String>,
    routes: Vec<(String, Vec<Matcher>)>,
    /// `[alerts] resend_within`.
    pub resend_within: Duration,
    /// `[alerts] forget_after`.
    pub forget_after: Duration,
    /// `[alerts] critical_label` and `critical_value`.
    critical: (String, String),
}

impl AlertRouter {
    /// Compiles `routing` for `sections`. A matcher that does not parse is left out (a loaded
    /// runbook has none: they are problems at load).
    pub fn new(routing: &AlertRouting, sections: Vec<String>) -> Self {
        let routes = routing
            .routes
            .iter()
            .map(|r| {
                let ms = r
                    .matchers
                    .iter()
                    .filter_map(|m| Matcher::parse(m).ok())
                    .collect();
                (r.section.clone(), ms)
            })
            .collect();
        Self {
            sections,
            section_label: routing.section_label.clone(),
            routes,
            resend_within: routing.resend_within,
            forget_after: routing.forget_after,
            critical: (
                routing.critical_label.clone(),
                routing.critical_value.clone(),
            ),
        }
    }

    /// Whether an alert with these labels is critical (`severity="critical"` by default).
    pub fn is_critical(&self, labels: &BTreeMap<String, String>) -> bool {
        let (label, value) = &self.critical;
        labels.get(label) == Some(value)
    }

    /// The runbook's sections, in order.
    pub fn sections(&self) -> &[String] {
        &self.sections
    }

    /// The section of an alert with these labels.
    pub fn route(&self, labels: &BTreeMap<String, String>) -> Routed {
        if let Some(named) = self.section_label.as_ref().and_then(|l| labels.get(l)) {
            return if self.sections.contains(named) {
                Routed::Section(named.clone())
            } else {
                Routed::Unmatched(Unmatched::UnknownSection)
            };
        }
        self.routes
            .iter()
            .find(|(_, ms)| !ms.is_empty() && ms.iter().all(|m| m.matches(labels)))
            .map_or(Routed::Unmatched(Unmatched::NoRoute), |(s, _)| {
                Routed::Section(s.clone())
            })
    }
}

/// The problems of `[alerts]` in a runbook with these sections, as (key, message).
pub(super) fn check(routing: &AlertRouting, sections: &[&str]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (i, route) in routing.routes.iter().enumerate() {
        let key = format!("alerts.routes[{i}]");
        if !sections.contains(&route.section.as_str()) {
            problems.push((
                format!("{key}.section"),
                format!(
                    "unknown section {:?} (the runbook has: {})",
                    route.section,
                    sections.join(", ")
                ),
            ));
        }
        if route.matchers.is_empty() {
            problems.push((
                format!("{key}.matchers"),
                "a route needs at least one matcher (an empty one would take every alert)".into(),
            ));
        }
        for (j, m) in route.matchers.iter().enumerate() {
            if let Err(e) = Matcher::parse(m) {
                problems.push((format!("{key}.matchers[{j}]"), e));
            }
        }
    }
    if let Some(label) = &routing.section_label
        && Matcher::parse(&format!("{label}=\"\"")).is_err()
    {
        problems.push((
            "alerts.section_label".into(),
            format!("{label:?} is not a label name"),
        ));
    }
    if Matcher::parse(&format!("{}=\"\"", routing.critical_label)).is_err() {
        problems.push((
            "alerts.critical_label".into(),
            format!("{:?} is not a label name", routing.critical_label),
        ));
    }
    if routing.resend_within.is_zero() {
        problems.push((
            "alerts.resend_within".into(),
            "must be longer than zero (Alertmanager's repeat_interval plus group_interval)".into(),
        ));
    }
    if routing.forget_after <= routing.resend_within {
        problems.push((
            "alerts.forget_after".into(),
            "must be longer than alerts.resend_within (a stale alert is listed before it goes)"
                .into(),
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn matchers_are_alertmanagers_anchored_with_missing_labels_empty() {
        // (matcher, the alert's labels, matches)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case] = &[
            (
                r#"alertname=~"HighLatency.*""#,
                &[("alertname", "HighLatencyP95")],
                true,
            ),
            (
                r#"alertname=~"HighLatency.*""#,
                &[("alertname", "SlowHighLatency")],
                false,
            ),
            (
                r#"alertname =~ "High.*""#,
                &[("alertname", "HighErrorRate")],
                true,
            ),
            (r#"severity!~"warn.*|info""#, &[("severity", "info")], false),
            (
                r#"severity!~"warn.*|info""#,
                &[("severity", "critical")],
                true,
            ),
            (r#"severity="""#, &[], true),
            (r#"severity!="""#, &[], false),
            (r#"team=backend"#, &[("team", "backend")], true),
            (r#"team!=backend"#, &[("team", "backend")], false),
            (r#"path="a\"b""#, &[("path", "a\"b")], true),
            (
                r#"instance=~"10\.0\..*""#,
                &[("instance", "10.0.3.1:9100")],
                true,
            ),
            (
                r#"instance=~"10\.0\..*""#,
                &[("instance", "10x0.3.1")],
                false,
            ),
        ];
        for (text, ls, want) in cases {
            let m = Matcher::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(m.matches(&labels(ls)), *want, "{text} on {ls:?}");
        }
    }

    #[test]
    fn bad_matchers_say_what_is_wrong() {
        for (text, says) in [
            ("=~\"x\"", "label name"),
            ("alertname ~ \"x\"", "no operator"),
            ("alertname=~\"(\"", "not a regular expression"),
            ("alertname=\"x", "not closed"),
            ("alertname=\"x\"y", "after the closing quote"),
        ] {
            let e = Matcher::parse(text).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn the_section_label_wins_and_an_unknown_section_is_never_guessed() {
        let routing = AlertRouting {
            section_label: Some("harven_section".into()),
            routes: vec![AlertRoute {
                section: "latency".into(),
                matchers: vec![r#"alertname=~"HighLatency.*""#.into()],
            }],
            ..AlertRouting::default()
        };
        let router = AlertRouter::new(&routing, vec!["latency".into(), "errors".into()]);
        let route = |ls: &[(&str, &str)]| router.route(&labels(ls));
        assert_eq!(
            route(&[("alertname", "HighLatencyP95")]),
            Routed::Section("latency".into())
        );
        assert_eq!(
            route(&[
                ("alertname", "HighLatencyP95"),
                ("harven_section", "errors")
            ]),
            Routed::Section("errors".into())
        );
        assert_eq!(
            route(&[
                ("alertname", "HighLatencyP95"),
                ("harven_section", "billing")
            ]),
            Routed::Unmatched(Unmatched::UnknownSection)
        );
        assert_eq!(
            route(&[("alertname", "DiskFull")]),
            Routed::Unmatched(Unmatched::NoRoute)
        );
    }
}
