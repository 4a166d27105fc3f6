//! Incidents and escalation: the runbook's §7 as a pure state machine over the engine's sections.

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
