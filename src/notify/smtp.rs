//! [`SmtpTransport`]: lettre's async SMTP client, built from `[smtp]`, sending the stored bytes as is.
//!
//! TLS never degrades: `starttls` is lettre's `Tls::Required` (a server that does not offer STARTTLS
//! fails the send before any mail command), `tls` is implicit TLS (`Tls::Wrapper`), and only an
//! explicit `tls = "none"` talks plaintext. Certificates are checked against the system's roots plus
//! `smtp.ca_file` when set.

use std::time::Duration;

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::{Error as SmtpError, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{BuildError, SendError, SendErrorKind};
use crate::config::{SmtpServer, TlsMode};

/// Upper bound on one whole send, as a multiple of the configured timeout (which lettre applies to
/// each network read and write): connect, TLS, login, envelope, data.
const WHOLE_SEND_TIMEOUTS: u32 = 4;

/// Sends through one SMTP server. Cheap to share; connections are pooled (one at a time: the sender
/// sends in sequence) and a pooled connection is checked with `NOOP` before it is reused.
pub struct SmtpTransport {
    mailer: AsyncSmtpTransport<Tokio1Executor>,
    /// Every form in which the SMTP password could travel (as is, and base64-encoded by AUTH PLAIN
    /// and AUTH LOGIN); scrubbed from every error detail, whatever the server echoes back.
    secrets: Vec<String>,
    whole_send: Duration,
    endpoint: String,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl SmtpTransport {
    /// A transport for `server`. Reads `ca_file` and builds the TLS configuration now, so a broken CA
    /// file stops the daemon at start-up instead of failing every email. Call it inside a Tokio
    /// runtime: lettre's connection pool starts its idle-connection cleanup task here.
    pub fn new(server: &SmtpServer) -> Result<Self, BuildError> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&server.host)
            .port(server.port)
            .timeout(Some(server.timeout))
            .pool_config(
                PoolConfig::new()
                    .max_size(1)
                    .idle_timeout(Duration::from_secs(30)),
            );
        if server.tls != TlsMode::None {
            let mut params = TlsParameters::builder(server.host.clone());
            if let Some(path) = &server.ca_file {
                let pem = std::fs::read(path).map_err(|e| {
                    BuildError(format!("cannot read smtp.ca_file {}: {e}", path.display()))
                })?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| BuildError(format!("smtp.ca_file {}: {e}", path.display())))?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| BuildError(format!("cannot set up TLS for SMTP: {e}")))?;
            builder = builder.tls(match server.tls {
                TlsMode::Tls => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        let mut secrets = Vec::new();
        if let Some((user, password)) = &server.credentials {
            let password = password.expose();
            builder = builder.credentials(Credentials::new(user.clone(), password.to_owned()));
            secrets = secret_forms(user, password);
        }
        let mode = match server.tls {
            TlsMode::None => "plaintext",
            TlsMode::Starttls => "starttls",
            TlsMode::Tls => "tls",
        };
        Ok(Self {
            mailer: builder.build(),
            secrets,
            whole_send: server.timeout * WHOLE_SEND_TIMEOUTS,
            endpoint: format!("{}:{} ({mode})", server.host, server.port),
        })
    }

    /// `host:port (mode)`, for log lines.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub(super) async fn send(
        &self,
        from: &str,
        to: &[String],
        message: &[u8],
    ) -> Result<(), SendError> {
        let envelope = envelope(from, to)?;
        match tokio::time::timeout(self.whole_send, self.mailer.send_raw(&envelope, message)).await
        {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(e)) => Err(classify(&e, &self.secrets)),
            Err(_) => Err(SendError::new(
                SendErrorKind::Timeout,
                format!(
                    "{} did not finish the send within {}",
                    self.endpoint,
                    humantime::format_duration(self.whole_send)
                ),
            )),
        }
    }
}

/// The SMTP envelope. An address that does not parse can never be sent: a permanent failure.
fn envelope(from: &str, to: &[String]) -> Result<Envelope, SendError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        SendError::new(SendErrorKind::Permanent, format!("{what}: {e}"))
    };
    let from: Address = from
        .parse()
        .map_err(|e| bad(&format!("bad sender address {from:?}"), &e))?;
    let to = to
        .iter()
        .map(|a| {
            a.parse::<Address>()
                .map_err(|e| bad(&format!("bad recipient address {a:?}"), &e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Envelope::new(Some(from), to).map_err(|e| bad("bad envelope", &e))
}

/// What a lettre error means for the email: retry later, or give up and say why.
///
/// - a 4xx reply, a timeout, a refused or dropped connection: retry (the server or the network will
///   come back);
/// - a 5xx reply (a refused recipient, a rejected message, a refused login): give up;
/// - a TLS failure (certificate not trusted, STARTTLS not offered, implicit TLS against a plaintext
///   port): give up — it is the configuration, and a retry would only fail the same way.
fn classify(e: &SmtpError, secrets: &[String]) -> SendError {
    let detail = redact(&e.to_string(), secrets);
    let kind = if e.is_permanent() {
        SendErrorKind::Permanent
    } else if e.is_transient() {
        SendErrorKind::Transient
    } else if e.is_timeout() {
        SendErrorKind::Timeout
    } else if is_tls_failure(e) {
        SendErrorKind::Tls
    } else if e.is_client() {
        SendErrorKind::Config
    } else {
        SendErrorKind::Connection
    };
    SendError::new(kind, detail)
}

/// lettre reports certificate failures as connection errors (`is_tls()` is false for them): look for a
/// rustls error anywhere in the chain, including inside an `io::Error`.
fn is_tls_failure(e: &SmtpError) -> bool {
    if e.is_tls() || e.to_string().contains("STARTTLS") {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// The password as typed, and base64 as AUTH LOGIN (`password`) and AUTH PLAIN (`\0user\0password`)
/// send it.
fn secret_forms(user: &str, password: &str) -> Vec<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut forms = vec![
        password.to_owned(),
        b64.encode(password),
        b64.encode(format!("\0{user}\0{password}")),
    ];
    forms.retain(|f| !f.is_empty());
    // Longest first, so a form containing another is replaced whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms
}

/// `text` with every secret form replaced by `***`.
pub(super) fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_password_in_every_form_auth_sends_it() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let forms = secret_forms("watchdog", "hunter2-secret");
        let echoed = format!(
            "535 nope: {} / {} / hunter2-secret",
            b64.encode("\0watchdog\0hunter2-secret"),
            b64.encode("hunter2-secret")
        );
        let clean = redact(&echoed, &forms);
        assert_eq!(clean, "535 nope: *** / *** / ***");
    }

    #[test]
    fn envelope_refuses_bad_addresses_for_good() {
        let e = envelope("watchdog@harven.ai", &["not an address".to_owned()]).unwrap_err();
        assert!(!e.retryable);
        assert_eq!(e.kind, SendErrorKind::Permanent);
        assert!(envelope("watchdog@harven.ai", &["devops@harven.ai".to_owned()]).is_ok());
    }
}
