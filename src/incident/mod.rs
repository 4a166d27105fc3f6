//! Incidents and escalation: the runbook's §7 as a pure state machine over the engine's sections.
//!
//! `model` is the data the store keeps and the emails describe (every time in it is a wall-clock
//! [`Timestamp`](crate::clock::Timestamp), so every deadline survives a restart); `book` is the
//! state machine over it. Neither does I/O or reads a clock: the pager (`crate::pipeline::pager`) owns the
//! book, passes `now`, and commits what changed.

pub mod book;
mod error;
pub mod model;

pub use book::{Book, Policy, StepOutcome, Window};
pub use error::ActionError;
pub use model::{
    Ack, CauseSnapshot, DiagnosisSnapshot, EvidenceSnapshot, Incident, IncidentState, Level, Page,
    PageEvent, TimelineEntry,
};

#[cfg(test)]
mod tests;
