//! Peer strings in an email.
//!
//! What a peer chose — a status page's description, a Prometheus label value such as a handler
//! name, a container or image name, a note or failure detail quoting an answer — must not pass for
//! the watchdog's own words or links, above all in the text part, where the ack/resolve links are
//! plain lines. Every reading is shown through [`quoted`]: one line (control characters, line and
//! paragraph separators and bidirectional overrides become spaces), at most [`MAX_PEER`]
//! characters, between `«` and `»` (any guillemet inside becomes `‹` `›`, so it cannot close the
//! quote). Lines of the watchdog's that embed readings (the symptom's key with its label values,
//! which [`Key`](crate::observe::Key)'s `Display` already quotes and escapes; timeline entries;
//! commands with a filled-in value) go through [`one_line`]. The HTML part escapes everything
//! besides (its templates are `*.html`).

/// Most characters of an evidence line's reading, which joins every instance it read (a blind spot
/// per rule, each with its fix): a few peer strings' worth.
pub(super) const MAX_OBSERVED: usize = 4 * MAX_PEER;

/// Most characters of a watchdog line that embeds peer strings (a key with its labels, a timeline
/// entry, a command).
pub(super) const MAX_LINE: usize = 1500;

pub(super) use crate::locale::{MAX_PEER, one_line, quoted, quoted_max};
