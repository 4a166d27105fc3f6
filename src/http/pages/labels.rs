//! The words of the status pages, in each locale the runbook may be in.

use super::Labels;
use crate::locale::Locale;

/// The words of the pages' templates and messages, under the keys they ask for.
pub(super) fn labels(locale: Locale) -> Labels {
    let t = locale.text();
    let mut labels = Labels::from(t.incident_labels());
    labels.extend([
        ("title", t.status_title),
        ("updated", t.updated),
        ("open_incidents", t.open_incidents),
        ("blind_spots", t.blind_spots),
        ("no_open", t.no_open),
        ("recent", t.recent),
        ("no_recent", t.no_recent),
        ("windows", t.windows),
        ("no_windows", t.no_windows),
        ("all_sections", t.all_sections),
        ("age", t.age),
        ("duration", t.duration),
        ("cause", t.probable_cause),
        ("cause_unknown", t.unknown),
        ("acked", t.acked),
        ("resolved_at", t.resolved_at),
        ("critical_since", t.critical_since),
        ("reopened", t.reopened),
        ("acks", t.acks),
        ("no_acks", t.no_acks),
        ("paged", t.paged),
        ("no_pages", t.no_pages),
        ("symptoms", t.symptoms),
        // Leadership (issue 17)
        ("replica_role", t.replica_role),
        ("store_unreadable", t.store_down_unreadable),
        // Charts (issue 15)
        ("chart_heading", t.chart_heading),
        ("chart_legend", t.chart_legend),
        ("chart_trend", t.chart_trend),
        ("resolve_note", t.resolve_note),
        ("timeline", t.timeline),
        ("at", t.when),
        ("kind", t.kind),
        ("what", t.what),
        ("by", t.by_heading),
        ("reason", t.reason),
        ("starts", t.starts),
        ("ends", t.ends),
        ("act", t.act),
        ("act_email", t.act_email),
        ("act_api", t.act_api),
        ("act_api_closed", t.act_api_closed),
        ("back", t.back),
        ("not_found", t.not_found),
        ("not_found_text", t.not_found_text),
        ("maintenance", t.maintenance),
        ("signin", t.signin),
        ("signout", t.signout),
        ("signed_in", t.signed_in),
        ("token", t.token),
        ("signin_text", t.signin_text),
        ("refused", t.refused),
        ("not_acted", t.not_acted),
        ("nothing_changed", t.nothing_changed),
        ("refused_cross_site", t.refused_cross_site),
        ("refused_no_token", t.refused_no_token),
        ("refused_signed_out", t.refused_signed_out),
        ("refused_csrf", t.refused_csrf),
        ("refused_wrong_token", t.refused_wrong_token),
        ("refused_rate_limited", t.refused_rate_limited),
        ("not_open", t.not_open),
        ("unavailable", t.unavailable),
        ("diagnosis", t.diagnosis),
        ("diagnosis_at", t.diagnosis_at),
        ("no_diagnosis", t.no_diagnosis),
        ("status", t.status),
        ("score", t.score),
        ("evidence", t.evidence_lines),
        ("likely", t.likely),
        ("ruled_out", t.ruled_out),
        ("status_unknown", t.unknown),
        ("your_name", t.your_name),
        ("note", t.what_was_done),
        ("ack_button", t.ack),
        ("resolve_button", t.resolve),
        ("level_highest", t.level_highest),
        ("act_signin", t.act_signin),
        ("windows_all", t.windows_all),
        ("no_windows_upcoming", t.no_windows_upcoming),
        ("active", t.active),
        ("upcoming", t.upcoming),
        ("new_window", t.new_window),
        ("sections_hint", t.sections_hint),
        ("starts_field", t.starts_field),
        ("duration_field", t.duration_field),
        ("ends_field", t.ends_field),
        ("create", t.create),
        ("end_now", t.end_now),
        ("window_signin", t.window_signin),
        // Issue 16 leftovers (session 7)
        ("sentry_new_issues", t.sentry_new_issues),
        ("alerts_received", t.alerts_received),
        ("alert_name", t.alert_name),
        ("alert_since", t.alert_since),
        ("alerts_more", t.alerts_more),
    ]);
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_locales_have_the_same_labels() {
        let pt: Vec<_> = labels(Locale::PtBr).into_keys().collect();
        let en: Vec<_> = labels(Locale::En).into_keys().collect();
        assert_eq!(pt, en);
    }
}
