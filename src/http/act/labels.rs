//! The words of the `/act/{token}` confirmation and result pages, in each locale the runbook may be
//! in.

use crate::runbook::Locale;

/// The pages' labels in `locale`, by key; both locales have the same keys.
pub(super) fn page_labels(
    locale: Locale,
) -> std::collections::BTreeMap<&'static str, &'static str> {
    let table: &[(&str, &str)] = match locale {
        Locale::PtBr => &[
            ("lang", "pt-BR"),
            ("title_ack", "Reconhecer o incidente"),
            ("title_resolve", "Resolver o incidente"),
            (
                "explain_ack",
                "Reconhecer diz à equipe que você está cuidando do incidente e silencia os lembretes do seu nível. O escalonamento continua se o incidente não for resolvido.",
            ),
            (
                "explain_resolve",
                "Resolver encerra o incidente agora, mesmo que os sintomas ainda não tenham normalizado. Se a seção voltar a disparar logo, o incidente reabre.",
            ),
            ("nothing_yet", "Nada muda até você confirmar abaixo."),
            ("incident", "Incidente"),
            ("section", "Seção"),
            ("severity", "Severidade"),
            ("state", "Estado"),
            ("state_open", "aberto"),
            ("state_resolved", "resolvido"),
            ("opened_at", "Aberto em"),
            ("open_for", "Duração"),
            ("acks", "Reconhecimentos"),
            ("level", "Nível"),
            ("by", "Seu nome"),
            ("note", "O que foi feito (vai para a linha do tempo)"),
            ("confirm_ack", "Confirmar reconhecimento"),
            ("confirm_resolve", "Confirmar resolução"),
            (
                "not_open",
                "Este incidente já está resolvido; não há nada a fazer.",
            ),
            ("expires", "Este link vale até"),
            ("incident_page", "Ver o incidente no watchdog"),
            ("done", "Feito"),
        ],
        Locale::En => &[
            ("lang", "en"),
            ("title_ack", "Acknowledge the incident"),
            ("title_resolve", "Resolve the incident"),
            (
                "explain_ack",
                "Acknowledging tells the team you are on it and silences your level's reminders. Escalation continues while the incident stays unresolved.",
            ),
            (
                "explain_resolve",
                "Resolving closes the incident now, even if its symptoms have not cleared yet. If the section fires again soon, the incident reopens.",
            ),
            ("nothing_yet", "Nothing changes until you confirm below."),
            ("incident", "Incident"),
            ("section", "Section"),
            ("severity", "Severity"),
            ("state", "State"),
            ("state_open", "open"),
            ("state_resolved", "resolved"),
            ("opened_at", "Opened at"),
            ("open_for", "Duration"),
            ("acks", "Acknowledgements"),
            ("level", "Level"),
            ("by", "Your name"),
            ("note", "What was done (goes on the timeline)"),
            ("confirm_ack", "Confirm acknowledgement"),
            ("confirm_resolve", "Confirm resolution"),
            (
                "not_open",
                "This incident is already resolved; there is nothing to do.",
            ),
            ("expires", "This link is valid until"),
            ("incident_page", "See the incident on the watchdog"),
            ("done", "Done"),
        ],
    };
    table.iter().copied().collect()
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
