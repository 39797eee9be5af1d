//! The delivery worker: sends what the outbox holds through the channel, oldest
//! first, and on failure tries again later (the delay doubles from the configured
//! base up to one hour). It runs beside the request path and never blocks it.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use chrono::{TimeDelta, Utc};

use super::channel::Channel;
use crate::fhir::date::fhir_instant;
use crate::store::{Db, audit as stored};

/// How long the worker sleeps when nothing wakes it.
const POLL: Duration = Duration::from_millis(500);
const BATCH: i64 = 100;
const MAX_DELAY_MS: u64 = 3_600_000;
/// How long a claimed notification is left to the instance that claimed it.
const LEASE: TimeDelta = TimeDelta::minutes(5);

/// The delay before attempt `attempts + 1`.
pub fn retry_delay(base_ms: u64, attempts: i64) -> Duration {
    let factor = 1u64 << attempts.clamp(0, 20);
    Duration::from_millis(base_ms.saturating_mul(factor).min(MAX_DELAY_MS))
}

/// Starts the worker thread; it ends when every [`super::Wakeup`] is dropped.
pub fn start(db: Db, channel: Arc<dyn Channel>, retry_base_ms: u64, wakeups: mpsc::Receiver<()>) {
    thread::Builder::new()
        .name("notification-delivery".into())
        .spawn(move || {
            loop {
                match wakeups.recv_timeout(POLL) {
                    Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                while let Ok(()) = wakeups.try_recv() {}
                deliver_due(&db, channel.as_ref(), retry_base_ms);
            }
        })
        .expect("the notification delivery thread starts");
}

/// Sends every notification due now; returns how many were delivered.
pub fn deliver_due(db: &Db, channel: &dyn Channel, retry_base_ms: u64) -> usize {
    let now = Utc::now();
    let lease_until = fhir_instant(now + LEASE);
    let now = fhir_instant(now);
    let due = match db.write_blocking(|conn| {
        crate::store::dialect::write_transaction(conn, |conn| {
            Ok(stored::claim_due_notifications(
                conn,
                &now,
                &lease_until,
                BATCH,
            )?)
        })
    }) {
        Ok(due) => due,
        Err(error) => {
            tracing::warn!(%error, "cannot read the notification outbox");
            return 0;
        }
    };
    let mut delivered = 0;
    for notification in due {
        let result = channel.deliver(&notification.payload);
        let now = Utc::now();
        let stamp = fhir_instant(now);
        let recorded = match &result {
            Ok(()) => {
                delivered += 1;
                db.write_blocking(|conn| {
                    Ok(stored::delivery_result(
                        conn,
                        notification.id,
                        &stamp,
                        None,
                    )?)
                })
            }
            Err(error) => {
                let delay = retry_delay(retry_base_ms, notification.attempts);
                let next =
                    fhir_instant(now + TimeDelta::from_std(delay).unwrap_or(TimeDelta::hours(1)));
                tracing::warn!(
                    notification = notification.id,
                    attempts = notification.attempts + 1,
                    retry_in_ms = delay.as_millis() as u64,
                    %error,
                    "notification delivery failed; will retry"
                );
                db.write_blocking(|conn| {
                    Ok(stored::delivery_result(
                        conn,
                        notification.id,
                        &stamp,
                        Some((error.as_str(), next.as_str())),
                    )?)
                })
            }
        };
        if let Err(error) = recorded {
            tracing::warn!(%error, "cannot record a notification delivery");
        }
    }
    delivered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_delay_doubles_up_to_an_hour() {
        assert_eq!(retry_delay(2000, 0), Duration::from_secs(2));
        assert_eq!(retry_delay(2000, 1), Duration::from_secs(4));
        assert_eq!(retry_delay(2000, 3), Duration::from_secs(16));
        assert_eq!(retry_delay(2000, 40), Duration::from_secs(3600));
    }
}
