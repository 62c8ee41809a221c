//! Tenancy vocabulary: namespaces, roles, API tokens of people, and the audit log's records.
//! Who may do what is decided at the API edge (the server); this is only the language.

use crate::{Millis, ValidationError};
use serde::{Deserialize, Serialize};

/// The namespace of everything that names none.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Stands for every namespace in a token's list or a listing's filter.
pub const ALL_NAMESPACES: &str = "*";
/// Most namespaces one token names.
pub const MAX_TOKEN_NAMESPACES: usize = 64;
/// Longest user name.
pub const MAX_USER: usize = 128;

/// A namespace name: 1-63 of `[a-z0-9-]`, starting and ending with a letter or digit (a DNS
/// label, as in Kubernetes and Nomad).
pub fn validate_namespace(v: &str, field: &str) -> Result<(), ValidationError> {
    let b = v.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!("{v:?} is not a namespace: 1-63 lowercase letters, digits or '-', not starting or ending with '-'"),
        ))
    }
}

/// A user name (a token's `name`, an OIDC subject): 1-128 visible characters.
pub fn validate_user(v: &str, field: &str) -> Result<(), ValidationError> {
    if v.is_empty() || v.len() > MAX_USER || v.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ValidationError::new(
            field,
            format!("must be 1-{MAX_USER} characters without spaces or control characters"),
        ));
    }
    Ok(())
}

/// What a person may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, in every namespace: tokens, audit, nodes, jobs and flows.
    Admin,
    /// Nodes (revoke, drain) and reading every namespace and the audit log; submits nothing.
    Operator,
    /// Submit, cancel and read jobs, runs and flows in its namespaces.
    Submitter,
    /// Read jobs, runs, flows and logs in its namespaces.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Submitter => "submitter",
            Role::Viewer => "viewer",
        }
    }

    /// Whether the role reads every namespace whatever its token lists.
    pub fn reads_everywhere(self) -> bool {
        matches!(self, Role::Admin | Role::Operator)
    }

    /// Whether the role changes jobs, runs and flows (in namespaces it holds).
    pub fn writes_work(self) -> bool {
        matches!(self, Role::Admin | Role::Submitter)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, ValidationError> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "submitter" => Ok(Role::Submitter),
            "viewer" => Ok(Role::Viewer),
            _ => Err(ValidationError::new(
                "role",
                format!("{s:?} is not a role: admin, operator, submitter or viewer"),
            )),
        }
    }
}

/// A person's API token: only its SHA-256 is kept. Revoked tokens stay listed (until their
/// record ages out with [`UserTokenRecord::expires_at`] or the token limit is reached).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserTokenRecord {
    /// Public handle: 16 hex digits, part of the token itself.
    pub id: String,
    /// Who holds it (recorded as the submitter of what it submits).
    pub user: String,
    pub role: Role,
    /// Namespaces it acts in; `*` for all. Admin tokens act everywhere.
    pub namespaces: Vec<String>,
    /// Hex SHA-256 of the token's secret part.
    pub hash: String,
    pub created_at: Millis,
    pub created_by: String,
    pub expires_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

/// One state-changing (or refused) API request, as the audit log keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditRecord {
    /// Assigned by the store (0 until written).
    #[serde(default)]
    pub id: u64,
    pub at: Millis,
    /// The user a token names; `?` when the token was not recognised.
    pub user: String,
    /// The role the request was made with; empty when none was recognised.
    #[serde(default)]
    pub role: String,
    pub method: String,
    /// Path and query as requested (at most [`MAX_AUDIT_PATH`] bytes).
    pub path: String,
    /// The client's address.
    pub peer: String,
    pub status: u16,
    /// The error message when refused or failed (at most [`MAX_AUDIT_PATH`] bytes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Longest path or detail text kept in an audit record.
pub const MAX_AUDIT_PATH: usize = 512;

/// `s` cut to at most `max` bytes on a character boundary.
pub fn truncated(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_dns_labels() {
        for ok in ["default", "ml", "team-7", "a"] {
            assert!(validate_namespace(ok, "namespace").is_ok(), "{ok}");
        }
        for bad in ["", "ML", "-a", "a-", "a_b", "a/b", &"x".repeat(64), "*"] {
            let e = validate_namespace(bad, "namespace").unwrap_err();
            assert_eq!(e.field, "namespace");
        }
    }

    #[test]
    fn roles_parse_and_print_alike() {
        for r in [Role::Admin, Role::Operator, Role::Submitter, Role::Viewer] {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert_eq!("root".parse::<Role>().unwrap_err().field, "role");
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncated("héllo", 2), "h");
        assert_eq!(truncated("abc", 10), "abc");
    }
}
