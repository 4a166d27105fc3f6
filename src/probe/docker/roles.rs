//! Roles: the runbook's `role = "backend"`, over whichever containers are the backend now.
//!
//! A role ([`RoleConfig`]) is matched on each list entry's names and labels ([`matches`]), so finding
//! a role's containers (its *replicas*) costs no Engine call beyond the poll's one list. The replicas
//! keep their own `docker.*{container}` observations; [`observe`] adds, for each role, the same
//! observations labelled with the `role` only, folded over its replicas. A rule over
//! `docker.running{role="backend"}` keeps one label set, and so its timers, whether the backend is
//! `harven-backend`, `proj-backend-1` recreated under a new ID, or three replicas after a scale-out.
//!
//! | observation | over the replicas |
//! |---|---|
//! | `running`, `env_present{var}` | true when every replica's is (false names no replica: see below) |
//! | `oom_killed`, `recent_deploy` | true when any replica's is (or the role's image changed lately) |
//! | `health` | the worst: `unhealthy`, then `starting`, `healthy`, `none` |
//! | `restarts`, `restart_count`, `log_lines_per_minute{pattern}` | summed |
//! | `memory_ratio`, `memory_growth_bytes_per_hour`, `memory_bytes`, `exit_code` | the highest |
//! | `uptime_seconds`, `memory_limit_bytes` | the lowest (the youngest replica, the tightest limit) |
//! | `image` | the most recently deployed replica's |
//! | `previous_image` | the role's image before it last changed (a replica's, until one is seen) |
//!
//! A folded observation keeps the note of a replica whose value it took (the window a count is
//! over, why a replica is a recent deploy).
//!
//! A replica that could not be read leaves a sum or an extreme unknown, but a decisive value stands
//! (one replica not running, OOM-killed or unhealthy settles it); replicas with no data (a first log
//! count, no limit) are left out, and the role has no data only when every replica has none. A role
//! that matches no container has `docker.role_containers` = 0 and every other observation no data,
//! saying which containers it looks for.
//!
//! A label cannot name the replica without resetting rule timers whenever it changes, so two texts
//! do: `docker.replicas` lists every replica, the notable ones first with what is notable about each
//! (`proj-backend-2: OOM-killed, 1 restart; proj-backend-1; proj-backend-3`), and
//! `docker.worst_replica` is the one to look at first, for the runbook's commands
//! (`docker logs {{ container }}`).

use std::cmp::Reverse;
use std::collections::HashMap;

use super::time::Nanos;
use super::{COMPOSE_PROJECT_LABEL, COMPOSE_SERVICE_LABEL, Reads};
use crate::clock::Timestamp;
use crate::config::{DockerConfig, RoleConfig};
use crate::locale::{Msg, MsgId};
use crate::observe::{Key, Observation, Outcome, Value};

/// Replicas named in `docker.replicas`, at most; the others are counted.
const MAX_LISTED: usize = 20;

/// A replica using at least this share of its memory limit is notable in `docker.replicas`.
const NOTABLE_MEMORY_RATIO: f64 = 0.8;

/// The label besides `role` that tells a role's instances of one observation apart (`pattern` of
/// `docker.log_lines_per_minute`, `var` of `docker.env_present`), if any.
type Extra<'a> = Option<(&'static str, &'a str)>;

/// True when a container with these `names` and `labels` (a list entry's, or an event's attributes,
/// which carry the same labels) belongs to `role`.
pub(super) fn matches<'a>(
    role: &RoleConfig,
    mut names: impl Iterator<Item = &'a str>,
    labels: Option<&HashMap<String, String>>,
) -> bool {
    let label = |k: &str| labels.and_then(|l| l.get(k));
    let by_service = role.compose_service.as_ref().is_some_and(|s| {
        label(COMPOSE_SERVICE_LABEL) == Some(s)
            && (role.compose_project.as_ref())
                .is_none_or(|p| label(COMPOSE_PROJECT_LABEL) == Some(p))
    });
    by_service
        || names.any(|n| {
            role.names.iter().any(|r| r == n) || role.patterns.iter().any(|p| p.regex.is_match(n))
        })
}

/// One container of a role this poll.
pub(super) struct Member<'a> {
    pub name: &'a str,
    /// Its observations of this poll (`docker.*{container=name,…}`).
    pub observations: &'a [Observation],
    /// Engine time of its latest deploy seen (creation or image change): the newest replica's
    /// image is the role's.
    pub deployed_at: Option<Nanos>,
}

impl Member<'_> {
    /// Its outcome of `name` (with the extra label, `pattern` or `var`, when given). A key it lacks
    /// is unknown with its inspection's failure (only `docker.present` is observed then).
    fn outcome(&self, name: &str, extra: Extra<'_>) -> Outcome {
        let found = self.observations.iter().find(|o| {
            o.key.name == name
                && extra.is_none_or(|(k, v)| o.key.labels.get(k).map(String::as_str) == Some(v))
        });
        match (found, self.present()) {
            (Some(o), _) => o.outcome.clone(),
            (None, Some(Outcome::Unknown(f))) => Outcome::Unknown(f.clone()),
            (None, _) => Outcome::NoData(Msg::new(MsgId::NotReported)),
        }
    }

    /// The note of its observation `name` (with the extra label), if it has one.
    fn note(&self, name: &str, extra: Extra<'_>) -> Option<&Msg> {
        self.observations
            .iter()
            .find(|o| {
                o.key.name == name
                    && extra.is_none_or(|(k, v)| o.key.labels.get(k).map(String::as_str) == Some(v))
            })
            .and_then(|o| o.note.as_ref())
    }

    fn present(&self) -> Option<&Outcome> {
        let o = self
            .observations
            .iter()
            .find(|o| o.key.name == "docker.present");
        o.map(|o| &o.outcome)
    }

    /// Removed between the list and its inspection: no longer a replica.
    fn gone(&self) -> bool {
        self.observations.is_empty()
            || matches!(self.present(), Some(Outcome::Value(Value::Bool(false))))
    }

    fn value(&self, name: &str, extra: Extra<'_>) -> Option<Value> {
        match self.outcome(name, extra) {
            Outcome::Value(v) => Some(v),
            _ => None,
        }
    }

    fn number(&self, name: &str, extra: Extra<'_>) -> Option<f64> {
        match self.value(name, extra) {
            Some(Value::Number(n)) => Some(n),
            _ => None,
        }
    }
}

/// What the previous polls saw of one role.
#[derive(Debug, Default)]
pub(super) struct RoleState {
    /// The role's image at the latest poll that read it.
    image: Option<String>,
    /// The latest change of the role's image: the image before, and when it was seen. A change is
    /// seen even when the new image comes with a new container name (a replica replaced by another).
    change: Option<(String, Timestamp)>,
}

/// What a role's observations depend on besides its replicas.
pub(super) struct Facts<'a> {
    pub config: &'a DockerConfig,
    /// What the runbook reads of the role (its replicas' memory stats and logs were read for it).
    pub reads: Reads,
    pub now: Timestamp,
}

/// How one observation folds over the replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fold {
    /// True when every replica's is.
    Every,
    /// True when any replica's is.
    Any,
    /// The total over the replicas (counts and rates: the role's, whatever its replicas number).
    Sum,
    /// The least (the youngest uptime, the tightest limit).
    Min,
    /// The greatest (the replica nearest trouble).
    Max,
    /// The worst health.
    Worst,
}

/// Appends `role`'s observations this poll to `out`: `members` are its containers, by name.
pub(super) fn observe(
    role: &RoleConfig,
    members: &[Member<'_>],
    facts: &Facts<'_>,
    state: &mut RoleState,
    out: &mut Vec<Observation>,
) {
    let members: Vec<&Member<'_>> = members.iter().filter(|m| !m.gone()).collect();
    let key = |n: &'static str, extra: Extra<'_>| {
        let k = Key::new(n).with("role", role.name.as_str());
        match extra {
            Some((label, value)) => k.with(label, value),
            None => k,
        }
    };
    let count = Observation::number(key("docker.role_containers", None), members.len() as f64);
    out.push(if members.is_empty() {
        // What the doctor says of a role that blinds the rules reading it: what it looked for, and
        // where to say what to look for.
        count.with_note(
            Msg::new(MsgId::NoRoleMatchFix)
                .arg("role", &role.name)
                .msg("how", role.looks_for()),
        )
    } else {
        count
    });
    let folds = folds(facts);
    if members.is_empty() {
        let why = Msg::new(MsgId::NoRoleMatch)
            .arg("role", &role.name)
            .msg("how", role.looks_for());
        let texts = [
            "docker.image",
            "docker.previous_image",
            "docker.recent_deploy",
            "docker.replicas",
            "docker.worst_replica",
        ];
        let all = folds
            .iter()
            .map(|(n, extra, _)| (*n, *extra))
            .chain(texts.map(|n| (n, None)));
        for (n, extra) in all {
            out.push(Observation::new(
                key(n, extra),
                Outcome::NoData(why.clone()),
            ));
        }
        return;
    }
    for (n, extra, how) in &folds {
        let parts: Vec<_> = members
            .iter()
            .map(|m| (m.name, m.outcome(n, *extra)))
            .collect();
        let folded = fold(*how, &parts);
        let note = folded_note(&members, n, *extra, &folded);
        let o = Observation::new(key(n, *extra), folded);
        out.push(match note {
            Some(note) => o.with_note(note),
            None => o,
        });
    }
    let image = deploys(&members, facts, state, &key, out);
    let replicas = replicas(&members, facts, image.as_deref());
    out.push(Observation::text(key("docker.replicas", None), replicas.0));
    out.push(Observation::text(
        key("docker.worst_replica", None),
        replicas.1,
    ));
}

/// The note of a folded observation: that of a replica whose outcome is the folded one (the replica
/// that decided it), else the first replica's note; prefixed with the replica's name when the role
/// has several.
fn folded_note(
    members: &[&Member<'_>],
    name: &str,
    extra: Extra<'_>,
    folded: &Outcome,
) -> Option<Msg> {
    let deciding = members
        .iter()
        .find(|m| m.outcome(name, extra) == *folded && m.note(name, extra).is_some())
        .or_else(|| members.iter().find(|m| m.note(name, extra).is_some()))?;
    let note = deciding.note(name, extra)?;
    Some(if members.len() > 1 && folded_by_one(name) {
        Msg::new(MsgId::ReplicaSays)
            .arg("name", deciding.name)
            .msg("note", note.clone())
    } else {
        note.clone()
    })
}

/// True when one replica's value decides the role's (a flag or an extreme), so its note is about
/// that replica; a sum's note (a window) is the same for every replica.
fn folded_by_one(name: &str) -> bool {
    !matches!(
        name,
        "docker.restarts" | "docker.restart_count" | "docker.log_lines_per_minute"
    )
}

/// The observations folded by [`fold`], with their extra label and how they fold.
fn folds<'a>(facts: &Facts<'a>) -> Vec<(&'static str, Extra<'a>, Fold)> {
    // Each fold reads as the runbook means the role: running only if every replica runs, the
    // worst health, the highest exit code, restarts and log lines as the role's totals,
    // OOM-killed if any replica was, the youngest uptime (a replica just restarted shows), the
    // tightest memory limit and the fullest replica's memory.
    let mut folds = vec![
        ("docker.running", None, Fold::Every),
        ("docker.health", None, Fold::Worst),
        ("docker.exit_code", None, Fold::Max),
        ("docker.restart_count", None, Fold::Sum),
        ("docker.restarts", None, Fold::Sum),
        ("docker.oom_killed", None, Fold::Any),
        ("docker.uptime_seconds", None, Fold::Min),
        ("docker.memory_limit_bytes", None, Fold::Min),
    ];
    if facts.reads.memory {
        folds.extend([
            ("docker.memory_bytes", None, Fold::Max),
            ("docker.memory_ratio", None, Fold::Max),
            ("docker.memory_growth_bytes_per_hour", None, Fold::Max),
        ]);
    }
    for var in &facts.config.env_vars {
        folds.push((
            "docker.env_present",
            Some(("var", var.as_str())),
            Fold::Every,
        ));
    }
    if facts.reads.logs {
        for p in &facts.config.log_patterns {
            folds.push((
                "docker.log_lines_per_minute",
                Some(("pattern", p.name.as_str())),
                Fold::Sum,
            ));
        }
    }
    folds
}

/// One observation over the replicas (`parts`: each replica's name and outcome).
fn fold(how: Fold, parts: &[(&str, Outcome)]) -> Outcome {
    let values: Vec<&Value> = parts
        .iter()
        .filter_map(|(_, o)| match o {
            Outcome::Value(v) => Some(v),
            _ => None,
        })
        .collect();
    // A decisive value stands whatever else could not be read.
    // A value that settles the fold whatever the other replicas say (one replica down, one OOM
    // kill, one unhealthy) wins even over an unknown one; otherwise an unknown replica makes the
    // role unknown (a sum or a minimum without it would be a guess), and no data comes last.
    let decisive = match how {
        Fold::Every => values.iter().find(|v| ***v == Value::Bool(false)),
        Fold::Any => values.iter().find(|v| ***v == Value::Bool(true)),
        Fold::Worst => values.iter().find(|v| health_rank(v) == 3),
        Fold::Sum | Fold::Min | Fold::Max => None,
    };
    if let Some(v) = decisive {
        return Outcome::Value((*v).clone());
    }
    let unknown = parts.iter().find_map(|(name, o)| match o {
        Outcome::Unknown(f) => Some((name, f)),
        _ => None,
    });
    if let Some((name, f)) = unknown {
        return Outcome::Unknown(f.clone().of(name));
    }
    if values.is_empty() {
        let why = parts.iter().find_map(|(name, o)| match o {
            Outcome::NoData(why) => Some(
                Msg::new(MsgId::ReplicaSays)
                    .arg("name", name)
                    .msg("note", why.clone()),
            ),
            _ => None,
        });
        return Outcome::NoData(why.unwrap_or_else(|| Msg::new(MsgId::NoReplica)));
    }
    let numbers = values.iter().filter_map(|v| match v {
        Value::Number(n) => Some(*n),
        _ => None,
    });
    match how {
        Fold::Every => Outcome::Value(Value::Bool(true)),
        Fold::Any => Outcome::Value(Value::Bool(false)),
        Fold::Sum => Outcome::number(numbers.sum()),
        Fold::Min => Outcome::number(numbers.fold(f64::INFINITY, f64::min)),
        Fold::Max => Outcome::number(numbers.fold(f64::NEG_INFINITY, f64::max)),
        Fold::Worst => {
            let worst = values.iter().max_by_key(|v| health_rank(v));
            Outcome::Value(worst.map_or(Value::Text("none".to_owned()), |v| (*v).clone()))
        }
    }
}

/// How bad a health text is: `unhealthy` 3, `starting` 2, `healthy` 1, `none` (no check) 0.
fn health_rank(v: &Value) -> u8 {
    match v {
        Value::Text(t) if t == "unhealthy" => 3,
        Value::Text(t) if t == "starting" => 2,
        Value::Text(t) if t == "healthy" => 1,
        _ => 0,
    }
}

/// `docker.image`, `docker.previous_image` and `docker.recent_deploy` of the role, from its most
/// recently deployed replica and the role's own image history; returns the role's image.
fn deploys(
    members: &[&Member<'_>],
    facts: &Facts<'_>,
    state: &mut RoleState,
    key: &dyn Fn(&'static str, Extra<'_>) -> Key,
    out: &mut Vec<Observation>,
) -> Option<String> {
    // `max_by_key` keeps the last of equals: reversed, the first by name wins a tie.
    let newest = members.iter().rev().max_by_key(|m| m.deployed_at);
    let image = newest.map_or_else(
        || Outcome::NoData(Msg::new(MsgId::NoReplica)),
        |m| m.outcome("docker.image", None),
    );
    let mut current = None;
    if let Outcome::Value(Value::Text(now)) = &image {
        if let Some(before) = state.image.as_ref().filter(|before| *before != now) {
            state.change = Some((before.clone(), facts.now));
        }
        state.image = Some(now.clone());
        current = Some(now.clone());
    }
    out.push(Observation::new(key("docker.image", None), image));
    let previous = match (&state.change, newest) {
        (Some((before, _)), _) => Outcome::Value(Value::Text(before.clone())),
        (None, Some(m)) => m.outcome("docker.previous_image", None),
        (None, None) => Outcome::NoData(Msg::new(MsgId::NoImageChange)),
    };
    out.push(Observation::new(
        key("docker.previous_image", None),
        previous,
    ));
    let changed_lately = state
        .change
        .as_ref()
        .is_some_and(|(_, at)| facts.now.saturating_since(*at) <= facts.config.deploy_window);
    let recent = match (&state.change, changed_lately) {
        (Some((before, at)), true) => {
            let ago = std::time::Duration::from_secs(facts.now.saturating_since(*at).as_secs());
            Observation::boolean(key("docker.recent_deploy", None), true).with_note(
                Msg::new(MsgId::RoleImageChanged)
                    .arg("before", before)
                    .duration("ago", ago),
            )
        }
        _ => {
            let parts: Vec<_> = members
                .iter()
                .map(|m| (m.name, m.outcome("docker.recent_deploy", None)))
                .collect();
            let folded = fold(Fold::Any, &parts);
            let note = folded_note(members, "docker.recent_deploy", None, &folded);
            let o = Observation::new(key("docker.recent_deploy", None), folded);
            match note {
                Some(note) => o.with_note(note),
                None => o,
            }
        }
    };
    out.push(recent);
    current
}

/// What makes a replica worth looking at first, most telling first (compared in this order).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    down: bool,
    oom_killed: bool,
    unhealthy: bool,
    env_missing: bool,
    unread: bool,
    restarts: u64,
    log_lines: u64,
    memory_permille: u64,
}

/// One replica as `docker.replicas` shows it.
struct Replica<'a> {
    name: &'a str,
    rank: Rank,
    notes: Vec<String>,
}

/// `docker.replicas` (every replica, the notable ones first, worst first, each with what is notable)
/// and `docker.worst_replica` (the worst, else the first by name).
fn replicas(members: &[&Member<'_>], facts: &Facts<'_>, image: Option<&str>) -> (String, String) {
    let mut all: Vec<Replica<'_>> = members.iter().map(|m| replica(m, facts, image)).collect();
    let worst = all
        .iter()
        .min_by(|a, b| b.rank.cmp(&a.rank).then(a.name.cmp(b.name)))
        .map_or_else(String::new, |r| r.name.to_owned());
    all.sort_by_key(|r| (r.notes.is_empty(), Reverse(r.rank), r.name));
    let mut parts: Vec<String> = all
        .iter()
        .take(MAX_LISTED)
        .map(|r| match r.notes.as_slice() {
            [] => r.name.to_owned(),
            notes => format!("{}: {}", r.name, notes.join(", ")),
        })
        .collect();
    if all.len() > MAX_LISTED {
        parts.push(format!("… and {} more", all.len() - MAX_LISTED));
    }
    (parts.join("; "), worst)
}

fn replica<'a>(m: &Member<'a>, facts: &Facts<'_>, image: Option<&str>) -> Replica<'a> {
    let mut rank = Rank::default();
    let mut notes = Vec::new();
    let is = |name: &str, want: Value| m.value(name, None) == Some(want);
    if let Some(Outcome::Unknown(f)) = m.present() {
        rank.unread = true;
        notes.push(format!("not read ({f})"));
    }
    if is("docker.running", Value::Bool(false)) {
        rank.down = true;
        match m.number("docker.exit_code", None) {
            Some(code) if code != 0.0 => notes.push(format!("not running (exit {code})")),
            _ => notes.push("not running".to_owned()),
        }
    }
    if is("docker.oom_killed", Value::Bool(true)) {
        rank.oom_killed = true;
        notes.push("OOM-killed".to_owned());
    }
    match m.value("docker.health", None) {
        Some(h) if health_rank(&h) == 3 => {
            rank.unhealthy = true;
            notes.push("unhealthy".to_owned());
        }
        Some(h) if health_rank(&h) == 2 => notes.push("health starting".to_owned()),
        _ => {}
    }
    if let Some(n) = m.number("docker.restarts", None).filter(|n| *n > 0.0) {
        rank.restarts = n as u64;
        notes.push(format!(
            "{n} restart{} lately",
            if n == 1.0 { "" } else { "s" }
        ));
    }
    for var in &facts.config.env_vars {
        if m.value("docker.env_present", Some(("var", var))) == Some(Value::Bool(false)) {
            rank.env_missing = true;
            notes.push(format!("{var} missing"));
        }
    }
    if let Some(ratio) = m.number("docker.memory_ratio", None) {
        rank.memory_permille = (ratio * 1000.0) as u64;
        if ratio >= NOTABLE_MEMORY_RATIO {
            notes.push(format!("memory at {:.0}% of its limit", ratio * 100.0));
        }
    }
    if is("docker.recent_deploy", Value::Bool(true)) {
        notes.push("recently deployed".to_owned());
    }
    if let Some(Value::Text(own)) = m.value("docker.image", None)
        && image.is_some_and(|role| role != own)
    {
        notes.push(format!("image {own}"));
    }
    let mut lines = Vec::new();
    for p in &facts.config.log_patterns {
        if let Some(n) = m
            .number("docker.log_lines_per_minute", Some(("pattern", &p.name)))
            .filter(|n| *n > 0.0)
        {
            rank.log_lines += n.ceil() as u64;
            lines.push(format!("{} {}", p.name, crate::observe::Value::Number(n)));
        }
    }
    if !lines.is_empty() {
        notes.push(format!("log lines per minute {}", lines.join(", ")));
    }
    Replica {
        name: m.name,
        rank,
        notes,
    }
}

#[cfg(test)]
mod tests;
