//! The integration tests, one binary so the suites link once (see STYLE.md).

mod config;
mod daemon;
mod image;
