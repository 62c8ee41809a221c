//! Durations in specs: written as humantime strings ("30s", "1m 30s") or whole seconds.

use crate::ParseError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A duration with millisecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DurationMs(pub u64);

impl DurationMs {
    pub fn from_secs(s: u64) -> Self {
        DurationMs(s.saturating_mul(1000))
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// Parses "1s", "500ms", "1h 30m", or a bare number of seconds.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let t = s.trim();
        if let Ok(secs) = t.parse::<u64>() {
            return Ok(DurationMs::from_secs(secs));
        }
        humantime::parse_duration(t)
            .map(|d| DurationMs(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
            .map_err(|cause| ParseError::Duration {
                text: t.to_string(),
                cause,
            })
    }
}

impl fmt::Display for DurationMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_duration(Duration::from_millis(self.0))
        )
    }
}

impl Serialize for DurationMs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for DurationMs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(DurationMs::from_secs(s)),
            Raw::Text(t) => DurationMs::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for DurationMs {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: \"30s\", \"1m 30s\", \"250ms\", \"2h\", or whole seconds",
            "oneOf": [
                {"type": "string"},
                {"type": "integer", "minimum": 0}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        assert_eq!(DurationMs::parse("1s").unwrap(), DurationMs(1000));
        assert_eq!(DurationMs::parse("250ms").unwrap(), DurationMs(250));
        assert_eq!(DurationMs::parse("90").unwrap(), DurationMs(90_000));
        assert_eq!(DurationMs::parse("1m 30s").unwrap(), DurationMs(90_000));
        assert!(DurationMs::parse("soon").is_err());
        let j: DurationMs = serde_json::from_str("\"2m\"").unwrap();
        assert_eq!(j, DurationMs(120_000));
        assert_eq!(
            serde_json::to_string(&DurationMs(1500)).unwrap(),
            "\"1s 500ms\""
        );
    }
}
