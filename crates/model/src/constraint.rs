//! Node constraints of a job: `K=V`, `K!=V` (also met by a node without `K`),
//! `K in (a,b)`, `K exists`, `K~V` (the value contains `V`, any case: `gpu.model~H100`) and
//! `K>=N` (a number, sizes such as `40G` allowed: `gpu.memory>=40G`), written and stored in
//! that text form.

use crate::job::limits;
use crate::resources::parse_bytes;
use crate::{ParseError, ValidationError};
use std::collections::BTreeMap;

/// Most values in one `K in (...)`.
pub const MAX_IN_VALUES: usize = 64;

/// A requirement on a node's labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Constraint {
    pub key: String,
    pub op: ConstraintOp,
}

/// What a [`Constraint`] asks of the label `key`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConstraintOp {
    /// `K=V`: the node has `K` with this value.
    Eq(String),
    /// `K!=V`: the node lacks `K` or has another value.
    Ne(String),
    /// `K in (a,b)`: the node has `K` with one of these values.
    In(Vec<String>),
    /// `K exists`: the node has `K`, whatever its value.
    Exists,
    /// `K~V`: the node's value of `K` contains `V`, ignoring case.
    Contains(String),
    /// `K>=N`: the node's value of `K` is a number (or size: `80G`, `81559M`) of at least `N`.
    AtLeast(String),
}

impl Constraint {
    /// `K=V`.
    pub fn eq(key: &str, value: &str) -> Constraint {
        Constraint {
            key: key.to_string(),
            op: ConstraintOp::Eq(value.to_string()),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ValidationError> {
        crate::job::validate_word(&self.key, "key")?;
        match &self.op {
            ConstraintOp::Eq(v) | ConstraintOp::Ne(v) => validate_value(v, "value"),
            ConstraintOp::In(vs) if vs.is_empty() || vs.len() > MAX_IN_VALUES => Err(
                ValidationError::new("values", "1 to 64 values, as K in (a,b)"),
            ),
            ConstraintOp::In(vs) => vs.iter().try_for_each(|v| {
                validate_value(v, "values")?;
                match v.is_empty() || v.contains([',', '(', ')']) {
                    true => Err(ValidationError::new(
                        "values",
                        "each value non-empty, without ',', '(' or ')'",
                    )),
                    false => Ok(()),
                }
            }),
            ConstraintOp::Exists => Ok(()),
            ConstraintOp::Contains(v) if v.is_empty() => {
                Err(ValidationError::new("value", "must not be empty"))
            }
            ConstraintOp::Contains(v) => validate_value(v, "value"),
            ConstraintOp::AtLeast(n) => parse_bytes(n)
                .map(|_| ())
                .map_err(|_| ValidationError::new("value", "a number or size, as K>=40G")),
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match &self.op {
            ConstraintOp::Eq(want) => v == Some(want),
            ConstraintOp::Ne(not) => v != Some(not),
            ConstraintOp::In(any) => v.is_some_and(|v| any.contains(v)),
            ConstraintOp::Exists => v.is_some(),
            ConstraintOp::Contains(part) => {
                v.is_some_and(|v| v.to_lowercase().contains(&part.to_lowercase()))
            }
            ConstraintOp::AtLeast(n) => match (v.map(|v| parse_bytes(v)), parse_bytes(n)) {
                (Some(Ok(have)), Ok(want)) => have >= want,
                _ => false,
            },
        }
    }
}

fn validate_value(v: &str, field: &str) -> Result<(), ValidationError> {
    if v.len() > limits::MAX_LABEL_BYTES || v.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "at most 256 bytes without control characters",
        ));
    }
    Ok(())
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = &self.key;
        match &self.op {
            ConstraintOp::Eq(v) => write!(f, "{k}={v}"),
            ConstraintOp::Ne(v) => write!(f, "{k}!={v}"),
            ConstraintOp::In(vs) => write!(f, "{k} in ({})", vs.join(",")),
            ConstraintOp::Exists => write!(f, "{k} exists"),
            ConstraintOp::Contains(v) => write!(f, "{k}~{v}"),
            ConstraintOp::AtLeast(n) => write!(f, "{k}>={n}"),
        }
    }
}

impl std::str::FromStr for Constraint {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = || ParseError::Constraint {
            text: s.to_string(),
        };
        let t = s.trim();
        let (key, op) = if let Some((k, list)) = t.split_once(" in ") {
            let list = list.trim();
            let inner = list
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .unwrap_or(list);
            let values = inner.split(',').map(|v| v.trim().to_string()).collect();
            (k.trim(), ConstraintOp::In(values))
        } else if let Some(k) = t.strip_suffix(" exists") {
            (k.trim(), ConstraintOp::Exists)
        } else {
            // The first operator character decides: a value may hold '=', '~' or '>'.
            let at = t.find(['=', '~', '!', '>']).ok_or_else(bad)?;
            let (k, rest) = t.split_at(at);
            let op = if let Some(v) = rest.strip_prefix('~') {
                ConstraintOp::Contains(v.trim().to_string())
            } else if let Some(n) = rest.strip_prefix(">=") {
                ConstraintOp::AtLeast(n.trim().to_string())
            } else if let Some(v) = rest.strip_prefix("!=") {
                ConstraintOp::Ne(v.to_string())
            } else if let Some(v) = rest.strip_prefix('=') {
                ConstraintOp::Eq(v.to_string())
            } else {
                return Err(bad());
            };
            (k.trim_end(), op)
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(Constraint {
            key: key.to_string(),
            op,
        })
    }
}

serde_as_text!(Constraint);

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Constraint {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Constraint".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A node label requirement: K=V, K!=V, 'K in (a,b)', 'K exists', K~V (contains, any case) or K>=N (a number or size)",
            "type": "string"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_form_parses_prints_back_and_matches() {
        let h100 = labels(&[("gpu", "h100"), ("zone", "a"), ("mem", "81559M")]);
        let a100 = labels(&[("gpu", "a100"), ("mem", "39G")]);
        let none = labels(&[]);
        let cases: [(&str, [bool; 3]); 7] = [
            ("gpu=h100", [true, false, false]),
            ("gpu~H1", [true, false, false]),
            ("mem>=40G", [true, false, false]),
            ("gpu!=h100", [false, true, true]),
            ("gpu in (h100,a100)", [true, true, false]),
            ("gpu exists", [true, true, false]),
            ("zone in (a)", [true, false, false]),
        ];
        for (text, want) in cases {
            let c: Constraint = text.parse().unwrap();
            assert_eq!(c.to_string(), text);
            c.validate().unwrap();
            let got = [c.matches(&h100), c.matches(&a100), c.matches(&none)];
            assert_eq!(got, want, "{text}");
        }
        // Spaces around the list and no parentheses are read the same.
        let c: Constraint = "gpu in h100, a100".parse().unwrap();
        assert_eq!(c.to_string(), "gpu in (h100,a100)");
        // A value may hold '='; the first '=' splits.
        let c: Constraint = "opt=a=b".parse().unwrap();
        assert_eq!(c.op, ConstraintOp::Eq("a=b".into()));
        let c: Constraint = "opt=a~b".parse().unwrap();
        assert_eq!(c.op, ConstraintOp::Eq("a~b".into()));
        // A node value that is not a number never meets `>=`.
        let c: Constraint = "zone>=1".parse().unwrap();
        assert!(!c.matches(&h100));
    }

    #[test]
    fn malformed_constraints_are_refused_naming_the_part() {
        for bad in ["=x", "x", " exists", "a b=c", "!=x", "a>b", "a!b"] {
            assert!(bad.parse::<Constraint>().is_err(), "{bad}");
        }
        let c: Constraint = "gpu in (a,,b)".parse().unwrap();
        assert_eq!(c.validate().unwrap_err().field, "values");
        let many = (0..65).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let c: Constraint = format!("gpu in ({many})").parse().unwrap();
        assert_eq!(c.validate().unwrap_err().field, "values");
        let c: Constraint = "mem>=lots".parse().unwrap();
        assert_eq!(c.validate().unwrap_err().field, "value");
        let c: Constraint = "a.b/c=x".parse().unwrap();
        assert_eq!(c.validate().unwrap_err().field, "key");
    }
}
