//! A namespace's settings: its fair-share weight (and its users' weights) and its quota.
//! Set by an admin (`zenith namespace set`), kept by the engine, persisted as meta rows
//! `namespace/<name>`. A namespace without settings has weight 1 and no limits.

use crate::tenancy::{validate_namespace, validate_user};
use crate::ValidationError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest weight of a namespace or a user.
pub const MAX_WEIGHT: u32 = 10_000;
/// Most users with a weight of their own in one namespace.
pub const MAX_USER_WEIGHTS: usize = 1_000;
/// Largest CPU quota, in cores (a cluster, not a node).
pub const MAX_QUOTA_CPUS: f64 = 1e9;

/// What a namespace may hold at once; a limit not given is no limit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// CPU cores of its running attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory of its running attempts, in bytes ("64G" accepted).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_bytes"
    )]
    pub memory: Option<u64>,
    /// GPUs of its running attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u64>,
    /// Running attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<u64>,
    /// Live (queued or running) jobs: a submission beyond it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<u64>,
    /// Live tasks over all its jobs: a submission beyond it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<u64>,
}

impl Quota {
    /// The CPU limit in millicores.
    pub fn cpu_millis(&self) -> Option<u64> {
        self.cpus.map(|c| (c * 1000.0).round() as u64)
    }

    pub fn is_empty(&self) -> bool {
        *self == Quota::default()
    }
}

/// One namespace's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NamespaceSettings {
    #[cfg_attr(feature = "openapi", schema(required = false))]
    pub name: String,
    /// Its fair-share weight against other namespaces (1 when not set).
    #[serde(default = "one")]
    pub weight: u32,
    /// Weights of its users against each other (1 for a user not listed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_weights: BTreeMap<String, u32>,
    #[serde(default, skip_serializing_if = "Quota::is_empty")]
    pub quota: Quota,
}

fn one() -> u32 {
    1
}

impl NamespaceSettings {
    pub fn new(name: &str) -> Self {
        NamespaceSettings {
            name: name.to_string(),
            weight: 1,
            user_weights: BTreeMap::new(),
            quota: Quota::default(),
        }
    }

    pub fn user_weight(&self, user: &str) -> u32 {
        self.user_weights.get(user).copied().unwrap_or(1)
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_namespace(&self.name, "name")?;
        check_weight(self.weight, "weight")?;
        if self.user_weights.len() > MAX_USER_WEIGHTS {
            return Err(ValidationError::new(
                "user_weights",
                format!("at most {MAX_USER_WEIGHTS} users"),
            ));
        }
        for (user, w) in &self.user_weights {
            validate_user(user, "user_weights")?;
            check_weight(*w, &format!("user_weights.{user}"))?;
        }
        if let Some(c) = self.quota.cpus {
            if !c.is_finite() || !(0.0..=MAX_QUOTA_CPUS).contains(&c) {
                return Err(ValidationError::new(
                    "quota.cpus",
                    format!("must be a number of cores from 0 to {MAX_QUOTA_CPUS}"),
                ));
            }
        }
        Ok(())
    }
}

/// One party (a namespace, or a user in one) in the fair-share table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartyShare {
    /// The namespace, or the user (empty: jobs submitted without a user, such as flow steps).
    pub name: String,
    pub weight: u32,
    /// What its running attempts hold.
    pub cpu_millis: u64,
    pub memory: u64,
    pub gpus: u64,
    pub running: u64,
    pub live_jobs: u64,
    pub live_tasks: u64,
    /// Its dominant share of the cluster now (0..1).
    pub share: f64,
    /// Its recent usage: the dominant share averaged with decay.
    pub usage: f64,
    /// For a namespace with live work: the share its weight entitles it to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// `(share + usage) / weight`: the lowest goes next.
    pub score: f64,
}

/// One namespace in the fair-share table, with its users.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareView {
    #[serde(flatten)]
    pub party: PartyShare,
    #[serde(default, skip_serializing_if = "Quota::is_empty")]
    pub quota: Quota,
    pub users: Vec<PartyShare>,
}

fn check_weight(w: u32, field: &str) -> Result<(), ValidationError> {
    if w == 0 || w > MAX_WEIGHT {
        return Err(ValidationError::new(
            field,
            format!("must be from 1 to {MAX_WEIGHT}"),
        ));
    }
    Ok(())
}

fn de_opt_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Num(n)) => Ok(Some(n)),
        Some(Raw::Text(t)) => crate::resources::parse_bytes(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_sizes_and_name_bad_fields() {
        let s: NamespaceSettings = serde_json::from_str(
            r#"{"name":"ml","weight":3,"quota":{"cpus":64,"memory":"1G","running":10}}"#,
        )
        .unwrap();
        assert_eq!(s.quota.memory, Some(1 << 30));
        assert_eq!(s.quota.cpu_millis(), Some(64_000));
        assert!(s.validate().is_ok());
        let mut bad = s.clone();
        bad.weight = 0;
        assert_eq!(bad.validate().unwrap_err().field, "weight");
        let mut bad = s.clone();
        bad.user_weights.insert("alice".into(), 20_000);
        assert_eq!(bad.validate().unwrap_err().field, "user_weights.alice");
        let mut bad = s;
        bad.quota.cpus = Some(f64::NAN);
        assert_eq!(bad.validate().unwrap_err().field, "quota.cpus");
        assert!(serde_json::from_str::<NamespaceSettings>(r#"{"name":"x","wieght":2}"#).is_err());
    }
}
