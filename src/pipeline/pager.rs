//! The shell of the incident book: after each engine evaluation (and at each book deadline) it steps
//! the [`Book`], renders the due pages, and records the changed incidents and the emails in the store
//! **in one transaction** before waking the sender. Acks and resolves from the links and the API come
//! here too, so one task owns the book.
//!
//! Restart safety: the book is rebuilt from the store's newest incident per section; a page whose
//! email is already in the outbox (by key) is never queued again, and one that was decided but not
//! committed before a crash is decided again, with the same key, after the restart.
//!
//! A step is two halves, so the watch loop can read the symptom charts between them without holding
//! anything uncommitted in the store: [`Pager::decide`] steps a copy of the book and returns the
//! [`Decision`] (nothing written), [`Pager::chart_wants`] says which charts its emails show, and
//! [`Pager::record`] renders the emails with the charts fetched and commits. A decision dropped (a
//! crash while the charts are read) is decided again with the same keys at the next step.
//!
//! `render.rs` makes a page's email; `commit.rs` is the transaction, the sender's wake-up and what the
//! pager counts ([`PagerMetrics`]). The pager knows the store and a [`Notify`], not the sender.

mod commit;
mod render;

pub use commit::{PagerMetrics, commit};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use tokio::sync::{Notify, mpsc, oneshot};
use url::Url;

use crate::chart::SymptomChart;
use crate::clock::Timestamp;
use crate::config::Config;
use crate::email::Renderer;
use crate::email::token::LinkKeys;
use crate::engine::{EngineState, Evaluation};
use crate::incident::{
    ActionError, Book, Incident, IncidentState, Level, Page, PageEvent, Policy, Window,
};
use crate::locale::{Msg, MsgId};
use crate::pipeline::charts::{ChartSource, Wanted};
use crate::runbook::{Locale, Runbook};
use crate::store::health::{PAGER, StoreHealth, Unrecorded};
use crate::store::{NewEmail, Store, StoreError};

/// The name of the ack-link signing key in the store (its previous value, after a rotation, is
/// kept beside it: [`Store::rotate_secret`]).
pub const LINK_KEY: &str = "link-key";

/// Replaces the link key in `store` (the `rotate-link-key` command). With `keep` (the configured
/// `link_ttl`), the old key still verifies until `now + keep`, when the last link it signed has
/// expired; the time is returned. Without, every link it signed is refused from now on (a leaked
/// key). Pagers read the keys when they open: a running daemon takes the new one at its next reload.
pub fn rotate_link_key(
    store: &Store,
    now: Timestamp,
    keep: Option<Duration>,
) -> Result<Option<Timestamp>, StoreError> {
    let until = keep.map(|ttl| now + ttl);
    store.rotate_secret(LINK_KEY, until)?;
    tracing::info!(previous_accepted_until = ?until, "link key rotated");
    Ok(until)
}

/// The link keys in `store`: the current one (created on first use) and the previous one while it
/// is still accepted. Read when a pager opens, so a rotation takes effect at the next reload or
/// restart.
pub fn load_link_keys(store: &Store) -> Result<LinkKeys, StoreError> {
    let keys = LinkKeys::new(store.get_or_create_secret(LINK_KEY)?);
    Ok(match store.previous_secret(LINK_KEY)? {
        Some((previous, until)) => keys.with_previous(previous, until),
        None => keys,
    })
}

/// The name of the engine's saved rule states in the store.
pub const ENGINE_STATE: &str = "engine-state";

/// What the pager needs from the configuration.
#[derive(Debug, Clone)]
pub struct PagerConfig {
    pub policy: Policy,
    pub to: [Vec<Mailbox>; 3],
    pub from: Mailbox,
    pub public_url: Url,
    pub locale: Locale,
    pub link_ttl: Duration,
    pub budget: u32,
    /// Windows from the configuration; the store holds those created through the API.
    pub windows: Vec<Window>,
}

impl PagerConfig {
    pub fn from_config(c: &Config) -> Self {
        let e = &c.escalation;
        Self {
            policy: Policy::from_config(e),
            to: [e.l1.to.clone(), e.l2.to.clone(), e.l3.to.clone()],
            from: c.smtp.from.clone(),
            public_url: c.server.public_url.clone(),
            locale: c.runbook.locale,
            link_ttl: e.link_ttl,
            budget: e.max_emails_per_hour,
            windows: c
                .maintenance
                .iter()
                .map(|w| Window {
                    sections: w.sections.clone(),
                    starts: w.starts,
                    ends: w.ends,
                })
                .collect(),
        }
    }
}

/// Why a step could not be recorded. The step is retried at the next evaluation: nothing was
/// committed, so nothing is lost.
#[derive(Debug, thiserror::Error)]
pub enum PagerError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// The book, the store, and what it takes to render emails.
pub struct Pager {
    book: Book,
    store: Arc<Store>,
    config: PagerConfig,
    runbook: Arc<Runbook>,
    renderer: Renderer,
    keys: Arc<LinkKeys>,
    /// The sender's wake-up, notified after each commit that stored an email for it.
    sender: Arc<Notify>,
    metrics: PagerMetrics,
    /// The latest evaluation: a page due at a deadline, or after an ack or resolve, is rendered with
    /// the diagnosis as it stood then.
    last: Option<Evaluation>,
    /// The windows in force at the latest step (configured and stored). The watch loop asks for the
    /// next deadline on its own thread, so that must not read the store; a window created through the
    /// API counts from the next step (at most one probe interval later).
    windows: Vec<Window>,
    /// Where the emails' symptom charts come from (shared with the status pages).
    charts: Arc<ChartSource>,
    /// The store finding this pager reports each step's store calls to (as [`PAGER`]): a commit
    /// that fails leaves its pages unrecorded, and says so there.
    health: StoreHealth,
}

/// A step decided and not recorded: the stepped copy of the book, its pages and the incidents it
/// changed. Nothing of it is in the store: dropped, the same pages are decided again, with the same
/// keys, at the next step.
#[derive(Debug)]
pub struct Decision {
    book: Book,
    pages: Vec<Page>,
    changed: Vec<String>,
    now: Timestamp,
}

/// The symptom charts of a step's emails, by incident ID.
pub type Charts = BTreeMap<String, Vec<SymptomChart>>;

/// Whether an email of `event` shows the symptom charts. The opening, the escalation (the new level
/// reads it first), the reopening and the reminder (is it still climbing?) do; the resolved email
/// does not: its symptoms have cleared, and its timeline and postmortem tell the story.
pub fn charts_for(event: PageEvent) -> bool {
    event != PageEvent::Resolved
}

impl std::fmt::Debug for Pager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pager")
            .field("book", &self.book)
            .finish_non_exhaustive()
    }
}

impl Pager {
    /// Rebuilds the book from `store` and loads (or creates) the link keys.
    pub fn open(
        store: Arc<Store>,
        config: PagerConfig,
        runbook: Arc<Runbook>,
        sender: Arc<Notify>,
        metrics: PagerMetrics,
        charts: Arc<ChartSource>,
    ) -> Result<Self, PagerError> {
        let book = Book::new(store.latest_per_section()?);
        let keys = Arc::new(load_link_keys(&store)?);
        let health = StoreHealth::new(store.path().display().to_string(), store.is_shared());
        let mut pager = Self {
            book,
            store,
            config,
            runbook,
            renderer: Renderer::new(),
            keys,
            sender,
            metrics,
            last: None,
            windows: Vec::new(),
            charts,
            health,
        };
        pager.windows = pager.windows()?;
        Ok(pager)
    }

    /// Reports to `health` from now on (the daemon's one finding; a pager opened alone keeps a
    /// finding of its own that nothing reads).
    #[must_use]
    pub fn reporting_to(mut self, health: StoreHealth) -> Self {
        self.health = health;
        self
    }

    /// This replica stopped leading: the pages it could not record are no longer its to record (the
    /// new leader decides them from the store), so its word on the store lapses.
    pub fn stand_down(&self) {
        self.health.answered(PAGER);
    }

    /// Tells the finding how the store answered a call of this pager at `now`: `pages` are the
    /// keys a failed commit leaves unrecorded.
    fn report<T>(&self, now: Timestamp, result: &Result<T, StoreError>, pages: Unrecorded) {
        match result {
            Ok(_) => self.health.answered(PAGER),
            Err(e) => self.health.failed(PAGER, now, e, pages),
        }
    }

    /// The keys the ack/resolve links are signed and verified with.
    pub fn link_keys(&self) -> Arc<LinkKeys> {
        Arc::clone(&self.keys)
    }

    pub fn book(&self) -> &Book {
        &self.book
    }

    /// Steps the book over `eval` at `now` and records the outcome at once, without charts (see
    /// [`Pager::decide_on`] for the watch loop's two halves).
    pub fn on_evaluation(
        &mut self,
        eval: Evaluation,
        engine: Option<&EngineState>,
        now: Timestamp,
    ) -> Result<(), PagerError> {
        match self.decide_on(eval, engine, now)? {
            Some(decision) => self.record(decision, &Charts::new()),
            None => Ok(()),
        }
    }

    /// Takes `eval` as the latest evaluation and decides the book's step over it at `now` (see
    /// [`Pager::decide`]); [`Pager::record`] records it. `engine` is the engine's rule states when
    /// they changed: saved first, so a restart resumes the symptoms that opened incidents instead of
    /// seeing them inactive and resolving everything.
    ///
    /// When the store refuses the rule states, nothing is recorded, but the step is still decided
    /// (on a copy, writing nothing) so that the store finding can say which pages wait for it.
    pub fn decide_on(
        &mut self,
        eval: Evaluation,
        engine: Option<&EngineState>,
        now: Timestamp,
    ) -> Result<Option<Decision>, PagerError> {
        self.last = Some(eval);
        if let Some(state) = engine {
            let json = serde_json::to_vec(state).expect("engine state serializes");
            if let Err(e) = self.store.put_value(ENGINE_STATE, &json) {
                let keys = match self.decide_unreported(now) {
                    Ok(Some(d)) => d.pages.iter().map(|p| p.key.clone()).collect(),
                    _ => Vec::new(),
                };
                self.health.failed(PAGER, now, &e, Unrecorded::Pages(keys));
                return Err(e.into());
            }
        }
        self.decide(now)
    }

    /// The engine's rule states saved by the previous run, if any (unreadable ones are dropped).
    pub fn saved_engine_state(&self) -> Option<EngineState> {
        let bytes = self.store.value(ENGINE_STATE).ok()??;
        serde_json::from_slice(&bytes)
            .inspect_err(|e| tracing::warn!(error = %e, "ignoring unreadable saved rule states"))
            .ok()
    }

    /// Steps the book over the latest evaluation (a deadline came due, or an action) and records the
    /// outcome at once, without charts: the resolved emails an action makes show none, and any
    /// other page that comes due in the same step is rare enough to go without.
    pub fn step(&mut self, now: Timestamp) -> Result<(), PagerError> {
        match self.decide(now)? {
            Some(decision) => self.record(decision, &Charts::new()),
            None => Ok(()),
        }
    }

    /// Steps a copy of the book over the latest evaluation at `now`: the pages due and the
    /// incidents changed, or `None` when nothing is. Writes nothing.
    pub fn decide(&mut self, now: Timestamp) -> Result<Option<Decision>, PagerError> {
        let decided = self.decide_unreported(now);
        match &decided {
            // Every call of the step was answered and nothing waits to be recorded.
            Ok(None) => self.health.answered(PAGER),
            // Recorded or not by `record`, which reports.
            Ok(Some(_)) => {}
            Err(PagerError::Store(e)) => self.health.failed(PAGER, now, e, Unrecorded::Unknown),
        }
        decided
    }

    /// [`Pager::decide`] without a word to the store finding.
    fn decide_unreported(&mut self, now: Timestamp) -> Result<Option<Decision>, PagerError> {
        let Some(eval) = self.last.as_ref() else {
            return Ok(None);
        };
        let windows = self.windows()?;
        self.windows.clone_from(&windows);
        // Step a copy: if the store refuses the commit, the book stays as the store has it, and the
        // same pages are decided again at the next step.
        let mut book = self.book.clone();
        let out = book.step(
            &eval.sections,
            &eval.symptoms,
            now,
            &self.config.policy,
            &windows,
        );
        if out.changed.is_empty() && out.pages.is_empty() {
            return Ok(None);
        }
        Ok(Some(Decision {
            book,
            pages: out.pages,
            changed: out.changed,
            now,
        }))
    }

    /// Where the charts come from.
    pub fn chart_source(&self) -> Arc<ChartSource> {
        Arc::clone(&self.charts)
    }

    /// The charts `decision`'s emails show (see [`charts_for`]): each incident's firing symptoms that
    /// Prometheus can chart, by incident ID; empty when no email shows one, so no query is made.
    pub fn chart_wants(&self, decision: &Decision) -> Vec<(String, Vec<Wanted>)> {
        let Some(eval) = self.last.as_ref() else {
            return Vec::new();
        };
        let mut out: Vec<(String, Vec<Wanted>)> = Vec::new();
        for page in decision.pages.iter().filter(|p| charts_for(p.event)) {
            if out.iter().any(|(id, _)| *id == page.incident) {
                continue;
            }
            let Some(incident) = decision.book.get(&page.incident) else {
                continue;
            };
            let wanted = self.charts.wanted(
                &incident.section,
                &eval.symptoms,
                incident.opened_at,
                decision.now,
            );
            if !wanted.is_empty() {
                out.push((page.incident.clone(), wanted));
            }
        }
        out
    }

    /// Renders `decision`'s emails, each with its incident's `charts`, and records them with the
    /// changed incidents in one transaction; then the book is the decided one.
    pub fn record(&mut self, decision: Decision, charts: &Charts) -> Result<(), PagerError> {
        let Some(eval) = self.last.as_ref() else {
            return Ok(());
        };
        let Decision {
            book,
            pages,
            changed,
            now,
        } = decision;
        let emails: Vec<NewEmail> = pages
            .iter()
            .map(|p| {
                let shown = charts
                    .get(&p.incident)
                    .filter(|_| charts_for(p.event))
                    .map_or(&[][..], Vec::as_slice);
                self.email(&book, eval, p, shown, now)
            })
            .collect();
        let incidents: Vec<Incident> = changed
            .iter()
            .filter_map(|id| book.get(id).cloned())
            .collect();
        let budget = Some(self.config.budget);
        let outcome = commit(
            &self.store,
            &incidents,
            &emails,
            budget,
            now,
            &self.metrics,
            &self.sender,
        );
        let keys = pages.iter().map(|p| p.key.clone()).collect();
        self.report(now, &outcome, Unrecorded::Pages(keys));
        let outcome = outcome.inspect_err(|e| {
            // What it would page, said where the on-call will look while the store is away (a
            // shared database down, a fenced write): the book did not move, so the same pages are
            // decided again at the next evaluation and recorded once the store takes them.
            for p in &pages {
                tracing::warn!(incident = %p.incident, level = %p.level, event = %p.event, key = %p.key, error = %e, "page not recorded: the store refused it");
            }
        })?;
        self.book = book;
        for p in &pages {
            // A page decided again after a restart finds its key in the ledger: not a new page.
            if outcome.duplicates.contains(&p.key) {
                tracing::debug!(key = %p.key, "page already recorded before the restart");
                continue;
            }
            self.metrics.page(p.level, p.event);
            tracing::info!(incident = %p.incident, level = %p.level, event = %p.event, key = %p.key, "page recorded");
        }
        Ok(())
    }

    /// Windows in force: the configuration's and those created through the API (read on the store's
    /// writer connection, so a flood of HTTP reads never holds up a step).
    fn windows(&self) -> Result<Vec<Window>, PagerError> {
        let mut windows = self.config.windows.clone();
        windows.extend(self.store.pager_windows()?.into_iter().map(|w| Window {
            sections: w.window.sections,
            starts: w.window.starts,
            ends: w.window.ends,
        }));
        Ok(windows)
    }

    /// Refuses an email link's action when the incident reopened after the link was issued in
    /// `episode` (`None`: not a link; the API token and the pages act on the incident as it is).
    fn check_episode(&self, id: &str, episode: Option<u32>) -> Result<(), ActionError> {
        match (episode, self.book.get(id)) {
            (Some(e), Some(i)) if i.reopened != e => Err(ActionError::Reopened {
                id: id.to_owned(),
                reopened: i.reopened,
            }),
            _ => Ok(()),
        }
    }

    /// Takes the pager over on becoming leader (issue 17): the book is read again from the store,
    /// exactly as a restart reads it (the same incident IDs; the L2 and L3 deadlines from the
    /// persisted timestamps), each open incident gets a `takeover` entry on its timeline, saved
    /// through the store's fence (set before this is called), and the sender is woken for the
    /// outbox's unsent emails. `node` is this replica, `from` the previous leader when known.
    /// Nothing changes when the store refuses: the takeover is tried again.
    pub fn take_over(
        &mut self,
        node: &str,
        from: Option<&str>,
        now: Timestamp,
    ) -> Result<(), PagerError> {
        let taken = self.take_over_store(node, from, now);
        match &taken {
            Ok(()) => self.health.answered(PAGER),
            Err(PagerError::Store(e)) => self.health.failed(PAGER, now, e, Unrecorded::Unknown),
        }
        taken
    }

    /// [`Pager::take_over`]'s reads and writes.
    fn take_over_store(
        &mut self,
        node: &str,
        from: Option<&str>,
        now: Timestamp,
    ) -> Result<(), PagerError> {
        let mut incidents = self.store.latest_per_section()?;
        let windows = self.windows()?;
        let msg = match from {
            Some(from) => Msg::new(MsgId::TlTakeover)
                .arg("node", node)
                .arg("from", from),
            None => Msg::new(MsgId::TlTakeoverUnknown).arg("node", node),
        };
        let mut noted = Vec::new();
        for incident in incidents
            .iter_mut()
            .filter(|i| i.state == IncidentState::Open)
        {
            incident.note(now, "takeover", msg.clone());
            noted.push(incident.clone());
        }
        if !noted.is_empty() {
            self.store.save_incidents(&noted)?;
        }
        let book = Book::new(incidents);
        self.book = book;
        self.windows = windows;
        self.sender.notify_one();
        tracing::info!(node, from = ?from, open = noted.len(), "took over the pager: incidents read from the store");
        Ok(())
    }

    /// A standby's read of the book the leader keeps (the store's latest incident per section), so
    /// that its incident gauges follow the leader's instead of showing the book as it last read it.
    /// Writes nothing; a leader's book is never replaced this way.
    pub fn follow(&mut self) -> Result<(), PagerError> {
        self.book = Book::new(self.store.latest_per_section()?);
        Ok(())
    }

    /// Acknowledges, records on the timeline and saves. `episode`: see [`Command::Ack`].
    pub fn ack(
        &mut self,
        id: &str,
        level: Option<Level>,
        episode: Option<u32>,
        by: &str,
        now: Timestamp,
    ) -> Result<Level, ActionError> {
        self.check_episode(id, episode)?;
        let mut book = self.book.clone();
        let level = book.ack(id, level, by, now)?;
        let incident = book.get(id).cloned().expect("acked");
        self.store
            .save_incidents(&[incident])
            .map_err(|e| ActionError::Unavailable(e.to_string()))?;
        self.book = book;
        Ok(level)
    }

    /// Resolves by hand and queues the resolved emails at once. `episode`: see [`Command::Resolve`].
    pub fn resolve(
        &mut self,
        id: &str,
        episode: Option<u32>,
        by: &str,
        note: &str,
        now: Timestamp,
    ) -> Result<(), ActionError> {
        self.check_episode(id, episode)?;
        let mut book = self.book.clone();
        book.resolve(id, by, note, now)?;
        let incident = book.get(id).cloned().expect("resolved");
        self.store
            .save_incidents(&[incident])
            .map_err(|e| ActionError::Unavailable(e.to_string()))?;
        self.book = book;
        self.step(now)
            .map_err(|e| ActionError::Unavailable(e.to_string()))
    }

    /// Carries out a command from the routes and answers it.
    pub fn command(&mut self, cmd: Command, now: Timestamp) {
        match cmd {
            Command::Ack {
                id,
                level,
                episode,
                by,
                reply,
            } => {
                let _ = reply.send(self.ack(&id, level, episode, &by, now));
            }
            Command::Resolve {
                id,
                episode,
                by,
                note,
                reply,
            } => {
                let _ = reply.send(self.resolve(&id, episode, &by, &note, now));
            }
        }
    }

    /// When the book next needs a step without new evidence.
    pub fn next_deadline(&self, now: Timestamp) -> Option<Timestamp> {
        self.book
            .next_deadline(now, &self.config.policy, &self.windows)
    }
}

impl Command {
    /// Answers the command with `error` without carrying it out (a standby's pager).
    pub fn refuse(self, error: ActionError) {
        match self {
            Self::Ack { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Self::Resolve { reply, .. } => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

/// A request to the task that owns the pager.
#[derive(Debug)]
pub enum Command {
    Ack {
        id: String,
        level: Option<Level>,
        /// An email link's episode ([`Claims::episode`](crate::email::token::Claims::episode)): the
        /// ack is refused when the incident reopened since. `None` for the API token and the pages.
        episode: Option<u32>,
        by: String,
        reply: oneshot::Sender<Result<Level, ActionError>>,
    },
    Resolve {
        id: String,
        /// As for [`Command::Ack`].
        episode: Option<u32>,
        by: String,
        note: String,
        reply: oneshot::Sender<Result<(), ActionError>>,
    },
}

/// The handle the HTTP routes act through (`crate::http::actions`): reads go to the store, changes
/// to the pager's task as [`Command`]s.
#[derive(Debug, Clone)]
pub struct PagerHandle {
    pub store: Arc<Store>,
    pub commands: mpsc::Sender<Command>,
}
