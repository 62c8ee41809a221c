//! Tenancy calls of the typed client: people's tokens, `whoami`, the audit log, namespace
//! settings and the fair-share table.

use crate::{Client, ClientError};
use reqwest::Method;
use zenith_model::namespace::NamespaceSettings;
use zenith_protocol::tenancy::{
    AuditList, NamespaceList, ShareList, TokenCreated, TokenList, TokenRequest, TokenView, WhoAmI,
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
    /// The server's build.
    pub async fn version(&self) -> Result<zenith_protocol::api::VersionView, ClientError> {
        self.json(self.req(Method::GET, "/api/v1/version")).await
    }

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

    /// Settings of the namespaces that have some (of those this token reads).
    pub async fn namespaces(&self) -> Result<NamespaceList, ClientError> {
        self.json(self.req(Method::GET, "/api/v1/namespaces")).await
    }

    pub async fn namespace(&self, name: &str) -> Result<NamespaceSettings, ClientError> {
        self.json(self.req(Method::GET, &format!("/api/v1/namespaces/{name}")))
            .await
    }

    /// Replaces a namespace's settings (admin).
    pub async fn set_namespace(
        &self,
        s: &NamespaceSettings,
    ) -> Result<NamespaceSettings, ClientError> {
        let path = format!("/api/v1/namespaces/{}", s.name);
        self.json(self.req(Method::PUT, &path).json(s)).await
    }

    /// Back to weight 1 and no quota (admin).
    pub async fn clear_namespace(&self, name: &str) -> Result<NamespaceSettings, ClientError> {
        self.json(self.req(Method::DELETE, &format!("/api/v1/namespaces/{name}")))
            .await
    }

    /// The fair-share table.
    pub async fn share(&self) -> Result<ShareList, ClientError> {
        self.json(self.req(Method::GET, "/api/v1/share")).await
    }
}
