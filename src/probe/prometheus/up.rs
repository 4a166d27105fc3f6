//! `up` of the backend's scrape job, and the blind spot naming the jobs Prometheus has when that job
//! is missing. It sends no query and reads nothing but the `up` answer.

use std::collections::BTreeSet;

use super::MAX_SERIES;
use super::answer::{Answer, label};
use crate::locale::{Msg, MsgId};
use crate::observe::{Key, Observation, Outcome};

/// `up` of the backend's job; a missing job is a blind spot naming the jobs Prometheus has.
///
/// The query is plain `up` (every target), not `up{job=…}`, so that a missing job can be answered
/// with the jobs Prometheus does have: the usual fix is a misspelt `prometheus.backend_job`.
pub(super) fn backend_up(out: &mut Vec<Observation>, job: &str, up: Answer) {
    // The stand-in instance when there is no real one to report: a condition over every instance
    // then reads this key's no data or unknown (with its reason) rather than "never observed".
    let star = || Key::new("prometheus.backend_up").with("instance", "*");
    match up {
        Answer::Samples(s) => {
            let mine: Vec<_> = s
                .iter()
                .filter(|(l, _)| label(l, "job") == Some(job))
                .take(MAX_SERIES)
                .collect();
            if mine.is_empty() {
                let jobs: BTreeSet<&str> = s.iter().filter_map(|(l, _)| label(l, "job")).collect();
                // Ten names are enough to spot a typo; the text goes into logs and pages.
                let jobs = if jobs.is_empty() {
                    "none".to_owned()
                } else {
                    jobs.into_iter().take(10).collect::<Vec<_>>().join(", ")
                };
                out.push(Observation::new(
                    star(),
                    Outcome::NoData(
                        Msg::new(MsgId::NoTargetForJob).arg("job", format_args!("{job:?}")),
                    ),
                ));
                out.push(Observation::said(
                    Key::new("prometheus.blind_spot")
                        .with("obs", "prometheus.backend_up")
                        .with("reason", "no_job"),
                    Msg::new(MsgId::FixNoJob)
                        .arg("job", format_args!("{job:?}"))
                        .arg("jobs", jobs),
                ));
            }
            // `up` is 1 or 0; anything else below 1 (never sent by Prometheus) is read as down.
            for (labels, v) in mine {
                let instance = label(labels, "instance").unwrap_or("?").to_owned();
                let key = Key::new("prometheus.backend_up").with("instance", instance);
                out.push(Observation::boolean(key, *v >= 1.0));
            }
        }
        Answer::Refused(f) | Answer::SourceDown(f) => {
            out.push(Observation::new(star(), Outcome::Unknown(f)));
        }
    }
}
