//! Cron schedules of applied flows: croner patterns (5 fields, or 6 with seconds first) in an
//! IANA time zone, evaluated with chrono-tz so that DST changes are handled.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use zenith_model::{Millis, ValidationError};

/// A parsed schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
}

impl Schedule {
    /// Parses `pattern` in time zone `tz` (UTC when `None`); an error names the spec's field
    /// (`schedule` or `timezone`).
    pub fn parse(pattern: &str, tz: Option<&str>) -> Result<Self, ValidationError> {
        let fields = pattern.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(ValidationError::new(
                "schedule",
                format!("cron must have 5 or 6 fields, not {fields}"),
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(pattern)
            .map_err(|e| {
                ValidationError::new("schedule", format!("invalid cron {pattern:?}: {e}"))
            })?;
        let tz = match tz {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                ValidationError::new("timezone", format!("unknown IANA time zone {name:?}"))
            })?,
        };
        Ok(Schedule { cron, tz })
    }

    /// The first fire time strictly after `after` (ms since the epoch).
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        let secs = i64::try_from(after / 1000).ok()?;
        let nanos = u32::try_from((after % 1000) * 1_000_000).ok()?;
        let utc: DateTime<Utc> = Utc.timestamp_opt(secs, nanos).single()?;
        let local = utc.with_timezone(&self.tz);
        let next = self.cron.find_next_occurrence(&local, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_fire_in_a_zone() {
        let s = Schedule::parse("0 9 * * *", Some("Europe/Berlin")).unwrap();
        // 2026-01-01T00:00:00Z -> 09:00 Berlin = 08:00Z.
        let jan1 = 1_767_225_600_000;
        assert_eq!(s.next_after(jan1), Some(jan1 + 8 * 3600 * 1000));
        let every = Schedule::parse("*/2 * * * * *", None).unwrap();
        assert_eq!(every.next_after(jan1 + 500), Some(jan1 + 2000));
        assert_eq!(
            Schedule::parse("* * *", None).unwrap_err().field,
            "schedule"
        );
        assert_eq!(
            Schedule::parse("61 * * * *", None).unwrap_err().field,
            "schedule"
        );
        assert_eq!(
            Schedule::parse("* * * * *", Some("Mars/Base"))
                .unwrap_err()
                .field,
            "timezone"
        );
    }
}
