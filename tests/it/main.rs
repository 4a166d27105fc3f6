//! The integration tests, one binary so the suites link once (see STYLE.md).

mod support;

mod config;
mod daemon;
mod image;
mod peers;
mod probe_docker;
