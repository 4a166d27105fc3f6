//! The tracing subscriber of the binary: text or JSON lines on stderr, level from `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Crates held at `info` whatever `RUST_LOG` says, because their debug output quotes what they receive
/// whole: bollard logs every Docker Engine answer, and `docker inspect`'s holds the container's
/// environment, `JWT_SECRET` included. So no log level prints a secret (tests/it/leak.rs).
const CAPPED: &[&str] = &["bollard=info"];

/// Installs the global subscriber. Called once, by `main`; library code only emits events.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = CAPPED.iter().fold(filter, |f, d| {
        f.add_directive(d.parse().expect("a valid directive"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}
