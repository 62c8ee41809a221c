//! Tenancy calls of the typed client: people's tokens, `whoami`, the audit log.

use crate::{Client, ClientError};
use reqwest::Method;
use zenith_protocol::tenancy::{
    AuditList, TokenCreated, TokenList, TokenRequest, TokenView, WhoAmI,
};

/// What `audit` asks for.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub user: Option<String>,
    /// Records at or after this time (milliseconds since the epoch).
    pub since: Option<u64>,
    pub refused_only: bool,
    pub before: Option<u64>,
    pub limit: usize,
}

impl Client {
    /// Makes a token (admin); its text is in the answer, this once.
    pub async fn create_token(&self, req: &TokenRequest) -> Result<TokenCreated, ClientError> {
        self.json(self.req(Method::POST, "/api/v1/tokens").json(req))
            .await
    }

    pub async fn tokens(&self) -> Result<TokenList, ClientError> {
        self.json(self.req(Method::GET, "/api/v1/tokens")).await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<TokenView, ClientError> {
        self.json(self.req(Method::POST, &format!("/api/v1/tokens/{id}/revoke")))
            .await
    }

    /// Who this client's token acts as.
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.json(self.req(Method::GET, "/api/v1/whoami")).await
    }

    /// Audit records, newest first (admin, operator).
    pub async fn audit(&self, q: &AuditQuery) -> Result<AuditList, ClientError> {
        let mut p: Vec<(&str, String)> = vec![("limit", q.limit.max(1).to_string())];
        if let Some(u) = &q.user {
            p.push(("user", u.clone()));
        }
        if let Some(s) = q.since {
            p.push(("since", s.to_string()));
        }
        if q.refused_only {
            p.push(("refused", "true".into()));
        }
        if let Some(b) = q.before {
            p.push(("before", b.to_string()));
        }
        self.json(self.req(Method::GET, "/api/v1/audit").query(&p))
            .await
    }
}
