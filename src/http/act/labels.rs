//! The words of the `/act/{token}` confirmation and result pages, in each locale the runbook may be
//! in.

use crate::locale::Locale;

/// The words of the act pages' templates, under the keys they ask for.
pub(super) fn page_labels(
    locale: Locale,
) -> std::collections::BTreeMap<&'static str, &'static str> {
    let t = locale.text();
    let mut labels = std::collections::BTreeMap::from(t.incident_labels());
    labels.extend([
        ("title_ack", t.title_ack),
        ("title_resolve", t.title_resolve),
        ("explain_ack", t.explain_ack),
        ("explain_resolve", t.explain_resolve),
        ("nothing_yet", t.nothing_yet),
        ("open_for", t.duration),
        ("acks", t.acks),
        ("by", t.your_name),
        ("note", t.what_was_done),
        ("confirm_ack", t.confirm_ack),
        ("confirm_resolve", t.confirm_resolve),
        ("not_open", t.nothing_to_do),
        ("expires", t.expires),
        ("incident_page", t.see_incident),
        ("done", t.done),
    ]);
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_page_locales_have_the_same_labels() {
        let pt: Vec<_> = page_labels(Locale::PtBr).into_keys().collect();
        let en: Vec<_> = page_labels(Locale::En).into_keys().collect();
        assert_eq!(pt, en);
    }
}
