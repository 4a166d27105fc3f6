//! Incidents and escalation: the runbook's §7 as a pure state machine over the engine's sections.

pub mod model;

pub use model::{Ack, Incident, IncidentState, Level, Page, PageEvent, TimelineEntry};
