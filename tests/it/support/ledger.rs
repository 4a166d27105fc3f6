//! Reading the daemon's ledger (the store's outbox) against the mail the SMTP server received: the
//! proof, for the chaos, restart and soak tests, that every page was delivered and none twice.

use std::collections::BTreeMap;
use std::path::PathBuf;

use harven_watchdog::store::{EmailStatus, OutboxEntry, Store};

use super::smtp::ReceivedMail;

/// Every row of the ledger, of every incident in the store.
pub fn rows(store: &Store) -> Vec<OutboxEntry> {
    store
        .recent_incidents(100_000)
        .expect("read the incidents")
        .iter()
        .flat_map(|i| store.outbox_for(&i.id).expect("read the outbox"))
        .collect()
}

/// True when no email is pending or held.
pub fn drained(store: &Store) -> bool {
    store.outbox_depth().expect("outbox depth").total() == 0
}

/// Every row of the ledger is `sent` and reached the server exactly once (matched by `Message-ID`,
/// which is the page key), and the server received nothing outside the ledger. `when` names the
/// moment in the failure message.
pub fn assert_delivered_exactly_once(store: &Store, mail: &[ReceivedMail], when: &str) {
    let mut received: BTreeMap<&str, usize> = BTreeMap::new();
    for m in mail {
        *received
            .entry(m.header("Message-ID").expect("Message-ID"))
            .or_default() += 1;
    }
    let rows = rows(store);
    for row in &rows {
        assert_eq!(
            row.status,
            EmailStatus::Sent,
            "{when}: {} {:?}",
            row.key,
            row.last_error
        );
        let stored = ReceivedMail::parse(PathBuf::new(), &row.message);
        let id = stored.header("Message-ID").expect("stored Message-ID");
        assert_eq!(
            received.get(id).copied(),
            Some(1),
            "{when}: {} must be delivered exactly once",
            row.key
        );
    }
    assert_eq!(
        received.len(),
        rows.len(),
        "{when}: mail outside the ledger"
    );
}
