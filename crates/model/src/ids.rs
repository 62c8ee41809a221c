//! Newtype IDs, all made by one macro so they behave the same everywhere.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse::<u64>().map($name)
            }
        }
    };
}

pub(crate) use numeric_id;

numeric_id!(
    /// A job: one spec, one or more tasks (a task array).
    JobId
);
numeric_id!(
    /// One attempt of one task; globally monotonic, doubles as the fencing token.
    AttemptId
);

/// A node's stable identity, chosen by its agent and kept in the agent's data directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct NodeId(pub String);

impl NodeId {
    /// Longest accepted node ID.
    pub const MAX_LEN: usize = 64;

    /// Checks that an ID is 1..=64 characters of `[A-Za-z0-9._-]`.
    pub fn parse(s: &str) -> Result<Self, crate::ValidationError> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
        if ok {
            Ok(NodeId(s.to_string()))
        } else {
            Err(crate::ValidationError::new(
                "node_id",
                "must be 1-64 characters of letters, digits, '.', '_' or '-'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
