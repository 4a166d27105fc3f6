//! Checks who is told and how: `[escalation]` and its levels, `[[maintenance]]` windows, `[smtp]`
//! (the transport the emails go out by) and `[heartbeat]`. Knows nothing of the probes' sections.
//!
//! Like every check, each function looks at every key before it gives up on a section (the `?`s
//! come last), so `check-config` lists all the problems in one round.

use lettre::message::Mailbox;

use super::{Checker, HTTP, ca_file, parse_url};
use crate::config::raw::RawLevel;
use crate::config::window::{WindowTimes, check_times};
use crate::config::{
    EmailTransport, EscalationConfig, HeartbeatConfig, LevelConfig, MaintenanceWindow, SmtpConfig,
    SmtpServer, StoreConfig, TlsMode,
};

/// `[escalation]`: the three levels' recipients (each at least one address), L2's delay, L3's
/// critical time, the reminder and ack clocks, the hourly email budget and the links' lifetime.
/// `None` when any of them is wrong (the problems say which).
pub(super) fn check_escalation(
    c: &mut Checker<'_>,
    raw: &crate::config::raw::RawEscalation,
) -> Option<EscalationConfig> {
    let l1 = c.mailboxes("escalation.l1.to", &raw.l1.to);
    let l2 = c.mailboxes("escalation.l2.to", &raw.l2.to);
    let l3 = c.mailboxes("escalation.l3.to", &raw.l3.to);
    // The three levels share one raw shape, so decoding accepts `after` and `critical_for` on any
    // of them; only one level reads each.
    reject_level_keys(c, "l1", &raw.l1, true, true);
    reject_level_keys(c, "l2", &raw.l2, false, true);
    reject_level_keys(c, "l3", &raw.l3, true, false);
    let l2_after = match raw.l2.after.as_deref() {
        Some(text) => c.duration("escalation.l2.after", text),
        None => {
            c.problem("escalation.l2.after", "is required (the runbook says 30m)");
            None
        }
    };
    let reopen_within = c.duration("escalation.reopen_within", &raw.reopen_within);
    let repeat_interval = c.duration("escalation.repeat_interval", &raw.repeat_interval);
    let ack_timeout = c.duration("escalation.ack_timeout", &raw.ack_timeout);
    let link_ttl = c.duration("escalation.link_ttl", &raw.link_ttl);
    // Positive: a budget of 0 would hold back even an incident's first page.
    let max_emails = c.check(
        "escalation.max_emails_per_hour",
        u32::try_from(raw.max_emails_per_hour)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{} must be a positive count", raw.max_emails_per_hour)),
    );
    let l3_critical_for = match raw.l3.critical_for.as_deref() {
        Some(text) => c.duration("escalation.l3.critical_for", text),
        None => {
            c.problem(
                "escalation.l3.critical_for",
                "is required (the runbook says 1h)",
            );
            None
        }
    };
    Some(EscalationConfig {
        l1: LevelConfig { to: l1 },
        l2: LevelConfig { to: l2 },
        l3: LevelConfig { to: l3 },
        l2_after: l2_after?,
        l3_critical_for: l3_critical_for?,
        reopen_within: reopen_within?,
        repeat_interval: repeat_interval?,
        ack_timeout: ack_timeout?,
        ack_stops_escalation: raw.ack_stops_escalation,
        max_emails_per_hour: max_emails?,
        l1_only_sections: raw.l1_only_sections.clone(),
        link_ttl: link_ttl?,
    })
}

/// `[heartbeat]`: the URL (inline or from a file), its interval and timeout.
/// `Some(None)`: valid, no heartbeat configured.
pub(super) fn check_heartbeat(
    c: &mut Checker<'_>,
    raw: crate::config::raw::RawHeartbeat,
) -> Option<Option<HeartbeatConfig>> {
    // The times are checked even without a URL: a bad value in a file is a mistake worth saying
    // before the day someone sets the URL.
    let times = c.interval_timeout("heartbeat", &raw.interval, &raw.timeout);
    let url = c.secret("heartbeat.url", raw.url, raw.url_file)?;
    let Some(url) = url else { return Some(None) };
    // Checked without echoing the URL: it usually holds the check's secret.
    if parse_url(url.expose(), HTTP).is_err() {
        c.problem(
            "heartbeat.url",
            "is not an http(s) URL (the value is not shown: it may hold a secret)",
        );
        return None;
    }
    let (interval, timeout) = times?;
    Some(Some(HeartbeatConfig {
        url,
        interval,
        timeout,
    }))
}

/// `[[maintenance]]`: each window's times and length. A wrong window is left out of the list, but
/// its problem fails the whole configuration, so a partial list is never used. Unlike the API's,
/// a configured window may start any time ahead: it is edited by people, not sent by a client.
pub(super) fn check_maintenance(
    c: &mut Checker<'_>,
    raw: &[crate::config::raw::RawWindow],
) -> Vec<MaintenanceWindow> {
    let mut out = Vec::new();
    for (i, w) in raw.iter().enumerate() {
        let key = format!("maintenance[{i}]");
        let times = WindowTimes {
            starts: Some(&w.starts),
            ends: Some(&w.ends),
            duration: None,
        };
        let (starts, ends) = match check_times(times, None) {
            Ok(both) => both,
            Err(problems) => {
                for p in problems.all() {
                    let (field, text) = p.configured();
                    c.problem(&format!("{key}.{field}"), text);
                }
                continue;
            }
        };
        out.push(MaintenanceWindow {
            sections: w.sections.clone(),
            starts,
            ends,
            reason: w.reason.clone(),
        });
    }
    out
}

/// `after` is only L2's and `critical_for` only L3's; naming them elsewhere is a mistake worth saying.
fn reject_level_keys(
    c: &mut Checker<'_>,
    level: &str,
    raw: &RawLevel,
    no_after: bool,
    no_critical_for: bool,
) {
    if no_after && raw.after.is_some() {
        c.problem(
            &format!("escalation.{level}.after"),
            "only escalation.l2 has a delay `after`",
        );
    }
    if no_critical_for && raw.critical_for.is_some() {
        c.problem(
            &format!("escalation.{level}.critical_for"),
            "only escalation.l3 has `critical_for`",
        );
    }
}

/// `[smtp]`: the sender's address, and the transport: an SMTP server (TLS mode, port, timeout,
/// credentials, optional private CA), or `.eml` files in the store's outbox directory when no
/// `host` is set (nothing leaves the machine; each email is a file to read).
/// `store` is `None` when `[store]` is wrong: then the file transport has no directory, and its
/// problem is already said.
pub(super) fn check_smtp(
    c: &mut Checker<'_>,
    raw: crate::config::raw::RawSmtp,
    store: Option<&StoreConfig>,
) -> Option<SmtpConfig> {
    let from = c.check(
        "smtp.from",
        raw.from
            .parse::<Mailbox>()
            .map_err(|e| format!("{:?} is not an email address: {e}", raw.from)),
    );
    let tls = c.check(
        "smtp.tls",
        match raw.tls.as_str() {
            "none" => Ok(TlsMode::None),
            "starttls" => Ok(TlsMode::Starttls),
            "tls" => Ok(TlsMode::Tls),
            other => Err(format!(
                "unknown TLS mode {other:?}; expected none, starttls or tls"
            )),
        },
    );
    let port = c.check(
        "smtp.port",
        u16::try_from(raw.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{} is not a TCP port (1-65535)", raw.port)),
    );
    let timeout = c.duration("smtp.timeout", &raw.timeout);
    let has_password_file = raw.password_file.is_some();
    // `Some(None)`: no password given; `None`: given empty, or its file unreadable or empty (a
    // problem says which).
    let password = c.secret("smtp.password", raw.password, raw.password_file);
    // Both or neither: a user without a password (or the reverse) is a half-written section that
    // would fail only at the first page, and the problem is blamed on the layer that set the one.
    let credentials = match (raw.username, password) {
        (Some(user), Some(Some(pass))) => Some(Some((user, pass))),
        (None, Some(Some(_))) => {
            let set = if has_password_file {
                "smtp.password_file"
            } else {
                "smtp.password"
            };
            c.problem_because(
                "smtp.username",
                set,
                "is required when smtp.password is set",
            );
            None
        }
        (Some(_), Some(None)) => {
            c.problem_because(
                "smtp.password",
                "smtp.username",
                "is required when smtp.username is set (or smtp.password_file)",
            );
            None
        }
        // Neither: a relay that takes mail without logging in (a local one, or by IP).
        (None, Some(None)) => Some(None),
        // The password is empty or its file unreadable: its own problem says so.
        (_, None) => None,
    };
    let ca_file = match raw.ca_file {
        None => Some(None),
        Some(text) => ca_file(
            c,
            "smtp.ca_file",
            &text,
            tls != Some(TlsMode::None),
            "is only used with smtp.tls = \"starttls\" or \"tls\"",
        )
        .map(Some),
    };
    // Port, TLS, credentials and timeout are checked above even without a host, like every key;
    // only the SMTP transport uses them.
    let transport = match raw.host {
        None => Some(EmailTransport::Files {
            dir: store?.outbox_dir(),
        }),
        // A `/` or a space means a URL or a typo (`smtp://mail…`), not a host name.
        Some(host) if host.trim().is_empty() || host.contains(['/', ' ']) => {
            c.problem("smtp.host", format!("{host:?} is not a host name"));
            None
        }
        Some(host) => Some(EmailTransport::Smtp(SmtpServer {
            host,
            port: port?,
            tls: tls?,
            credentials: credentials?,
            timeout: timeout?,
            ca_file: ca_file?,
        })),
    };
    Some(SmtpConfig {
        transport: transport?,
        from: from?,
    })
}
