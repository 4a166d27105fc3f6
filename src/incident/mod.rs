//! Incidents and escalation: the runbook's §7 as a pure state machine over the engine's sections.

pub mod book;
pub mod model;

pub use book::{ActionError, Book, Policy, StepOutcome, Window};
pub use model::{
    Ack, CauseSnapshot, DiagnosisSnapshot, EvidenceSnapshot, Incident, IncidentState, Level, Page,
    PageEvent, TimelineEntry,
};

#[cfg(test)]
mod tests;
