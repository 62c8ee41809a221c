//! The model's error types: `ValidationError` (a field path and what is wrong with it) and
//! `ParseError` (a value written as text, such as a duration or a size, could not be read).

use crate::resources::MAX_CPUS;
use serde::{Deserialize, Serialize};

/// An input was rejected; `field` is a path such as `command[2]` or `resources.cpus`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{}{message}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Prefixes the field path, e.g. `jobs[3]` + `command` -> `jobs[3].command`.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_string()
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

/// A value written as text (a CLI argument, or a spec field given as a string) could not be
/// read. A clap `value_parser` or serde's `de::Error::custom` shows it as is.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// The cause is part of the message, not also a `source`, so a chain printer does not
    /// repeat it.
    #[error("invalid duration {text:?}: {cause}")]
    Duration {
        text: String,
        cause: humantime::DurationError,
    },
    #[error("invalid size {text:?}")]
    Size { text: String },
    #[error("unknown size unit {unit:?} in {text:?}")]
    SizeUnit { unit: String, text: String },
    #[error("size {text:?} out of range")]
    SizeRange { text: String },
    #[error("invalid cpu count {text:?}")]
    Cpus { text: String },
    #[error("cpu count {value} out of range 0..={MAX_CPUS}")]
    CpusRange { value: f64 },
    #[error("backoff must be fixed, linear or exponential, not {text:?}")]
    Backoff { text: String },
    #[error("array must be START-END[:STEP][%MAX_RUNNING] (or N; parts joined by commas, at most 1000), with non-negative integers and STEP, MAX_RUNNING at least 1, not {text:?}")]
    Array { text: String },
    #[error("array {text:?}: parts must ascend without overlapping")]
    ArrayOrder { text: String },
    #[error("dependency must be JOB_ID[:ok|:fail|:any], not {text:?}")]
    Dependency { text: String },
    #[error("array {text:?}: end must not be below start")]
    ArrayEnd { text: String },
    #[error("constraint must be K=V, K!=V, 'K in (a,b)' or 'K exists', not {text:?}")]
    Constraint { text: String },
}

#[cfg(test)]
mod tests {
    use crate::resources::{parse_bytes, parse_cpus};
    use crate::{ArrayRange, Backoff, Constraint, DurationMs};

    /// The texts users see (clap prints them after the argument's name) stay as they were.
    #[test]
    fn parse_error_texts() {
        let text = |e: crate::ParseError| e.to_string();
        assert_eq!(
            text(DurationMs::parse(" soon ").unwrap_err()),
            "invalid duration \"soon\": expected number at 0"
        );
        assert_eq!(text(parse_bytes("x").unwrap_err()), "invalid size \"x\"");
        assert_eq!(
            text(parse_bytes("12Q").unwrap_err()),
            "unknown size unit \"q\" in \"12Q\""
        );
        assert_eq!(
            text(parse_bytes("9999P").unwrap_err()),
            "size \"9999P\" out of range"
        );
        assert_eq!(
            text(parse_cpus("x").unwrap_err()),
            "invalid cpu count \"x\""
        );
        assert_eq!(
            text(parse_cpus("-2").unwrap_err()),
            "cpu count -2 out of range 0..=65536"
        );
        assert_eq!(
            text("random".parse::<Backoff>().unwrap_err()),
            "backoff must be fixed, linear or exponential, not \"random\""
        );
        assert_eq!(
            text("x".parse::<ArrayRange>().unwrap_err()),
            "array must be START-END[:STEP][%MAX_RUNNING] (or N; parts joined by commas, at most 1000), with non-negative integers and STEP, MAX_RUNNING at least 1, not \"x\""
        );
        assert_eq!(
            text("5-1".parse::<ArrayRange>().unwrap_err()),
            "array \"5-1\": end must not be below start"
        );
        assert_eq!(
            text("=x".parse::<Constraint>().unwrap_err()),
            "constraint must be K=V, K!=V, 'K in (a,b)' or 'K exists', not \"=x\""
        );
    }
}
