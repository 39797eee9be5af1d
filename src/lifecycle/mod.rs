//! The lifecycle of a space (SPEC §4): `pending` from its creation by the feeding
//! system, `active` 42 days after the person was notified (or earlier, `$activate`),
//! `opposed` (`$oppose`, with a PDF proof), `closed` (`$close`, optionally with
//! deletion), and back (`$reopen`). The state is kept in `space_lifecycle` and shown on
//! the Patient as the extension [`SPACE_STATE_EXTENSION`]; the retention job purges
//! closed spaces after 10 years. Majority (R-LIFE-5) is in [`majority`].

pub mod jobs;
pub mod proof;

use chrono::{DateTime, Months, NaiveDate, TimeDelta, Utc};

use crate::store::lifecycle::LifecycleRow;

/// The Patient extension that shows the space's state (R-LIFE-4).
pub const SPACE_STATE_EXTENSION: &str =
    "https://dmp-fhir-server.fr/fhir/StructureDefinition/space-state";
/// The Patient extension the feeding system may set at creation: when the person was
/// notified of their space (R-LIFE-1; defaults to the creation).
pub const SPACE_NOTIFIED_EXTENSION: &str =
    "https://dmp-fhir-server.fr/fhir/StructureDefinition/space-notified";
/// A pending space opens by itself this long after the notification (R-LIFE-1).
pub const ACTIVATION_DELAY: TimeDelta = TimeDelta::days(42);
/// A closed space's data is kept this many years, then purged (R-LIFE-3).
pub const RETENTION_YEARS: u32 = 10;

/// A space's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Active,
    Opposed,
    Closed,
}

impl State {
    pub fn code(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Active => "active",
            State::Opposed => "opposed",
            State::Closed => "closed",
        }
    }

    pub fn parse(code: &str) -> Option<State> {
        match code {
            "pending" => Some(State::Pending),
            "active" => Some(State::Active),
            "opposed" => Some(State::Opposed),
            "closed" => Some(State::Closed),
            _ => None,
        }
    }
}

/// What the rules read of a space's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    /// The state as last set (a `pending` space may have opened since).
    pub stored: State,
    pub notified_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

fn instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

impl Lifecycle {
    pub fn from_row(row: &LifecycleRow) -> Option<Lifecycle> {
        Some(Lifecycle {
            stored: State::parse(&row.state)?,
            notified_at: instant(&row.notified_at)?,
            closed_at: row.closed_at.as_deref().and_then(instant),
        })
    }

    /// The state at `now`: a pending space is active from 42 days after the
    /// notification, whether or not the lifecycle job has recorded it yet.
    pub fn state_at(&self, now: DateTime<Utc>) -> State {
        match self.stored {
            State::Pending if now >= self.notified_at + ACTIVATION_DELAY => State::Active,
            state => state,
        }
    }
}

/// R-LIFE-5: whether a person born on `birth_date` is of age at `now` (18 years
/// old). A partial date counts from its earliest day, so that a representative never
/// keeps access past a majority that may have come.
pub fn of_age(birth_date: &str, now: DateTime<Utc>) -> bool {
    let earliest = match birth_date.len() {
        4 => NaiveDate::parse_from_str(&format!("{birth_date}-01-01"), "%Y-%m-%d"),
        7 => NaiveDate::parse_from_str(&format!("{birth_date}-01"), "%Y-%m-%d"),
        _ => NaiveDate::parse_from_str(birth_date.get(..10).unwrap_or(birth_date), "%Y-%m-%d"),
    };
    match earliest
        .ok()
        .and_then(|date| date.checked_add_months(Months::new(18 * 12)))
    {
        Some(majority) => now.date_naive() >= majority,
        // An unreadable birth date cannot prove minority: refuse (default deny).
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        instant(text).unwrap()
    }

    #[test]
    fn a_pending_space_opens_42_days_after_the_notification() {
        let lifecycle = Lifecycle {
            stored: State::Pending,
            notified_at: at("2026-01-01T00:00:00Z"),
            closed_at: None,
        };
        assert_eq!(
            lifecycle.state_at(at("2026-02-11T23:59:59Z")),
            State::Pending
        );
        assert_eq!(
            lifecycle.state_at(at("2026-02-12T00:00:00Z")),
            State::Active
        );
        let opposed = Lifecycle {
            stored: State::Opposed,
            ..lifecycle
        };
        assert_eq!(opposed.state_at(at("2027-01-01T00:00:00Z")), State::Opposed);
    }

    #[test]
    fn majority_comes_on_the_eighteenth_birthday() {
        assert!(!of_age("2008-11-24", at("2026-11-23T23:00:00Z")));
        assert!(of_age("2008-11-23", at("2026-11-23T00:00:00Z")));
        assert!(of_age("2008-02-29", at("2026-02-28T12:00:00Z")));
        assert!(of_age("2008", at("2026-01-01T00:00:00Z")));
        assert!(!of_age("2009", at("2026-12-31T00:00:00Z")));
        assert!(of_age("not a date", at("2026-01-01T00:00:00Z")));
    }
}
