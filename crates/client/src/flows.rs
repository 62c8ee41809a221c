//! Flow calls of the typed client.

use crate::{Client, ClientError};
use reqwest::Method;
use std::collections::BTreeMap;
use zenith_model::flow::RunId;
use zenith_protocol::flows::{FlowList, FlowText, RunRequest, RunSubmitted, RunSummary, RunView};

impl Client {
    /// Starts a run of a flow given as YAML text.
    pub async fn run_flow(
        &self,
        yaml: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<RunId, ClientError> {
        self.start_run(RunRequest {
            flow: Some(yaml.to_string()),
            name: None,
            params: params.clone(),
        })
        .await
    }

    /// Starts a run of an applied flow.
    pub async fn run_applied(
        &self,
        name: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<RunId, ClientError> {
        self.start_run(RunRequest {
            flow: None,
            name: Some(name.to_string()),
            params: params.clone(),
        })
        .await
    }

    async fn start_run(&self, req: RunRequest) -> Result<RunId, ClientError> {
        let s: RunSubmitted = self
            .json(
                self.req(Method::POST, "/api/v1/flows/runs")
                    .query(&self.ns_query())
                    .json(&req),
            )
            .await?;
        Ok(s.id)
    }

    pub async fn run(&self, id: RunId) -> Result<RunView, ClientError> {
        self.json(self.req(Method::GET, &format!("/api/v1/flows/runs/{id}")))
            .await
    }

    pub async fn runs(
        &self,
        name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunSummary>, ClientError> {
        let mut q: Vec<(&str, String)> = vec![("limit", limit.to_string())];
        q.extend(self.ns_query());
        if let Some(n) = name {
            q.push(("name", n.to_string()));
        }
        self.json(self.req(Method::GET, "/api/v1/flows/runs").query(&q))
            .await
    }

    pub async fn flows(&self) -> Result<FlowList, ClientError> {
        self.json(
            self.req(Method::GET, "/api/v1/flows")
                .query(&self.ns_query()),
        )
        .await
    }

    pub async fn cancel_run(&self, id: RunId) -> Result<(), ClientError> {
        self.send(self.req(Method::POST, &format!("/api/v1/flows/runs/{id}/cancel")))
            .await
            .map(|_| ())
    }

    pub async fn approve(&self, id: RunId, step: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/flows/runs/{id}/steps/{step}/approve");
        self.send(self.req(Method::POST, &path)).await.map(|_| ())
    }

    /// Stores a definition under its name and arms its schedule.
    pub async fn apply_flow(&self, name: &str, yaml: &str) -> Result<(), ClientError> {
        let body = FlowText {
            flow: yaml.to_string(),
        };
        self.send(
            self.req(Method::PUT, &format!("/api/v1/flows/{name}"))
                .query(&self.ns_query())
                .json(&body),
        )
        .await
        .map(|_| ())
    }

    pub async fn delete_flow(&self, name: &str) -> Result<(), ClientError> {
        self.send(
            self.req(Method::DELETE, &format!("/api/v1/flows/{name}"))
                .query(&self.ns_query()),
        )
        .await
        .map(|_| ())
    }
}
