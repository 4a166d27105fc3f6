//! Which containers a poll watches, and which of them it inspects: the one list call (every configured
//! name, the compose project's and the roles' containers, each with the roles its names and labels
//! match), a list entry's parts that do not move with time ([`Listed`]), and the reconcile's choice
//! ([`DockerProbe::to_inspect`]).
//!
//! It does not know what an inspection says or what is observed of a container: it only decides who
//! is looked at again.

use std::collections::{HashMap, HashSet};

use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;

use super::errors::engine_call;
use super::{COMPOSE_PROJECT_LABEL, DockerProbe, roles};
use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, FailureKind};

/// Most containers the Engine may list (all of them, running or not) for the probe to read it: far
/// above a stack's, and what bounds the list answer. More is a `too_large` failure.
pub const MAX_CONTAINERS: usize = 4096;

/// A container is inspected again at least every this many polls even when nothing about it changed
/// (the reconcile), a share of the containers per poll so that the cost is spread out.
const RECONCILE_POLLS: usize = 20;

/// Containers re-inspected per poll at least, however few are watched: a typical stack is inspected
/// whole at every poll, as cheap as a smaller share.
const RECONCILE_MIN: usize = 4;

/// What the list endpoint says of a container, cheaply, for all of them in one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Listed {
    pub(super) id: String,
    /// `running`, `exited`, `restarting`, `paused`, …
    state: String,
    /// The status text with its duration cut out (`Up _ (healthy)`, `Exited (137) _ ago`): health and
    /// exit code, the parts that do not move with time.
    status: String,
    /// Running for at least this many seconds (from `Up 5 minutes`): less than the previous poll saw
    /// is a restart, even one no event told of.
    pub(super) up_for: Option<u64>,
}

impl Listed {
    /// True when this entry may say something an inspection made at `before` does not.
    fn changed_since(&self, before: &Listed) -> bool {
        self.id != before.id
            || self.state != before.state
            || self.status != before.status
            || matches!((self.up_for, before.up_for), (Some(now), Some(then)) if now < then)
    }
}

/// Splits a list entry's status text (`Up 5 minutes (healthy)`, `Exited (137) 2 hours ago`) into the
/// part that does not move with time, the duration replaced by `_`, and that duration in seconds.
/// Docker writes it with `units.HumanDuration`, whose buckets this maps to increasing numbers, so a
/// shorter text duration is a shorter real one. Text it does not recognise is kept whole.
fn split_status(status: &str) -> (String, Option<u64>) {
    let words: Vec<&str> = status.split(' ').collect();
    for i in 0..words.len() {
        let (len, secs) = match words[i..] {
            ["Less", "than", "a", "second", ..] => (4, 0),
            ["About", "a", "minute", ..] => (3, 60),
            ["About", "an", "hour", ..] => (3, 3600),
            [n, unit, ..] => match (n.parse::<u64>(), unit_seconds(unit)) {
                (Ok(n), Some(u)) => (2, n.saturating_mul(u)),
                _ => continue,
            },
            _ => continue,
        };
        let stable = [&words[..i], &["_"], &words[i + len..]].concat().join(" ");
        return (stable, Some(secs));
    }
    (status.to_owned(), None)
}

fn unit_seconds(unit: &str) -> Option<u64> {
    Some(match unit.strip_suffix('s').unwrap_or(unit) {
        "second" => 1,
        "minute" => 60,
        "hour" => 3_600,
        "day" => 86_400,
        "week" => 604_800,
        "month" => 2_592_000,
        "year" => 31_536_000,
        _ => return None,
    })
}

/// One watched container this poll: a configured name, a container of the compose project, or a
/// container of a role.
#[derive(Debug)]
pub(super) struct Watched {
    pub(super) name: String,
    pub(super) configured: bool,
    /// `None`: the Engine has no container by that name.
    pub(super) listed: Option<Listed>,
    /// The roles it belongs to (indices into `config.roles`), from its list entry.
    pub(super) roles: Vec<usize>,
}

impl DockerProbe {
    /// The watched containers, from one list call: every configured name (in order), then the
    /// compose project's and the roles' other containers by name, each with the roles it belongs to
    /// (matched on the entry's names and labels: no call per container). The list is not filtered
    /// by the Engine: its name filter is a regular expression per name, and a label filter cannot be
    /// or-ed with names.
    pub(super) async fn list(&self, docker: &Docker) -> Result<Vec<Watched>, Failure> {
        // One more than the probe reads: an answer that long says there are too many.
        let limit = i32::try_from(self.max_containers.saturating_add(1)).unwrap_or(i32::MAX);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .limit(limit)
            .build();
        self.requests.count("list");
        let listed = engine_call(
            self.call_limit(),
            "list",
            docker.list_containers(Some(options)),
        )
        .await?;
        if listed.len() > self.max_containers {
            return Err(Failure::said(
                FailureKind::TooLarge,
                Msg::new(MsgId::DockerTooManyContainers).arg("max", self.max_containers),
            ));
        }
        let configured: HashSet<&str> = self.config.containers.iter().map(String::as_str).collect();
        let mut by_name: HashMap<&str, (Listed, Vec<usize>)> = HashMap::new();
        let mut extra: Vec<String> = Vec::new();
        for c in &listed {
            let names = c.names.iter().flatten().map(|n| n.trim_start_matches('/'));
            let ours = names.clone().find(|n| configured.contains(n));
            let labels = c.labels.as_ref();
            let in_project = self
                .config
                .compose_project
                .as_ref()
                .is_some_and(|p| labels.and_then(|l| l.get(COMPOSE_PROJECT_LABEL)) == Some(p));
            let roles: Vec<usize> = (self.config.roles.iter().enumerate())
                .filter(|(_, r)| roles::matches(r, names.clone(), labels))
                .map(|(i, _)| i)
                .collect();
            let name = match (ours, in_project || !roles.is_empty()) {
                (Some(n), _) => n,
                (None, true) => match names.clone().next().filter(|n| !n.is_empty()) {
                    Some(n) => {
                        extra.push(n.to_owned());
                        n
                    }
                    None => continue,
                },
                (None, false) => continue,
            };
            let (status, up_for) = split_status(c.status.as_deref().unwrap_or_default());
            let state = c.state.map(|s| s.to_string()).unwrap_or_default();
            let up_for = up_for.filter(|_| status.starts_with("Up "));
            let listed = Listed {
                id: c.id.clone().unwrap_or_default(),
                state,
                status,
                up_for,
            };
            by_name.insert(name, (listed, roles));
        }
        extra.sort();
        extra.dedup();
        let configured = self.config.containers.iter().map(|n| (n, true));
        let extra = extra.iter().map(|n| (n, false));
        Ok(configured
            .chain(extra)
            .map(|(name, configured)| {
                let (listed, roles) = by_name.remove(name.as_str()).unzip();
                Watched {
                    name: name.clone(),
                    configured,
                    listed,
                    roles: roles.unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Which containers this poll inspects: those first seen, changed in the list, named by an event
    /// since their inspection, or whose inspection failed; then, for the reconcile, the least
    /// recently inspected others, `max(n / RECONCILE_POLLS, RECONCILE_MIN)` of them.
    pub(super) fn to_inspect(&self, watched: &[Watched], events: &HashSet<String>) -> Vec<bool> {
        let mut inspect: Vec<bool> = watched
            .iter()
            .map(|w| match (&w.listed, self.tracked.get(&w.name)) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(l), Some(t)) => {
                    l.changed_since(&t.listed) || events.contains(&l.id) || t.inspected == 0
                }
            })
            .collect();
        let budget = watched.len().div_ceil(RECONCILE_POLLS).max(RECONCILE_MIN);
        let mut rest: Vec<(u64, usize)> = watched
            .iter()
            .enumerate()
            .filter(|(i, w)| !inspect[*i] && w.listed.is_some())
            .filter_map(|(i, w)| Some((self.tracked.get(&w.name)?.inspected, i)))
            .collect();
        rest.sort_unstable();
        for (_, i) in rest.into_iter().take(budget) {
            inspect[i] = true;
        }
        inspect
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::probe::docker::container::Tracked;
    use crate::probe::docker::fixtures::{config, snap, t, watched};

    #[test]
    fn list_statuses_keep_what_does_not_move_with_time() {
        let cases = [
            ("Up 5 minutes (healthy)", "Up _ (healthy)", Some(300)),
            ("Up Less than a second", "Up _", Some(0)),
            (
                "Up About an hour (health: starting)",
                "Up _ (health: starting)",
                Some(3_600),
            ),
            (
                "Exited (137) 2 hours ago",
                "Exited (137) _ ago",
                Some(7_200),
            ),
            (
                "Restarting (1) 1 second ago",
                "Restarting (1) _ ago",
                Some(1),
            ),
            ("Created", "Created", None),
            ("", "", None),
        ];
        for (text, stable, secs) in cases {
            assert_eq!(split_status(text), (stable.to_owned(), secs), "{text}");
        }
        // Docker's buckets map to increasing numbers: a later text never reads as shorter.
        let ladder = [
            "Less than a second",
            "59 seconds",
            "About a minute",
            "59 minutes",
            "About an hour",
            "47 hours",
            "2 days",
            "13 days",
            "2 weeks",
            "8 weeks",
            "2 months",
            "23 months",
            "2 years",
        ];
        let secs: Vec<u64> = ladder
            .iter()
            .map(|d| split_status(&format!("Up {d}")).1.expect(d))
            .collect();
        assert!(secs.windows(2).all(|w| w[0] < w[1]), "{secs:?}");
    }

    #[test]
    fn a_list_entry_changed_when_its_state_health_or_run_did() {
        let listed = |id: &str, status: &str| {
            let (status, up_for) = split_status(status);
            Listed {
                id: id.to_owned(),
                state: "running".to_owned(),
                status,
                up_for,
            }
        };
        let before = listed("c1", "Up 5 minutes (healthy)");
        assert!(!listed("c1", "Up 6 minutes (healthy)").changed_since(&before));
        assert!(listed("c1", "Up 6 minutes (unhealthy)").changed_since(&before));
        assert!(
            listed("c1", "Up 3 seconds (healthy)").changed_since(&before),
            "restarted"
        );
        assert!(
            listed("c2", "Up 6 minutes (healthy)").changed_since(&before),
            "recreated"
        );
        let mut exited = listed("c1", "Exited (1) 2 seconds ago");
        exited.state = "exited".to_owned();
        assert!(exited.changed_since(&before));
    }

    #[test]
    fn the_reconcile_inspects_changed_containers_and_a_bounded_share_of_the_rest() {
        let mut probe = DockerProbe::new(config(&[]));
        let listed = Listed {
            id: "c".to_owned(),
            state: "running".to_owned(),
            status: "Up _".to_owned(),
            up_for: Some(600),
        };
        let watched: Vec<Watched> = (0..100)
            .map(|i| Watched {
                listed: Some(Listed {
                    id: format!("c{i}"),
                    ..listed.clone()
                }),
                ..watched(&format!("app{i}"), &[])
            })
            .collect();
        // First sight: every container.
        assert!(
            probe
                .to_inspect(&watched, &HashSet::new())
                .iter()
                .all(|i| *i)
        );
        for (n, w) in watched.iter().enumerate() {
            let mut t = Tracked::first(&snap(&format!("c{n}"), 0, 100), 0, t(0), 0, None);
            t.listed = w.listed.clone().expect("listed");
            // app0 was inspected longest ago, app99 most recently.
            t.inspected = 1 + n as u64;
            probe.tracked.insert(w.name.clone(), t);
        }
        let chosen = |inspect: Vec<bool>| -> Vec<usize> {
            inspect
                .iter()
                .enumerate()
                .filter_map(|(i, b)| b.then_some(i))
                .collect()
        };
        assert_eq!(
            chosen(probe.to_inspect(&watched, &HashSet::new())),
            (0..5).collect::<Vec<_>>(),
            "the oldest twentieth"
        );
        // An event, a health change and a failed inspection each add their container.
        let mut changed = watched;
        changed[50].listed.as_mut().expect("listed").status = "Up _ (unhealthy)".to_owned();
        probe.tracked.get_mut("app70").expect("tracked").inspected = 0;
        let events = HashSet::from(["c60".to_owned()]);
        assert_eq!(
            chosen(probe.to_inspect(&changed, &events)),
            vec![0, 1, 2, 3, 4, 50, 60, 70]
        );
        // A container the list does not have is not inspected (it is reported missing).
        changed[0].listed = None;
        assert!(!probe.to_inspect(&changed, &events)[0]);
    }
}
