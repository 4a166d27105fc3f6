//! The email links' tokens as credentials: [`authorize`] checks one for exactly the incident and the
//! action a request names. The `/act/{token}` pages and the JSON API's ack and resolve routes both
//! take them; a token is not guessable (HMAC-SHA256, [`crate::email::token`]), so a refused one
//! spends no failure budget.

use crate::clock::Timestamp;
use crate::email::token::{self, Action, Claims, LinkKeys, TokenError};

/// The claims of a link, for a JSON API that accepts email tokens: verifies `token` and checks it
/// allows `action` on `incident` (a valid token for another incident is refused).
pub fn authorize(
    key: &[u8],
    token: &str,
    incident: &str,
    action: Action,
    now: Timestamp,
) -> Result<Claims, TokenError> {
    let claims = token::verify(key, token, now)?;
    claims.authorize(incident, action)?;
    Ok(claims)
}

/// As [`authorize`], with the watchdog's `keys`: the current one, or the previous one until its
/// links have expired. What the JSON API's ack and resolve routes check a link token with.
pub fn authorize_with(
    keys: &LinkKeys,
    token: &str,
    incident: &str,
    action: Action,
    now: Timestamp,
) -> Result<Claims, TokenError> {
    let claims = keys.verify(token, now)?;
    claims.authorize(incident, action)?;
    Ok(claims)
}
