//! The pager's end of the pipeline: the changed incidents and the rendered emails of one step go to
//! the store in one transaction, and the sender is woken; what was recorded is counted here.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

use crate::clock::Timestamp;
use crate::incident::{Incident, Level, PageEvent};
use crate::notify::NotifyMetrics;
use crate::store::{CommitOutcome, NewEmail, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PageLabels {
    level: &'static str,
    event: &'static str,
}

/// The `event` labels of `emails_total`: the pages' events and the budget's digest (the event the
/// store gives the digest that replaces an incident's held emails).
const EMAIL_EVENTS: [&str; 6] = [
    "opened",
    "escalated",
    "reminder",
    "reopened",
    "resolved",
    "digest",
];

/// What the pager counts: `harven_watchdog_pages_total{level,event}` (the pages it decided and
/// recorded, one email each), and through the outbox's [`NotifyMetrics`] (shared with the sender)
/// the emails its commits hold over the budget and the outbox depth after each commit.
///
/// Registering it creates every label set of `pages_total` and of the sender's `emails_total` at 0:
/// the pager knows the levels and events, the sender only the strings its rows carry.
#[derive(Debug, Clone, Default)]
pub struct PagerMetrics {
    pages: Family<PageLabels, Counter>,
    outbox: NotifyMetrics,
}

impl PagerMetrics {
    /// Registers `pages_total` in `registry` beside `outbox` (already registered, by the sender's
    /// [`NotifyMetrics::register`]), and creates every label set of both at 0.
    pub fn register(registry: &mut Registry, outbox: NotifyMetrics) -> Self {
        let m = Self {
            pages: Family::default(),
            outbox,
        };
        registry.register(
            "pages",
            "Pages the escalation decided and recorded, by level and event (one email each)",
            m.pages.clone(),
        );
        for level in Level::ALL {
            for event in EMAIL_EVENTS {
                m.outbox.declare(level.as_str(), event);
            }
            for event in PageEvent::ALL {
                let _ = m.pages.get_or_create(&PageLabels {
                    level: level.as_str(),
                    event: event.as_str(),
                });
            }
        }
        m
    }

    /// Counts one page recorded by the pager.
    pub fn page(&self, level: Level, event: PageEvent) {
        self.pages
            .get_or_create(&PageLabels {
                level: level.as_str(),
                event: event.as_str(),
            })
            .inc();
    }
}

/// Records `incidents` and queues `emails` in one transaction (see [`Store::commit`]: a key already
/// in the ledger is not queued again, and emails over the incident's hourly `budget` are held),
/// counts the held ones, sets the outbox gauge, and wakes the sender. Synchronous, like the store:
/// async callers use `spawn_blocking`.
///
/// `wake` is the sender's [`Notify`]; `notify_one` keeps a permit when the sender is busy, so a wake
/// between its query and its sleep is not lost. It is woken only when something was stored for it
/// (queued or held): duplicates change nothing it would send.
pub fn commit(
    store: &Store,
    incidents: &[Incident],
    emails: &[NewEmail],
    budget: Option<u32>,
    now: Timestamp,
    metrics: &PagerMetrics,
    wake: &Notify,
) -> Result<CommitOutcome, StoreError> {
    let outcome = store.commit(incidents, emails, budget, now)?;
    for email in emails.iter().filter(|e| outcome.held.contains(&e.key)) {
        metrics
            .outbox
            .held(email.level.as_str(), email.event.as_str());
        tracing::info!(key = %email.key, "email held: the incident is over its hourly email budget");
    }
    for key in &outcome.duplicates {
        tracing::debug!(key = %key, "email already in the ledger; not queued again");
    }
    metrics.outbox.set_depth(store);
    if !outcome.queued.is_empty() || !outcome.held.is_empty() {
        wake.notify_one();
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt as _;

    use super::*;
    use crate::runbook::Severity;

    fn exposition(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).expect("encode");
        out
    }

    fn registered() -> (Registry, PagerMetrics) {
        let mut registry = Registry::with_prefix("harven_watchdog");
        let outbox = NotifyMetrics::register(&mut registry);
        let metrics = PagerMetrics::register(&mut registry, outbox);
        (registry, metrics)
    }

    /// Whether `wake` holds a permit (a `notify_one` nobody has taken yet).
    fn woken(wake: &Notify) -> bool {
        wake.notified().now_or_never().is_some()
    }

    /// Every label set of `pages_total` and of the sender's `emails_total` is there at 0 from the
    /// start, as it was when the sender registered them all.
    #[test]
    fn registering_creates_every_label_set_at_zero() {
        let (registry, _) = registered();
        let text = exposition(&registry);
        let zeros = |prefix: &str| {
            text.lines()
                .filter(|l| l.starts_with(prefix) && l.ends_with("} 0"))
                .count()
        };
        assert_eq!(zeros("harven_watchdog_emails_total{"), 3 * 6 * 4, "{text}");
        assert_eq!(zeros("harven_watchdog_pages_total{"), 3 * 5, "{text}");
        for series in [
            r#"harven_watchdog_emails_total{level="L3",event="digest",result="held"} 0"#,
            r#"harven_watchdog_emails_total{level="L1",event="opened",result="failed"} 0"#,
            r#"harven_watchdog_pages_total{level="L2",event="escalated"} 0"#,
            "harven_watchdog_outbox_depth 0",
        ] {
            assert!(text.lines().any(|l| l == series), "no {series} in:\n{text}");
        }
    }

    /// A commit counts what it held, sets the outbox gauge, and wakes the sender only when it stored
    /// something for it.
    #[test]
    fn a_commit_counts_its_held_emails_and_wakes_the_sender_when_it_stored_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("watchdog.db")).expect("open");
        let (registry, metrics) = registered();
        let wake = Notify::new();
        let at = Timestamp::from_unix_millis(1_800_000_000_000);
        let inc = Incident::open("errors", Severity::Major, "errors.supabase_down", at);
        let email = |level, event, n| {
            let page = crate::incident::Page::new(&inc, level, event, n, at);
            NewEmail::for_page(&page, vec!["devops@harven.ai".to_owned()], b"x".to_vec())
        };
        let opened = email(Level::L1, PageEvent::Opened, 0);
        let escalated = email(Level::L2, PageEvent::Escalated, 0);

        let out = commit(
            &store,
            std::slice::from_ref(&inc),
            &[opened.clone(), escalated.clone()],
            Some(1),
            at,
            &metrics,
            &wake,
        )
        .expect("commit");
        assert_eq!(
            (out.queued, out.held),
            (vec![opened.key.clone()], vec![escalated.key.clone()])
        );
        assert!(woken(&wake), "the sender is woken");
        let text = exposition(&registry);
        for series in [
            r#"harven_watchdog_emails_total{level="L2",event="escalated",result="held"} 1"#,
            "harven_watchdog_outbox_depth 2",
        ] {
            assert!(text.lines().any(|l| l == series), "no {series} in:\n{text}");
        }

        // The same pages again: duplicates only, nothing for the sender.
        let out = commit(&store, &[], &[opened], Some(1), at, &metrics, &wake).expect("commit");
        assert_eq!(out.duplicates.len(), 1);
        assert!(!woken(&wake), "nothing was stored: the sender sleeps on");
    }
}
