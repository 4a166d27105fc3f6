//! The integration tests, one binary so the suites link once.

mod support;

mod api;
mod auth;
mod blind;
mod browser;
mod chaos;
mod chart;
mod config;
mod daemon;
mod deploy;
mod diagnose;
mod email;
mod escalation;
mod fast_path;
mod fastapi;
mod hardening;
mod image;
mod layout;
mod leak;
mod monitoring;
mod notify;
mod one_language;
mod peers;
mod probe_docker;
mod probe_docker_evidence;
mod probe_docker_roles;
mod probe_fastapi;
mod probe_http;
mod probe_prometheus;
mod probe_redis;
mod reload;
mod restart;
mod scenarios;
mod store;
mod web;
