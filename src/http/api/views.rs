//! What the API answers: incidents and maintenance windows as JSON, times as RFC 3339 UTC strings.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::config::MaintenanceWindow;
use crate::incident::{CauseSnapshot, Incident, IncidentState, Level};
use crate::runbook::Severity;
use crate::store::StoredWindow;

#[derive(Debug, Serialize)]
struct AckView {
    by: String,
    at: String,
}

#[derive(Debug, Serialize)]
struct EntryView {
    at: String,
    kind: String,
    text: String,
}

/// An incident as the API shows it. Times are RFC 3339 UTC strings.
#[derive(Debug, Serialize)]
pub(super) struct IncidentView {
    id: String,
    section: String,
    severity: Severity,
    state: IncidentState,
    opened_at: String,
    resolved_at: Option<String>,
    critical_since: Option<String>,
    /// The highest level paged so far.
    level: Option<Level>,
    /// When each level was first paged.
    paged: BTreeMap<Level, String>,
    /// The top likely cause at the latest evaluation (`unknown` when none is likely).
    cause: String,
    acks: BTreeMap<Level, AckView>,
    /// Rule ID → its latest summary.
    symptoms: BTreeMap<String, String>,
    reopened: u32,
    resolve_note: Option<String>,
    /// Detail only: the incident's history.
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<Vec<EntryView>>,
    /// Detail only: the ranked diagnosis at the latest evaluation while open (`null` for an incident
    /// stored before diagnoses were kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    diagnosis: Option<Option<DiagnosisView>>,
}

/// A kept diagnosis as the API shows it: every cause with its status, score and evidence lines,
/// each line as stored plus `sentences`, the line in English words (as `diagnose` says it).
#[derive(Debug, Serialize)]
struct DiagnosisView {
    /// The evaluation it comes from.
    at: String,
    causes: Vec<serde_json::Value>,
}

/// A kept cause as stored, with each evidence line's `sentences` added (none for a line stored
/// before its condition was kept).
fn cause_json(c: &CauseSnapshot) -> serde_json::Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    if let Some(lines) = v
        .get_mut("evidence")
        .and_then(serde_json::Value::as_array_mut)
    {
        for (line, e) in lines.iter_mut().zip(&c.evidence) {
            let sentences = e.cond.as_ref().map_or_else(Vec::new, |cond| {
                crate::words::evidence(crate::locale::Locale::En, cond, &e.found, e.more)
            });
            if let Some(obj) = line.as_object_mut() {
                obj.insert("sentences".to_owned(), sentences.into());
            }
        }
    }
    v
}

impl IncidentView {
    pub(super) fn summary(i: Incident) -> Self {
        Self {
            level: i.highest_paged(),
            id: i.id,
            section: i.section,
            severity: i.severity,
            state: i.state,
            opened_at: i.opened_at.to_string(),
            resolved_at: i.resolved_at.map(|t| t.to_string()),
            critical_since: i.critical_since.map(|t| t.to_string()),
            paged: i
                .paged
                .into_iter()
                .map(|(l, t)| (l, t.to_string()))
                .collect(),
            cause: i.cause,
            acks: i
                .acks
                .into_iter()
                .map(|(l, a)| {
                    (
                        l,
                        AckView {
                            by: a.by,
                            at: a.at.to_string(),
                        },
                    )
                })
                .collect(),
            symptoms: i.symptoms,
            reopened: i.reopened,
            resolve_note: i.resolve_note,
            timeline: None,
            diagnosis: None,
        }
    }

    pub(super) fn detail(i: Incident) -> Self {
        let timeline = i
            .timeline
            .iter()
            .map(|e| EntryView {
                at: e.at.to_string(),
                kind: e.kind.clone(),
                text: e.text.clone(),
            })
            .collect();
        Self {
            diagnosis: Some(i.diagnosis.as_ref().map(|d| DiagnosisView {
                at: d.at.to_string(),
                causes: d.causes.iter().map(cause_json).collect(),
            })),
            timeline: Some(timeline),
            ..Self::summary(i)
        }
    }

    pub(super) fn into_response(self, status: StatusCode) -> Response {
        (status, Json(self)).into_response()
    }
}

/// A window's ID in the API: the store's number for one created at run time, `"config-N"` for the
/// Nth `[[maintenance]]` of the configuration (1-based).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
enum WindowId {
    Stored(i64),
    Config(String),
}

impl WindowId {
    /// The ID of the `index`th (0-based) window of the configuration.
    fn config(index: usize) -> Self {
        Self::Config(format!("config-{}", index + 1))
    }
}

#[derive(Debug, Serialize)]
pub(super) struct WindowView {
    id: WindowId,
    /// `config` or `api`.
    source: &'static str,
    /// Empty: every section.
    sections: Vec<String>,
    starts: String,
    ends: String,
    reason: String,
    created_by: String,
    created_at: String,
    /// Set for a window ended early (`ends` is then when): who ended it and its planned end.
    #[serde(skip_serializing_if = "Option::is_none")]
    ended_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    planned_ends: Option<String>,
}

impl From<StoredWindow> for WindowView {
    fn from(w: StoredWindow) -> Self {
        Self {
            id: WindowId::Stored(w.id),
            source: "api",
            sections: w.window.sections,
            starts: w.window.starts.to_string(),
            ends: w.window.ends.to_string(),
            reason: w.window.reason,
            created_by: w.created_by,
            created_at: w.created_at.to_string(),
            ended_by: w.ended.as_ref().map(|e| e.by.clone()),
            planned_ends: w.ended.map(|e| e.planned_ends.to_string()),
        }
    }
}

/// Every window: the configuration's first (they have no ID), then those created through the API.
pub(super) fn window_views(
    configured: &[MaintenanceWindow],
    stored: Vec<StoredWindow>,
) -> Vec<WindowView> {
    configured
        .iter()
        .enumerate()
        .map(|(i, w)| WindowView {
            id: WindowId::config(i),
            source: "config",
            sections: w.sections.clone(),
            starts: w.starts.to_string(),
            ends: w.ends.to_string(),
            reason: w.reason.clone(),
            created_by: "configuration".to_owned(),
            created_at: String::new(),
            ended_by: None,
            planned_ends: None,
        })
        .chain(stored.into_iter().map(WindowView::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;

    #[test]
    fn the_window_list_has_the_configured_windows_and_the_stored_ones() {
        let t = |s: u64| {
            Timestamp::from_unix_millis(1_795_000_000_000) + std::time::Duration::from_secs(s)
        };
        let configured = vec![MaintenanceWindow {
            sections: vec!["database".into()],
            starts: t(0),
            ends: t(3600),
            reason: "Supabase upgrade".into(),
        }];
        let stored = vec![StoredWindow {
            id: 7,
            window: MaintenanceWindow {
                sections: vec![],
                starts: t(60),
                ends: t(120),
                reason: "deploy".into(),
            },
            created_by: "Ana".into(),
            created_at: t(30),
            ended: None,
        }];
        let json = serde_json::to_value(window_views(&configured, stored)).expect("json");
        assert_eq!(json[0]["source"], "config");
        assert_eq!(json[0]["id"], "config-1");
        assert_eq!(json[0]["sections"][0], "database");
        assert_eq!(json[1]["source"], "api");
        assert_eq!(json[1]["id"], 7);
        assert_eq!(json[1]["created_by"], "Ana");
    }
}
