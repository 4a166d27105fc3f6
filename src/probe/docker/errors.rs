//! Engine errors: one Engine call under its time limit ([`engine_call`]), and bollard's errors as the
//! probe's [`Failure`]s, classified by kind ([`engine_failure`], [`timeout_failure`]). A body the
//! Engine sent is never quoted: a JSON error can hold part of an inspect answer, and so environment
//! values.
//!
//! It does not know which call failed for what, or what a failure does to a poll.

use std::future::Future;
use std::time::Duration;

use bollard::errors::Error as EngineError;

use crate::locale::{Msg, MsgId};
use crate::observe::{Failure, FailureKind};
use crate::probe::http::error_chain;

/// Runs one Engine call under `limit`. bollard's own timeout is the client's (whole seconds, the
/// whole poll's `timeout`); a call gets less (the probe's `call_limit`), so one slow call cannot eat
/// the poll.
pub(super) async fn engine_call<T>(
    limit: Duration,
    what: &str,
    call: impl Future<Output = Result<T, EngineError>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(engine_failure(&e).of(what)),
        Err(_) => Err(timeout_failure(what, limit)),
    }
}

/// `what` got no answer within `limit`; also used by the calls that match on bollard's error
/// themselves (inspect, stats), outside [`engine_call`].
pub(super) fn timeout_failure(what: &str, limit: Duration) -> Failure {
    Failure::said(
        FailureKind::Timeout,
        Msg::new(MsgId::EngineNoAnswerWithin)
            .arg("what", what)
            .duration("limit", limit),
    )
}

/// A bollard error as a failure. Bodies are never quoted: a JSON error can hold part of an inspect
/// answer, and so environment values.
pub(super) fn engine_failure(e: &EngineError) -> Failure {
    use FailureKind::{Connect, Malformed, Other, Status, Timeout};
    match e {
        EngineError::SocketNotFoundError(path) => {
            Failure::said(Connect, Msg::new(MsgId::NoDockerSocket).arg("path", path))
        }
        EngineError::HyperLegacyError { .. }
        | EngineError::HyperResponseError { .. }
        | EngineError::IOError { .. } => Failure::new(Connect, error_chain(e)),
        EngineError::RequestTimeoutError => Failure::said(Timeout, Msg::new(MsgId::EngineNoAnswer)),
        // The Engine's error message (`No such container: …`) is its own words, not a payload of
        // the container's; still cut short, as any peer's text quoted in a failure.
        EngineError::DockerResponseServerError {
            status_code,
            message,
        } => {
            let message: String = message.chars().take(200).collect();
            Failure::said(
                Status,
                Msg::new(MsgId::HttpSaid)
                    .arg("status", status_code)
                    .peer("said", message),
            )
        }
        EngineError::JsonDataError { column, .. } => Failure::said(
            Malformed,
            Msg::new(MsgId::DockerBadJsonAt).arg("column", column),
        ),
        EngineError::JsonSerdeError { .. }
        | EngineError::StrParseError { .. }
        | EngineError::APIVersionParseError {} => {
            Failure::said(Malformed, Msg::new(MsgId::DockerBadAnswer))
        }
        EngineError::DockerStreamError { .. } => {
            Failure::said(Status, Msg::new(MsgId::DockerStreamBroken))
        }
        other => Failure::new(Other, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_never_quote_a_payload() {
        let e = EngineError::JsonDataError {
            message: "\"Env\":[\"JWT_SECRET=s3cr3t\"".into(),
            column: 42,
        };
        let f = engine_failure(&e);
        assert_eq!(f.kind, FailureKind::Malformed);
        assert!(!f.detail.contains("s3cr3t"), "{}", f.detail);
        let f = engine_failure(&EngineError::SocketNotFoundError("/x.sock".into()));
        assert_eq!(f.kind, FailureKind::Connect);
    }
}
