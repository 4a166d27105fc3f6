//! [`Wanted`]: what a reader (the runbook) reads of the catalogue, by name and label set, and the
//! thresholds its rules fire above, so a probe reads nothing costly that no condition looks at.
//!
//! It holds what the reader told it: it does not know the runbook's format, the catalogue's kinds,
//! or what any probe does with the answer.

use std::collections::HashMap;

use super::{Labels, SUBJECT_LABELS};

/// The observations a reader (the runbook) can use: catalogue names, each with the label sets its
/// conditions narrow it to. A probe asks it before reading something costly per instance (the Docker
/// probe's memory stats and logs of each container), so a value nothing reads is not fetched.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// Every observation is wanted (no reader known: tests, one-off tools).
    everything: bool,
    /// By catalogue name, the label sets of the conditions over it.
    by_name: HashMap<String, Vec<Labels>>,
    /// By catalogue name, the numbers its rules fire above (`p95 > 3`): a probe that reads a
    /// histogram checks that its buckets can tell them.
    thresholds: HashMap<String, Vec<f64>>,
}

impl Wanted {
    /// Every observation of every instance.
    pub fn everything() -> Self {
        Self {
            everything: true,
            by_name: HashMap::new(),
            thresholds: HashMap::new(),
        }
    }

    /// Records that a condition reads `name` narrowed to `labels`.
    pub fn add(&mut self, name: &str, labels: &Labels) {
        self.by_name
            .entry(name.to_owned())
            .or_default()
            .push(labels.clone());
    }

    /// Records that a rule fires when `name` rises above `value`.
    pub fn add_threshold(&mut self, name: &str, value: f64) {
        let list = self.thresholds.entry(name.to_owned()).or_default();
        if !list.contains(&value) {
            list.push(value);
            list.sort_by(f64::total_cmp);
        }
    }

    /// The numbers rules fire above on `name`, ascending (empty when no rule compares it so).
    pub fn thresholds(&self, name: &str) -> &[f64] {
        self.thresholds.get(name).map_or(&[], Vec::as_slice)
    }

    /// True when some condition over `name` can read the instance about `label = value` (`label`
    /// one of [`SUBJECT_LABELS`]): one that narrows `label` to `value`, or narrows no subject at all
    /// (it reads every instance). A condition on a `role` does not read a `container` instance.
    pub fn wants(&self, name: &str, label: &str, value: &str) -> bool {
        let reads = |l: &Labels| match l.get(label) {
            Some(v) => v == value,
            None => !SUBJECT_LABELS.iter().any(|s| l.contains_key(*s)),
        };
        self.everything
            || self
                .by_name
                .get(name)
                .is_some_and(|sets| sets.iter().any(reads))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_reads_the_instances_of_its_subject_only() {
        let labels = |pairs: &[(&str, &str)]| -> Labels {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let mut w = Wanted::default();
        w.add(
            "docker.log_lines_per_minute",
            &labels(&[("role", "backend"), ("pattern", "error")]),
        );
        w.add("docker.memory_ratio", &labels(&[("container", "db")]));
        w.add("docker.running", &labels(&[]));
        assert!(w.wants("docker.log_lines_per_minute", "role", "backend"));
        assert!(!w.wants("docker.log_lines_per_minute", "role", "redis"));
        assert!(
            !w.wants("docker.log_lines_per_minute", "container", "backend"),
            "a role condition reads no container instance"
        );
        assert!(w.wants("docker.memory_ratio", "container", "db"));
        assert!(!w.wants("docker.memory_ratio", "role", "db"));
        assert!(
            w.wants("docker.running", "container", "x") && w.wants("docker.running", "role", "y")
        );
        assert!(!w.wants("docker.memory_bytes", "role", "backend"));
    }
}
