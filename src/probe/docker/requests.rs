//! The request metric: [`EngineRequests`], the `harven_watchdog_docker_api_requests_total` counter of
//! the probe's requests to the Docker Engine, by call.
//!
//! It counts what it is told: it does not know when or why a call is made.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// The label of [`EngineRequests`]: which Engine endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CallLabel {
    call: &'static str,
}

/// Requests to the Docker Engine by call (`version`, `list`, `inspect`, `stats`, `logs`, `events`):
/// the `harven_watchdog_docker_api_requests_total` counter, what watching costs the Engine. Clones
/// share their counts.
#[derive(Debug, Clone, Default)]
pub struct EngineRequests(Family<CallLabel, Counter>);

impl EngineRequests {
    /// The counter family, to register.
    pub fn family(&self) -> Family<CallLabel, Counter> {
        self.0.clone()
    }

    pub(super) fn count(&self, call: &'static str) {
        self.0.get_or_create(&CallLabel { call }).inc();
    }

    /// Requests made so far for `call`.
    pub fn get(&self, call: &'static str) -> u64 {
        self.0.get_or_create(&CallLabel { call }).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_their_counts_by_call() {
        let requests = EngineRequests::default();
        let registered = requests.clone();
        requests.count("inspect");
        requests.count("inspect");
        registered.count("list");
        assert_eq!((registered.get("inspect"), requests.get("list")), (2, 1));
        assert_eq!(requests.get("logs"), 0);
    }
}
