//! Rotating a long-lived secret (the link key): a fresh value replaces the current one, and the old
//! one may be kept, with the time until which it is still accepted, under `<name>.previous`.
//!
//! The previous value is stored as 8 bytes (the Unix milliseconds until which it is accepted,
//! big-endian) followed by the secret.

use super::sql::vals;
use super::{Result, Store, StoreError, kv_value, put_kv};
use crate::clock::Timestamp;

/// The kv name of `name`'s previous value.
fn previous_name(name: &str) -> String {
    format!("{name}.previous")
}

impl Store {
    /// Replaces the secret under `name` by 32 fresh random bytes, in one transaction. With
    /// `keep_until`, the value it replaces is kept as the previous one, accepted until then; without,
    /// it is gone at once (a leaked secret), and so is any previous one kept by an earlier rotation.
    ///
    /// One previous value at most: a second rotation replaces it, so links signed two keys ago
    /// stop working then, whatever their expiry. Rotating a name never created keeps nothing and
    /// creates it.
    pub fn rotate_secret(&self, name: &str, keep_until: Option<Timestamp>) -> Result<()> {
        use ring::rand::SecureRandom;
        let mut fresh = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut fresh)
            .map_err(|_| StoreError::Random)?;
        let previous = previous_name(name);
        self.write(|db| {
            match (kv_value(db, name)?, keep_until) {
                (Some(old), Some(until)) => {
                    let mut value = until.as_unix_millis().to_be_bytes().to_vec();
                    value.extend_from_slice(&old);
                    put_kv(db, &previous, &value)?;
                }
                _ => {
                    db.execute("DELETE FROM kv WHERE name = ?1", vals![&previous])?;
                }
            }
            put_kv(db, name, &fresh)
        })
    }

    /// The value `name` had before its latest rotation, and until when it is accepted; `None` when
    /// it was not kept (or the stored value is unreadable).
    ///
    /// It does not compare that time with now: the link keys it is loaded into refuse a link
    /// verified by it past then. Read on the writer's connection, like every `kv` value.
    pub fn previous_secret(&self, name: &str) -> Result<Option<(Vec<u8>, Timestamp)>> {
        let Some(value) = self.value(&previous_name(name))? else {
            return Ok(None);
        };
        let Some((until, secret)) = value.split_first_chunk::<8>() else {
            return Ok(None);
        };
        if secret.is_empty() {
            return Ok(None);
        }
        let until = Timestamp::from_unix_millis(i64::from_be_bytes(*until));
        Ok(Some((secret.to_vec(), until)))
    }
}
