//! The email of one page: rendered by [`crate::email`] from the incident, the page and the latest
//! evaluation, with signed ack/resolve links, addressed to the paged level; a plain fallback when a
//! template fails, so a page is never lost to a rendering bug.

use lettre::message::Mailbox;

use super::{Pager, PagerConfig};
use crate::chart::SymptomChart;
use crate::clock::Timestamp;
use crate::email::links::ActionLinks;
use crate::email::{self, EmailInput};
use crate::engine::Evaluation;
use crate::incident::{Book, Level, Page, PageEvent};
use crate::store::NewEmail;

impl PagerConfig {
    /// The addresses `level` pages.
    fn recipients(&self, level: Level) -> &[Mailbox] {
        &self.to[match level {
            Level::L1 => 0,
            Level::L2 => 1,
            Level::L3 => 2,
        }]
    }
}

impl Pager {
    /// Renders the email of `page`, with `charts` (its incident's symptom charts). A rendering
    /// failure (a template bug) must not lose the page: it falls back to a plain message with the
    /// same headers and the incident's essentials.
    pub(super) fn email(
        &self,
        book: &Book,
        eval: &Evaluation,
        page: &Page,
        charts: &[SymptomChart],
        now: Timestamp,
    ) -> NewEmail {
        let recipients = self.config.recipients(page.level);
        let envelope: Vec<String> = recipients.iter().map(|m| m.email.to_string()).collect();
        let incident = book
            .get(&page.incident)
            .expect("a page names an incident of the book");
        let links = (page.event != PageEvent::Resolved).then(|| {
            ActionLinks::sign(
                &self.keys,
                &self.config.public_url,
                &incident.id,
                incident.reopened,
                page.level,
                now,
                self.config.link_ttl,
            )
        });
        let rendered = eval
            .sections
            .iter()
            .find(|s| s.section == incident.section)
            .map(|section| {
                self.renderer.render(&EmailInput {
                    incident,
                    page,
                    section,
                    symptoms: &eval.symptoms,
                    runbook: &self.runbook,
                    recipients,
                    from: &self.config.from,
                    public_url: &self.config.public_url,
                    locale: self.config.locale,
                    links: links.as_ref(),
                    charts,
                    now,
                })
            });
        let message = match rendered {
            Some(Ok(r)) => r.formatted(),
            Some(Err(e)) => {
                tracing::error!(key = %page.key, error = %e, "email rendering failed; sending the plain fallback");
                let locale = self.config.locale;
                email::fallback(incident, page, recipients, &self.config.from, now, locale)
            }
            None => {
                let locale = self.config.locale;
                email::fallback(incident, page, recipients, &self.config.from, now, locale)
            }
        };
        NewEmail::for_page(page, envelope, message)
    }
}
