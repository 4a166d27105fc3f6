//! [`ActionError`]: why an action a person asked for (an ack, a resolve, a maintenance window made
//! or ended) was not taken. One type from the pure book up: the book knows an unknown or resolved
//! incident; the pager's task adds a link of an earlier episode and an unavailable store; the HTTP
//! actions service (`crate::http::actions`) adds the input it refuses and the windows' own cases.
//! Each surface (the JSON API, the status pages, the `/act/` links) renders it in its own words.

use super::model::Level;
use crate::clock::Timestamp;
use crate::locale::Msg;

/// Why an action was not taken. Nothing changed when one is returned.
///
/// The `Display` texts are the JSON API's `error` messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// No incident with this ID. The book holds each section's newest incident only; the actions
    /// service tells an older one, which is over, as [`ActionError::AlreadyResolved`].
    #[error("no incident {0}")]
    UnknownIncident(String),
    #[error("incident {0} is already resolved")]
    AlreadyResolved(String),
    /// An email link issued in an earlier episode: the incident reopened (`reopened` times) since,
    /// so the link no longer acts (its reader was not told about this episode).
    #[error(
        "incident {id} reopened (reopening #{reopened}) after this email link was sent; use the newest email's link"
    )]
    Reopened { id: String, reopened: u32 },
    /// An email link acknowledges for the level its email went to (`link`); `asked` named another.
    #[error("this email link token acknowledges for {link}")]
    OtherLevel { link: Level, asked: Level },
    /// The input was refused: `field` is the one at fault, `words` say why, naming it, in the
    /// reader's language (their English is the API's `error`; the ID is its `code`).
    #[error("{words}")]
    Invalid { field: &'static str, words: Msg },
    /// No maintenance window with this ID (as the API names windows: a number, or `config-N`).
    #[error("no maintenance window {0}")]
    UnknownWindow(String),
    /// A window of the configuration (`[[maintenance]]`): only the configuration ends it.
    #[error(
        "maintenance window {0} comes from the configuration file ([[maintenance]]): remove it there and reload to end it"
    )]
    ConfiguredWindow(String),
    /// The window had already ended, at `ended_at`.
    #[error("maintenance window {id} is already over (it ended at {ended_at})")]
    WindowOver { id: String, ended_at: Timestamp },
    /// The store or the pager's task could not be reached; worth trying again.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// This replica is a standby (issue 17): only the leader acts. `leader` names it when known.
    #[error("this replica is a standby; the leader ({}) acts", leader.as_deref().unwrap_or("unknown"))]
    Standby { leader: Option<String> },
}

impl ActionError {
    /// An [`ActionError::Invalid`] about `field`.
    pub fn invalid(field: &'static str, words: impl Into<Msg>) -> Self {
        Self::Invalid {
            field,
            words: words.into(),
        }
    }
}
