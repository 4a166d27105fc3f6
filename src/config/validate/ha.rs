//! `[ha]`: this replica's name and the timing of its lease (`crate::ha`).

use std::time::Duration;

use super::Checker;
use crate::config::raw::RawHa;
use crate::config::types::HaConfig;

/// The default lease: a dead leader is replaced within `lease + renew_every` = 25 s.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(20);
/// The shortest lease: a round trip to a database across hosts, a few times over.
pub const MIN_LEASE: Duration = Duration::from_secs(2);
/// The longest lease: a failover slower than this is no failover.
pub const MAX_LEASE: Duration = Duration::from_secs(600);
/// Longest `ha.node`, in characters.
pub const MAX_NODE: usize = 64;

/// Checks `[ha]`, filling in its defaults: the hostname, [`DEFAULT_LEASE`], a quarter of the lease.
pub(super) fn check_ha(c: &mut Checker<'_>, raw: RawHa) -> Option<HaConfig> {
    let configured = raw.node.is_some() || raw.lease.is_some() || raw.renew_every.is_some();
    let node = match raw.node {
        Some(text) => c.check("ha.node", check_node(&text)),
        None => Some(default_node()),
    };
    let lease = match raw.lease.as_deref() {
        Some(text) => c.duration("ha.lease", text).and_then(|lease| {
            let ok = (MIN_LEASE..=MAX_LEASE).contains(&lease);
            if !ok {
                c.problem(
                    "ha.lease",
                    format!(
                        "({}) must be between {} and {}",
                        humantime::format_duration(lease),
                        humantime::format_duration(MIN_LEASE),
                        humantime::format_duration(MAX_LEASE)
                    ),
                );
            }
            ok.then_some(lease)
        }),
        None => Some(DEFAULT_LEASE),
    };
    let renew_every = match raw.renew_every.as_deref() {
        Some(text) => c.duration("ha.renew_every", text),
        None => lease.map(|l| l / 4),
    };
    let (node, lease, renew_every) = (node?, lease?, renew_every?);
    if renew_every.is_zero() || renew_every > lease / 2 {
        c.problem_between(
            "ha.renew_every",
            "ha.lease",
            format!(
                "({}) must be more than 0 and at most half of ha.lease ({}), so that one failed \
                 renewal does not lose the lead",
                humantime::format_duration(renew_every),
                humantime::format_duration(lease)
            ),
        );
        return None;
    }
    Some(HaConfig {
        node,
        lease,
        renew_every,
        configured,
    })
}

/// A replica's name: 1 to [`MAX_NODE`] letters, digits, `.`, `_` or `-` (it shows on pages, in
/// `/readyz` and on the timeline, and must tell the replicas apart).
fn check_node(text: &str) -> Result<String, String> {
    let node = text.trim();
    if node.is_empty() {
        return Err("is empty; name this replica (default: the hostname)".to_owned());
    }
    if node.chars().count() > MAX_NODE || !node.chars().all(node_char) {
        return Err(format!(
            "{node:?} is not a replica name: at most {MAX_NODE} letters, digits, '.', '_' or '-'"
        ));
    }
    Ok(node.to_owned())
}

fn node_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// The hostname as a replica name (characters outside [`check_node`]'s set dropped), or `watchdog`.
fn default_node() -> String {
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = host
        .chars()
        .filter(|c| node_char(*c))
        .take(MAX_NODE)
        .collect();
    if name.is_empty() {
        "watchdog".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(pairs: &[(&str, &str)]) -> Result<HaConfig, Vec<(String, String)>> {
        let env = pairs
            .iter()
            .map(|(k, v)| (format!("HARVEN_WATCHDOG__HA__{k}"), (*v).to_owned()));
        Config::load_with_env(&[], env).map(|c| c.ha).map_err(|e| {
            e.problems
                .iter()
                .map(|p| (p.key.clone(), p.to_string()))
                .collect()
        })
    }

    /// Unset, `[ha]` is the hostname, 20 s and 5 s: a takeover within 25 s, and nothing said.
    #[test]
    fn the_defaults_take_over_within_30_seconds() {
        let ha = load(&[]).expect("defaults");
        assert_eq!((ha.lease, ha.renew_every), (secs(20), secs(5)));
        assert!(ha.lease + ha.renew_every <= secs(30));
        assert!(!ha.configured);
        assert!(check_node(&ha.node).is_ok(), "{}", ha.node);
        let ha = load(&[("NODE", "node-a"), ("LEASE", "8s")]).expect("valid");
        assert_eq!((ha.node.as_str(), ha.renew_every), ("node-a", secs(2)));
        assert!(ha.configured);
    }

    /// Each problem names its key.
    #[test]
    fn bad_values_are_refused_naming_the_key() {
        for (pairs, key) in [
            (&[("NODE", "node a")][..], "ha.node"),
            (&[("NODE", "  ")][..], "ha.node"),
            (&[("LEASE", "1s")][..], "ha.lease"),
            (&[("LEASE", "1h")][..], "ha.lease"),
            (&[("LEASE", "soon")][..], "ha.lease"),
            (&[("RENEW_EVERY", "15s")][..], "ha.renew_every"),
            (&[("RENEW_EVERY", "0s")][..], "ha.renew_every"),
        ] {
            let problems = load(pairs).expect_err("refused");
            assert!(
                problems.iter().any(|(k, _)| k == key),
                "{pairs:?}: {problems:?}"
            );
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }
}
