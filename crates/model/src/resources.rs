//! Resource vectors: CPU in millicores, memory in bytes, GPUs, and named custom counts.

use crate::{ParseError, ValidationError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// Most custom resource kinds in one vector.
pub const MAX_CUSTOM_RESOURCES: usize = 16;
/// Largest CPU request or capacity, in cores.
pub const MAX_CPUS: u64 = 65_536;
/// The least CPU a job may ask for, in millicores (0.001 cores).
pub const MIN_JOB_CPU_MILLIS: u64 = 1;
/// Largest memory request or capacity (1 PiB).
pub const MAX_MEMORY: u64 = 1 << 50;

/// A request or a capacity. `cpus` is fractional on the wire (0.5) and millicores inside.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// One core when not given (as Slurm does), so `{memory: 1G}` does not ask for no CPU.
    #[serde(
        default = "one_core",
        rename = "cpus",
        serialize_with = "ser_cpus",
        deserialize_with = "de_cpus"
    )]
    pub cpu_millis: u64,
    #[serde(default, serialize_with = "ser_bytes", deserialize_with = "de_bytes")]
    pub memory: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gpus: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, u64>,
}

fn one_core() -> u64 {
    1000
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Resources {
    pub fn cpus(cores: f64) -> Self {
        Resources {
            cpu_millis: (cores * 1000.0).round() as u64,
            ..Default::default()
        }
    }

    /// True when `self` (a request) fits in `free` in every dimension.
    pub fn fits_in(&self, free: &Resources) -> bool {
        self.first_shortfall(free).is_none()
    }

    /// Names the first dimension where `self` exceeds `free`, cheapest checks first.
    pub fn first_shortfall(&self, free: &Resources) -> Option<String> {
        if self.cpu_millis > free.cpu_millis {
            return Some("insufficient cpus".into());
        }
        if self.memory > free.memory {
            return Some("insufficient memory".into());
        }
        if self.gpus > free.gpus {
            return Some("insufficient gpus".into());
        }
        for (k, v) in &self.custom {
            if *v > free.custom.get(k).copied().unwrap_or(0) {
                return Some(format!("insufficient {k}"));
            }
        }
        None
    }

    /// Subtracts a request that was checked to fit; saturates rather than wrapping.
    pub fn take(&mut self, req: &Resources) {
        self.cpu_millis = self.cpu_millis.saturating_sub(req.cpu_millis);
        self.memory = self.memory.saturating_sub(req.memory);
        self.gpus = self.gpus.saturating_sub(req.gpus);
        for (k, v) in &req.custom {
            if let Some(have) = self.custom.get_mut(k) {
                *have = have.saturating_sub(*v);
            }
        }
    }

    /// `n` of this request together (a gang's tasks on one node).
    pub fn times(&self, n: u32) -> Resources {
        let n = u64::from(n);
        Resources {
            cpu_millis: self.cpu_millis.saturating_mul(n),
            memory: self.memory.saturating_mul(n),
            gpus: self.gpus.saturating_mul(n),
            custom: self
                .custom
                .iter()
                .map(|(k, v)| (k.clone(), v.saturating_mul(n)))
                .collect(),
        }
    }

    /// Gives back a request taken earlier.
    pub fn give(&mut self, req: &Resources) {
        self.cpu_millis = self.cpu_millis.saturating_add(req.cpu_millis);
        self.memory = self.memory.saturating_add(req.memory);
        self.gpus = self.gpus.saturating_add(req.gpus);
        for (k, v) in &req.custom {
            let e = self.custom.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.cpu_millis > MAX_CPUS * 1000 {
            return Err(ValidationError::new(
                "cpus",
                format!("must be at most {MAX_CPUS}"),
            ));
        }
        if self.memory > MAX_MEMORY {
            return Err(ValidationError::new("memory", "must be at most 1P"));
        }
        if self.gpus > 1024 {
            return Err(ValidationError::new("gpus", "must be at most 1024"));
        }
        if self.custom.len() > MAX_CUSTOM_RESOURCES {
            return Err(ValidationError::new(
                "custom",
                format!("at most {MAX_CUSTOM_RESOURCES} custom resources"),
            ));
        }
        for (k, v) in &self.custom {
            let name_ok = !k.is_empty()
                && k.len() <= 64
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
            if !name_ok {
                return Err(ValidationError::new(
                    format!("custom.{k}"),
                    "name must be 1-64 characters of letters, digits, '.', '_' or '-'",
                ));
            }
            if *v > 1 << 40 {
                return Err(ValidationError::new(format!("custom.{k}"), "too large"));
            }
        }
        Ok(())
    }
}

/// Parses "512M", "2G", "1.5GiB", "1048576" into bytes (binary units: K = 1024).
///
/// Hand-written rather than the `bytesize` crate's parser: `--memory 4G` means 4 GiB here, as
/// it does to Slurm (`--mem=4G`) and to users who come from it, and `4GB` too, while
/// `bytesize` reads `G`/`GB` as 10^9 bytes; mapping every suffix before and after it would
/// take more code than these lines, and a change of meaning would silently shrink limits.
pub fn parse_bytes(s: &str) -> Result<u64, ParseError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| ParseError::Size {
        text: t.to_string(),
    })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        "p" | "pb" | "pib" => 1 << 50,
        other => {
            return Err(ParseError::SizeUnit {
                unit: other.to_string(),
                text: t.to_string(),
            })
        }
    };
    let v = n * mult as f64;
    if !v.is_finite() || v < 0.0 || v > MAX_MEMORY as f64 * 4.0 {
        return Err(ParseError::SizeRange {
            text: t.to_string(),
        });
    }
    Ok(v.round() as u64)
}

/// Bytes for people: `512B`, `1.5G` (binary units, as [`parse_bytes`] reads them).
pub fn format_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

/// Parses a CPU count such as "2" or "0.5" into millicores.
pub fn parse_cpus(s: &str) -> Result<u64, ParseError> {
    let v: f64 = s.trim().parse().map_err(|_| ParseError::Cpus {
        text: s.to_string(),
    })?;
    cpus_to_millis(v)
}

fn cpus_to_millis(v: f64) -> Result<u64, ParseError> {
    if !v.is_finite() || v < 0.0 || v > MAX_CPUS as f64 {
        return Err(ParseError::CpusRange { value: v });
    }
    Ok((v * 1000.0).round() as u64)
}

fn ser_cpus<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(*v as f64 / 1000.0)
}

fn de_cpus<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(f64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Num(n) => cpus_to_millis(n),
        Raw::Text(t) => parse_cpus(&t),
    }
    .map_err(serde::de::Error::custom)
}

fn ser_bytes<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(*v)
}

fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Num(n) => Ok(n),
        Raw::Text(t) => parse_bytes(&t).map_err(serde::de::Error::custom),
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Resources {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Resources".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "cpus": {"description": "CPU cores, fractional (0.5)", "type": "number", "minimum": 0},
                "memory": {
                    "description": "Bytes, or a size such as 512M or 2G",
                    "oneOf": [{"type": "integer", "minimum": 0}, {"type": "string"}]
                },
                "gpus": {"type": "integer", "minimum": 0},
                "custom": {
                    "description": "Named counts offered by agents (--resource NAME=COUNT)",
                    "type": "object",
                    "additionalProperties": {"type": "integer", "minimum": 0}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_cpus() {
        assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert!(parse_bytes("12Q").is_err());
        assert!(parse_bytes("-1").is_err());
        assert_eq!(parse_cpus("0.5").unwrap(), 500);
        assert!(parse_cpus("-2").is_err());
        assert!(parse_cpus("NaN").is_err());
        let r: Resources =
            serde_json::from_str(r#"{"cpus":0.25,"memory":"1G","custom":{"lic":2}}"#).unwrap();
        assert_eq!(r.cpu_millis, 250);
        assert_eq!(r.memory, 1 << 30);
        assert!(serde_json::from_str::<Resources>(r#"{"cpu":1}"#).is_err());
    }

    #[test]
    fn fit_take_give() {
        let mut free = Resources {
            cpu_millis: 2000,
            memory: 100,
            gpus: 0,
            custom: [("lic".to_string(), 1)].into(),
        };
        let req = Resources {
            cpu_millis: 1500,
            memory: 10,
            gpus: 0,
            custom: [("lic".to_string(), 1)].into(),
        };
        assert!(req.fits_in(&free));
        free.take(&req);
        assert_eq!(
            req.first_shortfall(&free).as_deref(),
            Some("insufficient cpus")
        );
        free.give(&req);
        assert_eq!(free.cpu_millis, 2000);
        let big = Resources {
            custom: [("lic".to_string(), 2)].into(),
            ..Default::default()
        };
        assert_eq!(
            big.first_shortfall(&free).as_deref(),
            Some("insufficient lic")
        );
    }
}
