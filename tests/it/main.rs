//! The integration-test binary of harven-watchdog.
//!
//! `support` holds the real peers (Prometheus, Redis, an SMTP server, the Docker Engine and a
//! simulated Harven backend) that the tests talk to; `peers` checks those helpers themselves.

mod peers;
mod support;
