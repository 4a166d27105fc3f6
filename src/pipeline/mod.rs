//! The two shells of the pipeline, around the pure engine and the pure incident book; both run on
//! the watch loop's task, so one task owns the book.
//!
//! - [`watch`] turns probe reports into evaluations: it owns the evidence table, applies each report
//!   and evaluates the runbook at each report and each rule deadline on the clock.
//! - [`pager`] turns evaluations into incidents and rendered emails committed to the store in one
//!   transaction, then wakes the sender; acks and resolves reach the book through it.
//! - [`charts`] reads the firing symptoms' history from Prometheus for the emails the pager is about
//!   to render and for the status pages, within a short budget, as blind charts when it cannot.

pub mod charts;
pub mod pager;
pub mod watch;
