//! The integration tests, one binary so the suites link once (see STYLE.md).

mod support;

mod api;
mod chaos;
mod config;
mod daemon;
mod diagnose;
mod email;
mod escalation;
mod image;
mod monitoring;
mod notify;
mod peers;
mod probe_docker;
mod probe_http;
mod probe_prometheus;
mod probe_redis;
mod restart;
mod scenarios;
mod store;
mod web;
