//! The one way to act on incidents and maintenance windows, whatever the route: acknowledge, resolve,
//! and create, end or list run-time windows. The JSON API (`super::api`), the status pages
//! (`super::pages`) and the email links (`super::act`) each read their request, call [`Actions`],
//! and render its answer (the updated thing, or an [`ActionError`]) in their own words.
//!
//! Here, once for every route:
//! - the input is checked: `by` (a short name), `level`, `note`, and every field of a window (its
//!   times by the configuration's own rules, [`crate::config::window`], in the API's words); a
//!   refusal is [`ActionError::Invalid`] naming the field, and nothing changed;
//! - an email link's claims are applied: an ack is for the link's level, and the link acts only on
//!   the episode it was sent in;
//! - the pager's answer becomes the outcome: done, already resolved (also for an incident the book
//!   no longer holds but the store does: a section's older incident is over), reopened since the
//!   link, unknown, or unavailable;
//! - what was done is logged, naming the route ([`Via`]).
//!
//! Acks and resolves go to the pager's task, the one owner of the incident book; windows go to the
//! store, where the pager reads them at its next step. Both are reached through the [`Desk`] seam,
//! called on the blocking pool, so this module knows neither the task's channel nor SQLite.

use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::oneshot;

use super::blocking;
use crate::clock::Timestamp;
use crate::config::MaintenanceWindow;
use crate::config::window::{WindowTimes, check_times};
use crate::email::token::Claims;
use crate::ha::{Leadership, Role};
use crate::incident::{ActionError, Incident, Level};
use crate::locale::{Msg, MsgId};
use crate::pipeline::pager::{Command, PagerHandle};
use crate::store::{EndWindow, StoreError, StoredWindow};

/// Longest accepted `by`, in characters: a name, not a story.
pub const MAX_BY: usize = 100;
/// Longest accepted resolve note or window reason, in characters.
pub const MAX_NOTE: usize = 2000;

/// What the actions are carried out by: the pager's task for incidents, the store for windows and
/// reads. Calls are synchronous and may block (an SQLite write, a wait for the pager's task);
/// [`Actions`] runs them on the blocking pool. [`PagerHandle`] is the daemon's.
pub trait Desk: Send + Sync {
    /// The incident with this ID, from the store; `Ok(None)` when there is none.
    fn incident(&self, id: &str) -> Result<Option<Incident>, ActionError>;
    /// Records an acknowledgement by `by` for `level` (`None`: the highest level paged), if the
    /// incident is still in `episode` when one is given (an email link's); answers the level acked.
    fn ack(
        &self,
        id: &str,
        level: Option<Level>,
        episode: Option<u32>,
        by: &str,
    ) -> Result<Level, ActionError>;
    /// Resolves the incident by hand, with `note` on its timeline, if it is still in `episode` when
    /// one is given.
    fn resolve(
        &self,
        id: &str,
        episode: Option<u32>,
        by: &str,
        note: &str,
    ) -> Result<(), ActionError>;
    /// The windows created at run time, oldest first, ended ones included.
    fn windows(&self) -> Result<Vec<StoredWindow>, ActionError>;
    /// Stores a checked window made by `by` at `now`; its ID.
    fn add_window(
        &self,
        window: &MaintenanceWindow,
        by: &str,
        now: Timestamp,
    ) -> Result<i64, ActionError>;
    /// Ends the stored window `id` at `now`, by `by`.
    fn end_window(&self, id: i64, by: &str, now: Timestamp) -> Result<EndWindow, ActionError>;
}

/// A store failure as the routes say it.
pub(crate) fn store_unavailable(e: StoreError) -> ActionError {
    ActionError::Unavailable(format!("store: {e}"))
}

fn shutting_down() -> ActionError {
    ActionError::Unavailable("the watchdog is shutting down".into())
}

/// Sends a command to the pager's task and waits for its answer, from a blocking thread.
fn ask<T>(
    handle: &PagerHandle,
    make: impl FnOnce(oneshot::Sender<Result<T, ActionError>>) -> Command,
) -> Result<T, ActionError> {
    let (tx, rx) = oneshot::channel();
    handle
        .commands
        .blocking_send(make(tx))
        .map_err(|_| shutting_down())?;
    rx.blocking_recv().map_err(|_| shutting_down())?
}

impl Desk for PagerHandle {
    fn incident(&self, id: &str) -> Result<Option<Incident>, ActionError> {
        self.store.incident(id).map_err(store_unavailable)
    }

    fn ack(
        &self,
        id: &str,
        level: Option<Level>,
        episode: Option<u32>,
        by: &str,
    ) -> Result<Level, ActionError> {
        let (id, by) = (id.to_owned(), by.to_owned());
        ask(self, |reply| Command::Ack {
            id,
            level,
            episode,
            by,
            reply,
        })
    }

    fn resolve(
        &self,
        id: &str,
        episode: Option<u32>,
        by: &str,
        note: &str,
    ) -> Result<(), ActionError> {
        let (id, by, note) = (id.to_owned(), by.to_owned(), note.to_owned());
        ask(self, |reply| Command::Resolve {
            id,
            episode,
            by,
            note,
            reply,
        })
    }

    fn windows(&self) -> Result<Vec<StoredWindow>, ActionError> {
        self.store.windows().map_err(store_unavailable)
    }

    fn add_window(
        &self,
        window: &MaintenanceWindow,
        by: &str,
        now: Timestamp,
    ) -> Result<i64, ActionError> {
        self.store
            .add_window(window, by, now)
            .map_err(store_unavailable)
    }

    fn end_window(&self, id: i64, by: &str, now: Timestamp) -> Result<EndWindow, ActionError> {
        self.store
            .end_window(id, by, now)
            .map_err(store_unavailable)
    }
}

/// The route an action came through, named in its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The JSON API with the API token.
    Api,
    /// The JSON API with an email link's token.
    ApiLink,
    /// A form of the status pages, signed in.
    Pages,
    /// The confirmation page of an email link (`/act/{token}`).
    EmailLink,
}

impl Via {
    /// The `via` field of the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::ApiLink => "api (email link token)",
            Self::Pages => "status page",
            Self::EmailLink => "email link",
        }
    }
}

/// A maintenance window as asked for: the body of `POST /api/maintenance`, and the fields of the
/// pages' form. Text as written; [`Actions::add_window`] checks it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowRequest {
    /// Empty: every section.
    #[serde(default)]
    pub sections: Vec<String>,
    /// RFC 3339; absent: now.
    #[serde(default)]
    pub starts: Option<String>,
    /// RFC 3339; or give `duration`.
    #[serde(default)]
    pub ends: Option<String>,
    /// A humane duration (`2h`, `30m`) from `starts`.
    #[serde(default)]
    pub duration: Option<String>,
    pub reason: String,
    pub by: String,
}

/// The actions service: one per configuration generation, shared by the three surfaces.
pub struct Actions {
    desk: Arc<dyn Desk>,
    /// The runbook's section IDs, which a window may name.
    sections: Vec<String>,
    /// The configuration's windows (`[[maintenance]]`): listed, never ended here.
    configured: Vec<MaintenanceWindow>,
    /// This replica's role: only the leader acts; a standby refuses every change with
    /// [`ActionError::Standby`] before looking at it (issue 17).
    leadership: Leadership,
}

impl Actions {
    /// Acting through `desk`, with the runbook's `sections` and the configuration's windows.
    pub fn new(
        desk: Arc<dyn Desk>,
        sections: Vec<String>,
        configured: Vec<MaintenanceWindow>,
    ) -> Self {
        Self {
            desk,
            sections,
            configured,
            leadership: Leadership::solo("watchdog"),
        }
    }

    /// The same service acting only while `leadership` leads.
    #[must_use]
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        self.leadership = leadership;
        self
    }

    /// `Ok` while this replica leads; a standby's refusal names the leader when known.
    pub fn check_leader(&self) -> Result<(), ActionError> {
        match self.leadership.role() {
            Role::Leader { .. } => Ok(()),
            Role::Standby { leader } => Err(ActionError::Standby { leader }),
        }
    }

    /// This replica's role (the pages show it).
    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    /// The windows of the configuration, in its order (the API names them `config-1`…).
    pub fn configured(&self) -> &[MaintenanceWindow] {
        &self.configured
    }

    /// The incident with this ID; `Ok(None)` when there is none.
    pub async fn incident(&self, id: &str) -> Result<Option<Incident>, ActionError> {
        let (desk, id) = (Arc::clone(&self.desk), id.to_owned());
        blocking(move || desk.incident(&id)).await
    }

    /// Acknowledges incident `id` by `by` for `level` (as written; blank or absent: the highest
    /// level paged). With an email link's `link` claims, the ack is for the link's level (another
    /// is [`ActionError::OtherLevel`]) and only in the link's episode. Answers the level acked.
    pub async fn ack(
        &self,
        id: &str,
        by: &str,
        level: Option<&str>,
        link: Option<&Claims>,
        via: Via,
    ) -> Result<Level, ActionError> {
        self.check_leader()?;
        let by = check_by(by)?;
        let level = parse_level(level)?;
        let (level, episode) = match (link, level) {
            (None, level) => (level, None),
            (Some(c), Some(asked)) if asked != c.level => {
                return Err(ActionError::OtherLevel {
                    link: c.level,
                    asked,
                });
            }
            (Some(c), _) => (Some(c.level), Some(c.episode)),
        };
        let (desk, key, who) = (Arc::clone(&self.desk), id.to_owned(), by.clone());
        let answer = blocking(move || desk.ack(&key, level, episode, &who)).await;
        let level = self.outcome(id, answer).await?;
        tracing::info!(incident = %id, %level, by = %by, via = via.as_str(), "acknowledged");
        Ok(level)
    }

    /// Resolves incident `id` by hand, by `by`, with `note` on its timeline; with an email link's
    /// `link` claims, only in the link's episode.
    pub async fn resolve(
        &self,
        id: &str,
        by: &str,
        note: &str,
        link: Option<&Claims>,
        via: Via,
    ) -> Result<(), ActionError> {
        self.check_leader()?;
        let by = check_by(by)?;
        let note = check_text("note", note)?;
        let episode = link.map(|c| c.episode);
        let (desk, key, who) = (Arc::clone(&self.desk), id.to_owned(), by.clone());
        let answer = blocking(move || desk.resolve(&key, episode, &who, &note)).await;
        self.outcome(id, answer).await?;
        tracing::info!(incident = %id, by = %by, via = via.as_str(), "resolved");
        Ok(())
    }

    /// The pager's answer about incident `id` as the outcome every route renders. The book holds
    /// each section's newest incident only: one it does not know that the store holds is an older
    /// one, over, so it is already resolved.
    async fn outcome<T>(&self, id: &str, answer: Result<T, ActionError>) -> Result<T, ActionError> {
        match answer {
            Err(ActionError::UnknownIncident(_)) => match self.incident(id).await? {
                Some(_) => Err(ActionError::AlreadyResolved(id.to_owned())),
                None => Err(ActionError::UnknownIncident(id.to_owned())),
            },
            other => other,
        }
    }

    /// The windows created at run time, oldest first (ended ones included: the list is their
    /// history); the configuration's are [`Actions::configured`].
    pub async fn windows(&self) -> Result<Vec<StoredWindow>, ActionError> {
        let desk = Arc::clone(&self.desk);
        blocking(move || desk.windows()).await
    }

    /// Checks `request` at `now` and stores the window; logs it, naming `via`.
    pub async fn add_window(
        &self,
        request: WindowRequest,
        now: Timestamp,
        via: Via,
    ) -> Result<StoredWindow, ActionError> {
        self.check_leader()?;
        let (window, by) = check_window(request, now, &self.sections)?;
        let (desk, w, who) = (Arc::clone(&self.desk), window.clone(), by.clone());
        let id = blocking(move || desk.add_window(&w, &who, now)).await?;
        tracing::info!(
            id,
            sections = ?window.sections,
            starts = %window.starts,
            ends = %window.ends,
            by = %by,
            via = via.as_str(),
            "maintenance window created"
        );
        Ok(StoredWindow {
            id,
            window,
            created_by: by,
            created_at: now,
            ended: None,
        })
    }

    /// Ends window `id` (as the API names it: the store's number, or `config-N` for the
    /// configuration's, which only the configuration can end) at `now`, by `by`, and logs it. The
    /// pager sees the change at its next step, as it sees a new window.
    pub async fn end_window(
        &self,
        id: &str,
        by: &str,
        now: Timestamp,
        via: Via,
    ) -> Result<StoredWindow, ActionError> {
        self.check_leader()?;
        let by = check_by(by)?;
        let Ok(stored_id) = id.parse::<i64>() else {
            let configured = id
                .strip_prefix("config-")
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| (1..=self.configured.len()).contains(&n));
            return Err(if configured {
                ActionError::ConfiguredWindow(id.to_owned())
            } else {
                ActionError::UnknownWindow(id.to_owned())
            });
        };
        let (desk, who) = (Arc::clone(&self.desk), by.clone());
        match blocking(move || desk.end_window(stored_id, &who, now)).await? {
            EndWindow::Ended(w) => {
                tracing::info!(id = stored_id, sections = ?w.window.sections, by = %by, via = via.as_str(), "maintenance window ended early");
                Ok(w)
            }
            EndWindow::AlreadyOver(w) => Err(ActionError::WindowOver {
                id: id.to_owned(),
                ended_at: w.window.ends,
            }),
            EndWindow::NotFound => Err(ActionError::UnknownWindow(id.to_owned())),
        }
    }
}

/// `by`: required, trimmed, at most [`MAX_BY`] characters, no control characters.
pub(crate) fn check_by(by: &str) -> Result<String, ActionError> {
    let by = by.trim();
    if by.is_empty() {
        return Err(required("by", MsgId::InputWhoActs));
    }
    if by.chars().count() > MAX_BY {
        return Err(too_long("by", MAX_BY));
    }
    if by.chars().any(char::is_control) {
        let words = Msg::new(MsgId::InputControl).arg("field", "by");
        return Err(ActionError::invalid("by", words));
    }
    Ok(by.to_owned())
}

/// An optional level: blank or absent is `None` (the highest paged).
fn parse_level(level: Option<&str>) -> Result<Option<Level>, ActionError> {
    match level.map(str::trim) {
        None | Some("") => Ok(None),
        Some(l) => Level::parse(l).map(Some).ok_or_else(|| {
            let words = Msg::new(MsgId::InputUnknownLevel)
                .arg("level", format_args!("{l:?}"))
                .arg("levels", "L1, L2, L3");
            ActionError::invalid("level", words)
        }),
    }
}

/// A free text (`note`, `reason`): trimmed, at most [`MAX_NOTE`] characters.
fn check_text(field: &'static str, text: &str) -> Result<String, ActionError> {
    let text = text.trim();
    if text.chars().count() > MAX_NOTE {
        return Err(too_long(field, MAX_NOTE));
    }
    Ok(text.to_owned())
}

/// `field` is required: `why` it is.
fn required(field: &'static str, why: MsgId) -> ActionError {
    let words = Msg::new(MsgId::InputRequired)
        .arg("field", field)
        .msg("why", Msg::new(why));
    ActionError::invalid(field, words)
}

/// `field` is longer than `max` characters.
fn too_long(field: &'static str, max: usize) -> ActionError {
    let words = Msg::new(MsgId::InputTooLong)
        .arg("field", field)
        .arg("max", max);
    ActionError::invalid(field, words)
}

/// Checks a window request at `now` against the runbook's `sections`: the window, and who makes it.
pub(crate) fn check_window(
    request: WindowRequest,
    now: Timestamp,
    sections: &[String],
) -> Result<(MaintenanceWindow, String), ActionError> {
    let by = check_by(&request.by)?;
    let reason = check_text("reason", &request.reason)?;
    if reason.is_empty() {
        return Err(required("reason", MsgId::InputWhyMuted));
    }
    if let Some(unknown) = request.sections.iter().find(|s| !sections.contains(s)) {
        let words = Msg::new(MsgId::InputUnknownSection)
            .arg("section", format_args!("{unknown:?}"))
            .arg("known", sections.join(", "));
        return Err(ActionError::invalid("sections", words));
    }
    let times = WindowTimes {
        starts: request.starts.as_deref(),
        ends: request.ends.as_deref(),
        duration: request.duration.as_deref(),
    };
    // The configuration's rules, at `now`; the first problem is the answer, in the problem's words
    // (the configuration words the same problems its own way: [`WindowProblem::configured`]).
    let (starts, ends) = check_times(times, Some(now))
        .map_err(|p| ActionError::invalid(p.first.field().as_str(), p.first.words()))?;
    // Each section once, in the order given (`dedup` alone drops only adjacent repeats).
    let mut covered: Vec<String> = Vec::with_capacity(request.sections.len());
    for section in request.sections {
        if !covered.contains(&section) {
            covered.push(section);
        }
    }
    Ok((
        MaintenanceWindow {
            sections: covered,
            starts,
            ends,
            reason,
        },
        by,
    ))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use proptest::prelude::*;

    use super::*;
    use crate::http::action_status;

    fn body(json: serde_json::Value) -> WindowRequest {
        serde_json::from_value(json).expect("body")
    }

    const NOW: Timestamp = Timestamp::from_unix_millis(1_795_000_000_000);

    fn sections() -> Vec<String> {
        vec!["latency".into(), "errors".into()]
    }

    #[test]
    fn a_window_with_a_duration_starts_now() {
        let (w, by) = check_window(
            body(serde_json::json!({"sections": ["latency"], "duration": "2h", "reason": "deploy", "by": " Ana "})),
            NOW,
            &sections(),
        )
        .expect("valid");
        assert_eq!(by, "Ana");
        assert_eq!(w.starts, NOW);
        assert_eq!(w.ends, NOW + std::time::Duration::from_secs(7200));
    }

    #[test]
    fn a_section_named_twice_is_covered_once() {
        let (w, _) = check_window(
            body(serde_json::json!({"sections": ["errors", "latency", "errors"], "duration": "1h", "reason": "r", "by": "a"})),
            NOW,
            &sections(),
        )
        .expect("valid");
        assert_eq!(w.sections, ["errors", "latency"]);
    }

    #[test]
    fn bad_windows_are_refused() {
        for bad in [
            serde_json::json!({"sections": ["nope"], "duration": "1h", "reason": "r", "by": "a"}),
            serde_json::json!({"sections": [], "duration": "1h", "reason": "r", "by": ""}),
            serde_json::json!({"sections": [], "duration": "1h", "reason": "", "by": "a"}),
            serde_json::json!({"sections": [], "reason": "r", "by": "a"}),
            serde_json::json!({"sections": [], "duration": "1h", "ends": "2030-01-01T00:00:00Z", "reason": "r", "by": "a"}),
            serde_json::json!({"sections": [], "starts": "2030-01-01T02:00:00Z", "ends": "2030-01-01T01:00:00Z", "reason": "r", "by": "a"}),
            serde_json::json!({"sections": [], "ends": "yesterday", "reason": "r", "by": "a"}),
            serde_json::json!({"sections": [], "ends": "2020-01-01T00:00:00Z", "reason": "r", "by": "a"}),
        ] {
            let err = check_window(body(bad.clone()), NOW, &sections()).expect_err("refused");
            assert_eq!(action_status(&err), StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    /// Far-future windows (the one that ended after the year 9999 used to be stored, and every page
    /// panicked on it) are 400s naming the field at fault.
    #[test]
    fn windows_out_of_bounds_are_refused_naming_the_field() {
        for (bad, field) in [
            (serde_json::json!({"duration": "100000y"}), "`duration`"),
            (serde_json::json!({"duration": "31d"}), "`duration`"),
            (
                serde_json::json!({"duration": "999999999999999999s"}),
                "`duration`",
            ),
            (
                serde_json::json!({"starts": "2028-01-01T00:00:00Z", "duration": "1h"}),
                "`starts`",
            ),
            (
                serde_json::json!({"starts": "9999-12-31T23:00:00Z", "duration": "2h"}),
                "`starts`",
            ),
            (
                serde_json::json!({"ends": "2027-01-01T00:00:00Z"}),
                "`ends`",
            ),
            (
                serde_json::json!({"ends": "20000-01-01T00:00:00Z"}),
                "`ends`",
            ),
            (
                serde_json::json!({"starts": "1960-01-01T00:00:00Z", "duration": "1h"}),
                "`starts`",
            ),
        ] {
            let mut json = bad.clone();
            json["reason"] = "r".into();
            json["by"] = "a".into();
            let err = check_window(body(json), NOW, &sections()).expect_err("refused");
            assert_eq!(action_status(&err), StatusCode::BAD_REQUEST, "{bad}");
            assert!(err.to_string().starts_with(field), "{bad}: {err}");
            // The pages word the same refusal in their language, naming the same field.
            let ActionError::Invalid { words, .. } = &err else {
                panic!("{err:?}")
            };
            let pt = words.words(crate::locale::Locale::PtBr);
            assert!(
                pt.starts_with(field) && pt != err.to_string(),
                "{bad}: {pt}"
            );
        }
        // The longest window, planned the furthest ahead, is a date.
        let (w, _) = check_window(
            body(serde_json::json!({"starts": "2027-11-18T00:00:00Z", "duration": "30d", "reason": "r", "by": "a"})),
            NOW,
            &sections(),
        )
        .expect("valid");
        assert_eq!(w.ends.to_string(), "2027-12-18T00:00:00.000Z");
    }

    #[test]
    fn by_is_a_short_name() {
        assert!(check_by("Ana").is_ok());
        assert!(check_by("  ").is_err());
        assert!(check_by(&"x".repeat(101)).is_err());
        assert!(check_by("a\nb").is_err());
    }

    /// A maintenance window as an operator posts it, the base of the near-valid bodies.
    const REAL_WINDOW: &str = r#"{"sections": ["errors", "database"], "starts": "2026-11-24T22:00:00Z", "duration": "2h", "reason": "Supabase upgrade", "by": "Ana (on call)"}"#;

    proptest! {
        #![proptest_config(crate::mutate::cases(256))]

        /// Any body of `POST /api/maintenance` is a window that ends after it starts and after now,
        /// or a 400 that says what is wrong.
        #[test]
        fn prop_any_window_body_is_a_window_or_a_bad_request(
            body in prop_oneof![
                crate::mutate::near(REAL_WINDOW),
                crate::mutate::garbage().prop_map(String::into_bytes),
            ],
            now in any::<i64>(),
        ) {
            let Ok(body) = serde_json::from_slice::<WindowRequest>(&body) else {
                return Ok(());
            };
            let sections = ["errors", "database"].map(str::to_owned);
            let now = Timestamp::from_unix_millis(now);
            match check_window(body, now, &sections) {
                Ok((w, _)) => {
                    prop_assert!(w.starts < w.ends && now < w.ends, "{w:?}");
                    prop_assert!(w.starts.is_date() && w.ends.is_date(), "{w:?}");
                    prop_assert!(w.ends.saturating_since(w.starts) <= crate::config::limits::MAX_WINDOW.max, "{w:?}");
                }
                Err(e) => {
                    prop_assert_eq!(action_status(&e), StatusCode::BAD_REQUEST);
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }
    }
}
