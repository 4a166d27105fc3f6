//! What one poll of Sentry says, pure: the answers parsed ([`parse_issues`], [`parse_releases`]),
//! the readings computed ([`Readings::of`]) and worded ([`Readings::observe`], the one place this
//! probe words its notes). Tested on a fixed clock.
//!
//! **Definitions** (`h` = `[sentry] window` in hours, `floor` = the start of the current hour):
//! - *unresolved* (`sentry.unresolved_issues`): the issues the lists returned (at least, when a
//!   project had more pages than [`super::MAX_PAGES`]: the note says so);
//! - *events* (`sentry.events`): the events of those issues over the window, from each issue's
//!   hourly `stats["24h"]`: the buckets starting at `floor − h` or later (the window's `h` hours
//!   and the current one, so far);
//! - *rate* (`sentry.events_per_hour`): events over the window's time so far, in hours;
//!   *baseline* (`sentry.events_baseline_per_hour`): the events of the buckets from `floor − 23 h`
//!   to the window, over their hours; *ratio* (`sentry.event_rate_ratio`): rate / baseline, a
//!   baseline under one event an hour counted as one (a first trickle after a quiet day is not an
//!   infinite spike). Events of issues resolved meanwhile are not counted (the lists hold the
//!   unresolved ones only);
//! - *the deploy* of a project: its latest release's time (the latest of `lastDeploy.dateFinished`,
//!   `dateReleased` and `dateCreated` over the first page of its releases), when it has any;
//! - *new since release* (`sentry.new_since_release`): issues first seen after their project's
//!   deploy; no data when no project has a release (then the backend's start or image change,
//!   `docker.recent_deploy`, is the deploy, and the runbook combines it with `sentry.new_issues`);
//! - *new* (`sentry.new_issues`): issues first seen within the window, whatever the deploy;
//! - *top new* (`sentry.top_new_issues`): at most [`TOP`] of the issues first seen after the deploy
//!   (the release, or the window without one), the most events first: short ID, title (cut to
//!   [`MAX_TITLE`]), events, users, level and permalink. Titles are the users' words (an exception
//!   message): one line, cut, and the email quotes the whole text as a peer's.

use serde::Deserialize;

use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, Key, Observation, Outcome};
use crate::probe::http::{malformed, malformed_because};

/// Most issues listed in `sentry.top_new_issues`.
pub const TOP: usize = 5;

/// Longest title kept, in characters.
pub const MAX_TITLE: usize = 80;

/// Longest permalink kept; a longer one is left out.
const MAX_LINK: usize = 200;

const HOUR: i64 = 3600;

/// One issue of a list, the fields read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Issue {
    /// `shortId` (`BACKEND-7F`): what people search Sentry for; cut when shown.
    pub short_id: String,
    /// The exception and its message: a user's words (any text a request can put in an error).
    pub title: String,
    /// Sentry's page of the issue; shown only when it is an http(s) URL of a sane length.
    pub permalink: Option<String>,
    /// `fatal`, `error`, `warning`, …; shown as Sentry says it, cut.
    pub level: String,
    /// Events over the issue's life (`count`, a string in Sentry's answers).
    pub count: u64,
    /// Users who met it (`userCount`).
    pub user_count: u64,
    /// Unix seconds.
    pub first_seen: i64,
    /// Hourly buckets of the last 24 h: (start, events).
    pub hourly: Vec<(i64, u64)>,
}

/// What one project said.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Project {
    /// Its latest release: version and time (Unix seconds), if it has any.
    pub release: Option<(String, i64)>,
    /// Its unresolved issues, every page read.
    pub issues: Vec<Issue>,
    /// More pages than were read: the counts are floors.
    pub capped: bool,
}

/// An issue as Sentry's list sends it ("List a Project's Issues").
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIssue {
    #[serde(default)]
    short_id: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    permalink: Option<String>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    count: Option<serde_json::Value>,
    #[serde(default)]
    user_count: Option<serde_json::Value>,
    first_seen: String,
    #[serde(default)]
    stats: Option<std::collections::BTreeMap<String, Vec<(serde_json::Value, serde_json::Value)>>>,
}

/// A release as Sentry's list sends it ("List a Project's Releases").
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRelease {
    version: String,
    #[serde(default)]
    date_created: Option<String>,
    #[serde(default)]
    date_released: Option<String>,
    #[serde(default)]
    last_deploy: Option<RawDeploy>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDeploy {
    #[serde(default)]
    date_finished: Option<String>,
}

/// A count, from a number or a numeric string (`count` is a string in Sentry's answers).
fn count(v: Option<&serde_json::Value>) -> u64 {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// An ISO 8601 UTC time as Sentry writes it (`2026-12-07T01:02:03.456789Z`, or `+00:00`), in Unix
/// seconds.
pub(crate) fn unix_seconds(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s
        .strip_suffix("+00:00")
        .map_or_else(|| s.to_owned(), |t| format!("{t}Z"));
    let t = humantime::parse_rfc3339(&s).ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

/// A page of issues, or why the body is not one.
pub(crate) fn parse_issues(body: &[u8]) -> Result<Vec<Issue>, Failure> {
    let what = || Msg::new(MsgId::SentryIssuesList);
    let raw: Vec<RawIssue> =
        serde_json::from_slice(body).map_err(|e| malformed(body, what(), &e))?;
    raw.into_iter()
        .map(|r| {
            let first_seen = unix_seconds(&r.first_seen).ok_or_else(|| {
                malformed_because(body, what(), Msg::new(MsgId::SentryFirstSeenNotUtc))
            })?;
            let hourly = r
                .stats
                .as_ref()
                .and_then(|s| s.get("24h"))
                .map(|points| {
                    points
                        .iter()
                        .filter_map(|(t, n)| Some((t.as_i64()?, count(Some(n)))))
                        .collect()
                })
                .unwrap_or_default();
            Ok(Issue {
                short_id: r.short_id.unwrap_or_default(),
                title: r.title.unwrap_or_default(),
                permalink: r.permalink,
                level: r.level.unwrap_or_default(),
                count: count(r.count.as_ref()),
                user_count: count(r.user_count.as_ref()),
                first_seen,
                hourly,
            })
        })
        .collect()
}

/// The latest release of a page of releases: its version and time, `None` without releases.
pub(crate) fn parse_releases(body: &[u8]) -> Result<Option<(String, i64)>, Failure> {
    let raw: Vec<RawRelease> = serde_json::from_slice(body)
        .map_err(|e| malformed(body, Msg::new(MsgId::SentryReleasesList), &e))?;
    Ok(raw
        .into_iter()
        .filter_map(|r| {
            let times = [
                r.last_deploy.and_then(|d| d.date_finished),
                r.date_released,
                r.date_created,
            ];
            let at = times
                .iter()
                .flatten()
                .filter_map(|t| unix_seconds(t))
                .max()?;
            Some((r.version, at))
        })
        .max_by_key(|(_, at)| *at))
}

/// The readings of one poll, before they are worded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Readings {
    /// Issues read over every project.
    unresolved: usize,
    /// A project had more pages than were read: the counts are floors ("at least").
    capped: bool,
    /// Events over the window and the current hour so far.
    events: u64,
    /// `events` per hour of the window so far.
    per_hour: f64,
    /// Events per hour over the rest of the 24 h.
    baseline_per_hour: f64,
    /// `per_hour` / `baseline_per_hour`, the baseline floored at 1.
    ratio: f64,
    /// Issues first seen within the window.
    new_issues: usize,
    /// `None` when no project has a release.
    new_since_release: Option<usize>,
    /// The latest release over the projects: version and age in seconds.
    latest_release: Option<(String, i64)>,
    /// The top new issues, already one line each.
    top: Vec<String>,
    /// `[sentry] window`, for the notes.
    window_hours: i64,
}

impl Readings {
    /// The definitions of the module doc over `projects`, at `now` (Unix seconds), for a window of
    /// `window_hours` (1 to 12).
    pub(crate) fn of(projects: &[Project], now: i64, window_hours: i64) -> Self {
        let floor = now - now.rem_euclid(HOUR);
        let cutoff = floor - window_hours * HOUR;
        let baseline_from = floor - 23 * HOUR;
        let issues = || projects.iter().flat_map(|p| &p.issues);
        let sum = |from: i64, to: i64| -> u64 {
            issues()
                .flat_map(|i| &i.hourly)
                .filter(|(t, _)| *t >= from && *t < to)
                .map(|(_, n)| *n)
                .sum()
        };
        let events = sum(cutoff, i64::MAX);
        let baseline = sum(baseline_from, cutoff);
        // Hours are small integers; counts far below 2^52.
        #[allow(clippy::cast_precision_loss)]
        let (per_hour, baseline_per_hour) = (
            events as f64 / ((now - cutoff) as f64 / HOUR as f64),
            baseline as f64 / (cutoff - baseline_from).max(HOUR) as f64 * HOUR as f64,
        );
        let ratio = per_hour / baseline_per_hour.max(1.0);
        let new_issues = issues()
            .filter(|i| i.first_seen >= now - window_hours * HOUR)
            .count();
        let with_release: Vec<_> = projects
            .iter()
            .filter_map(|p| p.release.as_ref().map(|r| (p, r.1)))
            .collect();
        let new_since_release = (!with_release.is_empty()).then(|| {
            with_release
                .iter()
                .map(|(p, at)| p.issues.iter().filter(|i| i.first_seen > *at).count())
                .sum()
        });
        let latest_release = projects
            .iter()
            .filter_map(|p| p.release.clone())
            .max_by_key(|(_, at)| *at)
            .map(|(v, at)| (v, (now - at).max(0)));
        // The issues new since each project's deploy: its release, or the window without one.
        let mut fresh: Vec<&Issue> = projects
            .iter()
            .flat_map(|p| {
                let since = p
                    .release
                    .as_ref()
                    .map_or(now - window_hours * HOUR, |r| r.1);
                p.issues.iter().filter(move |i| i.first_seen > since)
            })
            .collect();
        fresh.sort_by_key(|i| std::cmp::Reverse(i.count));
        let top = fresh.iter().take(TOP).map(|i| line(i)).collect();
        Self {
            unresolved: issues().count(),
            capped: projects.iter().any(|p| p.capped),
            events,
            per_hour,
            baseline_per_hour,
            ratio,
            new_issues,
            new_since_release,
            latest_release,
            top,
            window_hours,
        }
    }

    /// The observations, with their notes: the one place this probe words them.
    // Counts are far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn observe(&self) -> Vec<Observation> {
        let h = self.window_hours;
        let since_release = match self.new_since_release {
            Some(n) => Observation::number(Key::new("sentry.new_since_release"), n as f64),
            None => Observation::new(
                Key::new("sentry.new_since_release"),
                Outcome::NoData(Msg::new(MsgId::SentryNoRelease)),
            ),
        };
        let release_age = match &self.latest_release {
            Some((version, age)) => {
                Observation::number(Key::new("sentry.release_age_seconds"), *age as f64)
                    .with_note(Msg::new(MsgId::SentryRelease).arg("version", clean(version, 60)))
            }
            None => Observation::new(
                Key::new("sentry.release_age_seconds"),
                Outcome::NoData(Msg::new(MsgId::SentryNoReleaseShort)),
            ),
        };
        let top = if self.top.is_empty() {
            "-".to_owned()
        } else {
            self.top.join(" · ")
        };
        vec![
            Observation::number(Key::new("sentry.unresolved_issues"), self.unresolved as f64)
                .with_note(
                    Msg::new(if self.capped {
                        MsgId::SentryUnresolvedFloor
                    } else {
                        MsgId::SentryUnresolved
                    })
                    .arg("n", self.unresolved),
                ),
            Observation::number(Key::new("sentry.events"), self.events as f64).with_note(
                Msg::new(if self.capped {
                    MsgId::SentryEventsFloor
                } else {
                    MsgId::SentryEvents
                })
                .arg("h", h),
            ),
            Observation::number(Key::new("sentry.events_per_hour"), self.per_hour),
            Observation::number(
                Key::new("sentry.events_baseline_per_hour"),
                self.baseline_per_hour,
            ),
            Observation::number(Key::new("sentry.event_rate_ratio"), self.ratio),
            Observation::number(Key::new("sentry.new_issues"), self.new_issues as f64),
            since_release,
            release_age,
            Observation::text(Key::new("sentry.top_new_issues"), top),
        ]
    }
}

/// One issue of `sentry.top_new_issues`, read back from its line ([`top_issues`]) for the list the
/// email and the incident page give it. `short_id`, `title` and `level` are Sentry's (a user's)
/// words, already cut to one line; `link` is an http(s) URL or absent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopIssue {
    /// `BACKEND-7F`.
    pub short_id: String,
    /// The exception and its message, a user's words.
    pub title: String,
    /// Events over the issue's life.
    pub events: u64,
    /// Users it touched.
    pub users: u64,
    /// `error`, `fatal`, …
    pub level: String,
    /// Sentry's page of the issue.
    pub link: Option<String>,
}

/// The issues of a `sentry.top_new_issues` reading, in its order (the format is [`line`]'s,
/// joined by ` · `); `-` (none) and anything not in that format read as no issue.
pub fn top_issues(text: &str) -> Vec<TopIssue> {
    text.split(" · ").filter_map(top_issue).collect()
}

/// The issues of the `sentry.top_new_issues` line among a cause's context lines (the runbook
/// names it in `errors.bad_deploy`'s context), for the lists of the email and the incident page.
pub fn top_issues_in(context: &[crate::engine::diagnosis::ContextLine]) -> Vec<TopIssue> {
    context
        .iter()
        .filter(|x| x.key.split(['{', ' ']).next() == Some("sentry.top_new_issues"))
        .filter_map(|x| match &x.value {
            Some(crate::observe::Value::Text(text)) => Some(top_issues(text)),
            _ => None,
        })
        .flatten()
        .collect()
}

/// One [`line`] read back.
fn top_issue(line: &str) -> Option<TopIssue> {
    let (short_id, rest) = line.split_once(" \"")?;
    let (title, rest) = rest.split_once("\" (")?;
    let (counts, link) = rest.split_once(')')?;
    let mut parts = counts.splitn(3, ", ");
    let events = parts.next()?.strip_suffix(" events")?.parse().ok()?;
    let users = parts.next()?.strip_suffix(" users")?.parse().ok()?;
    let level = parts.next()?.to_owned();
    let link = link
        .strip_prefix(' ')
        .filter(|l| l.starts_with("https://") || l.starts_with("http://"))
        .map(str::to_owned);
    Some(TopIssue {
        short_id: short_id.to_owned(),
        title: title.to_owned(),
        events,
        users,
        level,
        link,
    })
}

/// One issue of the top list, on one line: `SHORT-ID "title" (N events, M users, level) link`.
/// The peer's words lose what [`top_issue`] splits on (a space or `"` in the ID, `"` and ` · ` in
/// the title, parentheses in the level), so the list reads back whole.
fn line(i: &Issue) -> String {
    let link = i
        .permalink
        .as_deref()
        .filter(|l| l.len() <= MAX_LINK)
        .and_then(|l| url::Url::parse(l).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .map(|u| format!(" {u}"))
        .unwrap_or_default();
    format!(
        "{} \"{}\" ({} events, {} users, {}){link}",
        clean(&i.short_id, 32).replace([' ', '"'], "_"),
        clean(&i.title, MAX_TITLE)
            .replace('"', "'")
            .replace(" · ", " - "),
        i.count,
        i.user_count,
        clean(&i.level, 12).replace(['(', ')', ','], " "),
    )
}

/// A peer's words on one line: control characters and guillemets out, at most `max` characters
/// (`…` marks a cut).
fn clean(s: &str, max: usize) -> String {
    let one: String = s
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '«' | '»') {
                ' '
            } else {
                c
            }
        })
        .collect();
    let one = one.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > max {
        let mut cut: String = one.chars().take(max - 1).collect();
        cut.push('…');
        cut
    } else {
        one
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::observe::{FailureKind, Value};

    /// 2026-12-07 12:30:00 UTC.
    const NOW: i64 = 1_796_646_600;
    const FLOOR: i64 = NOW - 1800;

    fn issue(short: &str, first_seen: i64, count: u64, hourly: &[(i64, u64)]) -> Issue {
        Issue {
            short_id: short.into(),
            title: format!("KeyError in {short}"),
            permalink: Some(format!("https://harven.sentry.io/issues/{short}/")),
            level: "error".into(),
            count,
            user_count: 3,
            first_seen,
            hourly: hourly.to_vec(),
        }
    }

    /// 24 hourly buckets ending with the current hour: `base` events each, `now` in the last `h`+1.
    fn day(base: u64, now: u64, h: i64) -> Vec<(i64, u64)> {
        (0..24)
            .map(|k| {
                let t = FLOOR - (23 - k) * HOUR;
                (t, if t >= FLOOR - h * HOUR { now } else { base })
            })
            .collect()
    }

    fn value(obs: &[Observation], name: &str) -> Option<Value> {
        obs.iter()
            .find(|o| o.key.name == name)
            .and_then(|o| match &o.outcome {
                Outcome::Value(v) => Some(v.clone()),
                _ => None,
            })
    }

    #[test]
    fn parses_the_reference_answers() {
        let issues = br#"[{"annotations":[],"assignedTo":null,"count":"150","culprit":"raven.scripts.runner in main","firstSeen":"2018-11-06T21:19:55Z","hasSeen":false,"id":"1","isBookmarked":false,"isPublic":false,"isSubscribed":true,"lastSeen":"2018-11-06T21:19:55.123456Z","level":"error","logger":null,"metadata":{"title":"This is an example Python exception"},"numComments":0,"permalink":"https://sentry.io/the-interstellar-jurisdiction/pump-station/issues/1/","project":{"id":"2","name":"Pump Station","slug":"pump-station"},"shareId":null,"shortId":"PUMP-STATION-1","stats":{"24h":[[1541455200,473],[1541458800,914]]},"status":"unresolved","statusDetails":{},"subscriptionDetails":null,"title":"This is an example Python exception","type":"default","userCount":0}]"#;
        let parsed = parse_issues(issues).unwrap();
        assert_eq!(parsed[0].count, 150);
        assert_eq!(parsed[0].short_id, "PUMP-STATION-1");
        assert_eq!(parsed[0].first_seen, 1_541_539_195);
        assert_eq!(
            parsed[0].hourly,
            [(1_541_455_200, 473), (1_541_458_800, 914)]
        );
        let releases = br#"[{"id":2,"version":"2.0rc2","shortVersion":"2.0rc2","dateCreated":"2018-11-06T21:20:08.033Z","dateReleased":null,"lastDeploy":null,"newGroups":0},{"id":1,"version":"1.9","dateCreated":"2018-10-01T00:00:00Z","dateReleased":"2018-10-02T00:00:00Z","lastDeploy":{"dateFinished":"2018-10-03T00:00:00Z"}}]"#;
        assert_eq!(
            parse_releases(releases).unwrap(),
            Some(("2.0rc2".into(), 1_541_539_208))
        );
        assert_eq!(parse_releases(b"[]").unwrap(), None);
        let html = parse_issues(b"<html>login</html>").unwrap_err();
        assert!(html.detail.contains("HTML"), "{}", html.detail);
        assert_eq!(
            parse_issues(br#"[{"firstSeen":"yesterday"}]"#)
                .unwrap_err()
                .kind,
            FailureKind::Malformed
        );
    }

    #[test]
    fn new_issues_count_from_the_release_and_the_window() {
        let release_at = NOW - 2 * HOUR;
        let p = Project {
            release: Some(("backend@1.4.2".into(), release_at)),
            issues: vec![
                issue("B-1", NOW - 600, 40, &[]),
                issue("B-2", release_at + 60, 90, &[]),
                issue("B-3", NOW - 30 * 86_400, 5000, &[]),
            ],
            capped: false,
        };
        let r = Readings::of(std::slice::from_ref(&p), NOW, 1);
        assert_eq!(r.new_since_release, Some(2));
        assert_eq!(r.new_issues, 1, "first seen within the last hour");
        assert_eq!(r.top.len(), 2);
        assert!(
            r.top[0].starts_with("B-2 \"KeyError in B-2\" (90 events"),
            "{:?}",
            r.top
        );
        assert!(r.top[0].ends_with("https://harven.sentry.io/issues/B-2/"));
        assert_eq!(r.latest_release, Some(("backend@1.4.2".into(), 2 * HOUR)));

        // Without releases: no data since a release, and the top list is the window's new issues.
        let bare = Project { release: None, ..p };
        let r = Readings::of(&[bare], NOW, 1);
        assert_eq!(r.new_since_release, None);
        assert_eq!(r.top.len(), 1);
        let obs = r.observe();
        assert!(matches!(
            obs.iter()
                .find(|o| o.key.name == "sentry.new_since_release")
                .unwrap()
                .outcome,
            Outcome::NoData(_)
        ));
    }

    #[test]
    fn a_spike_is_the_window_rate_against_the_rest_of_the_day() {
        // 10 events an hour all day; 200 an hour in the last hour and this one.
        let p = Project {
            release: None,
            issues: vec![issue("B-1", NOW - 86_400, 1, &day(10, 200, 1))],
            capped: false,
        };
        let r = Readings::of(&[p], NOW, 1);
        assert_eq!(r.events, 400);
        assert!((r.per_hour - 400.0 / 1.5).abs() < 1e-9, "{r:?}");
        assert!((r.baseline_per_hour - 10.0).abs() < 1e-9, "{r:?}");
        assert!((r.ratio - 400.0 / 15.0).abs() < 1e-9);
        // A quiet day: the baseline counts as one an hour, so 3 events are no infinite spike.
        let quiet = Project {
            release: None,
            issues: vec![issue("B-1", NOW - 86_400, 1, &day(0, 1, 2))],
            capped: false,
        };
        let r = Readings::of(&[quiet], NOW, 2);
        assert_eq!(r.events, 3);
        assert!((r.ratio - 3.0 / 2.5).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn a_title_is_one_cut_line_and_a_bad_link_is_left_out() {
        let mut i = issue("B-1", NOW, 1, &[]);
        i.title = format!("Boom\n«Bearer x»\u{7}{}", "y".repeat(200));
        i.permalink = Some("javascript:alert(1)".into());
        let l = line(&i);
        assert!(
            !l.contains('\n') && !l.contains('«') && !l.contains("javascript"),
            "{l}"
        );
        assert!(l.contains('…'), "{l}");
        let p = Project {
            release: None,
            issues: vec![i; 9],
            capped: true,
        };
        let obs = Readings::of(&[p], NOW, 1).observe();
        let Some(Value::Text(top)) = value(&obs, "sentry.top_new_issues") else {
            panic!("{obs:?}")
        };
        assert_eq!(top.matches(" · ").count(), TOP - 1);
        assert!(
            obs[0]
                .note
                .as_ref()
                .unwrap()
                .to_string()
                .starts_with("at least")
        );
    }

    #[test]
    fn the_top_list_reads_back_issue_by_issue_whatever_the_titles_say() {
        let issue = |id: &str, title: &str, link: Option<&str>| Issue {
            short_id: id.into(),
            title: title.into(),
            permalink: link.map(Into::into),
            level: "error".into(),
            count: 42,
            user_count: 7,
            first_seen: NOW,
            hourly: Vec::new(),
        };
        let a = issue(
            "BACKEND-7F",
            "KeyError: 'user' · \"quoted\" (x)",
            Some("https://sentry.io/organizations/harven/issues/7/"),
        );
        let b = issue("BAD ID\"", "ok", Some("javascript:alert(1)"));
        let text = [line(&a), line(&b)].join(" · ");
        let top = top_issues(&text);
        assert_eq!(top.len(), 2, "{text}");
        assert_eq!(top[0].short_id, "BACKEND-7F");
        assert_eq!(top[0].title, "KeyError: 'user' - 'quoted' (x)");
        assert_eq!((top[0].events, top[0].users), (42, 7));
        assert_eq!(top[0].level, "error");
        assert_eq!(
            top[0].link.as_deref(),
            Some("https://sentry.io/organizations/harven/issues/7/")
        );
        assert_eq!(top[1].short_id, "BAD_ID_");
        assert_eq!(top[1].link, None);
        assert!(top_issues("-").is_empty());
    }

    proptest! {
        #![proptest_config(crate::mutate::cases(256))]

        /// Any body is a list of issues or a short, malformed-kind refusal.
        #[test]
        fn prop_any_body_is_issues_or_refused_briefly(body in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Err(f) = parse_issues(&body) {
                prop_assert_eq!(f.kind, FailureKind::Malformed);
                prop_assert!(f.detail.chars().count() <= 300, "{}", f.detail);
            }
            if let Err(f) = parse_releases(&body) {
                prop_assert_eq!(f.kind, FailureKind::Malformed);
            }
        }

        /// Whatever the stats, the readings are finite and the ratio is never negative.
        #[test]
        fn prop_readings_are_finite(
            buckets in prop::collection::vec((0i64..30, 0u64..1_000_000), 0..40),
            h in 1i64..=12,
            secs in 0i64..3600,
        ) {
            let now = FLOOR + secs;
            let hourly: Vec<_> = buckets.iter().map(|(k, n)| (FLOOR - k * HOUR, *n)).collect();
            let p = Project { release: None, issues: vec![issue("B-1", now, 1, &hourly)], capped: false };
            let r = Readings::of(&[p], now, h);
            prop_assert!(r.per_hour.is_finite() && r.baseline_per_hour.is_finite() && r.ratio.is_finite());
            prop_assert!(r.ratio >= 0.0);
            prop_assert_eq!(r.observe().len(), 9);
        }
    }
}
