//! Gang (multi-node) jobs: `nodes` members' nodes, `tasks_per_node` tasks on each, placed all
//! together or not at all, and restarted together when one member ends early.

use crate::ValidationError;
use serde::{Deserialize, Serialize};

/// Most nodes one gang may span.
pub const MAX_GANG_NODES: u32 = 1024;
/// Most tasks of a gang on one node.
pub const MAX_TASKS_PER_NODE: u32 = 256;

/// `{"nodes": 4, "tasksPerNode": 2}` (`tasks_per_node` is read too): 8 tasks (ranks 0-7), two on each of 4 distinct nodes.
/// Each task asks the job's `resources`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Gang {
    pub nodes: u32,
    #[serde(default = "one", rename = "tasksPerNode", alias = "tasks_per_node")]
    pub tasks_per_node: u32,
}

fn one() -> u32 {
    1
}

impl Gang {
    /// Its tasks: nodes × tasks per node.
    pub fn size(&self) -> u32 {
        self.nodes.saturating_mul(self.tasks_per_node)
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        if !(1..=MAX_GANG_NODES).contains(&self.nodes) {
            return Err(ValidationError::new(
                "gang.nodes",
                format!("must be between 1 and {MAX_GANG_NODES}"),
            ));
        }
        if !(1..=MAX_TASKS_PER_NODE).contains(&self.tasks_per_node) {
            return Err(ValidationError::new(
                "gang.tasksPerNode",
                format!("must be between 1 and {MAX_TASKS_PER_NODE}"),
            ));
        }
        Ok(())
    }
}

/// What one member of a placed gang is told (as `ZENITH_*` variables and a hostfile).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GangMember {
    /// Its task index: 0 .. nodes × tasks per node (`ZENITH_RANK`).
    pub rank: u32,
    /// Its node's place in `hosts` (`ZENITH_NODE_RANK`).
    pub node_rank: u32,
    /// Its place among the gang's tasks on its node (`ZENITH_LOCAL_RANK`).
    pub local_rank: u32,
    pub tasks_per_node: u32,
    /// The gang's nodes' addresses, by node rank (`ZENITH_NUM_NODES` is their count).
    pub hosts: Vec<String>,
    /// `host:port` on node rank 0 for the gang to meet at (`ZENITH_RENDEZVOUS`).
    pub rendezvous: String,
}

impl GangMember {
    /// The environment a member runs with.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let nodes = self.hosts.len() as u32;
        let (host, port) = self
            .rendezvous
            .rsplit_once(':')
            .unwrap_or((self.rendezvous.as_str(), ""));
        vec![
            ("ZENITH_RANK", self.rank.to_string()),
            ("ZENITH_NODE_RANK", self.node_rank.to_string()),
            ("ZENITH_LOCAL_RANK", self.local_rank.to_string()),
            ("ZENITH_NUM_NODES", nodes.to_string()),
            ("ZENITH_TASKS_PER_NODE", self.tasks_per_node.to_string()),
            (
                "ZENITH_WORLD_SIZE",
                (nodes.saturating_mul(self.tasks_per_node)).to_string(),
            ),
            ("ZENITH_RENDEZVOUS", self.rendezvous.clone()),
            // What torchrun and torch.distributed read.
            ("MASTER_ADDR", host.to_string()),
            ("MASTER_PORT", port.to_string()),
        ]
    }

    /// An MPI hostfile (Open MPI's `host slots=N` form): one line per node, by node rank.
    pub fn hostfile(&self) -> String {
        self.hosts
            .iter()
            .map(|h| format!("{h} slots={}\n", self.tasks_per_node))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_told_its_place() {
        let m = GangMember {
            rank: 5,
            node_rank: 2,
            local_rank: 1,
            tasks_per_node: 2,
            hosts: vec!["10.0.0.1".into(), "10.0.0.2".into(), "10.0.0.3".into()],
            rendezvous: "10.0.0.1:29500".into(),
        };
        let env: std::collections::BTreeMap<_, _> = m.env().into_iter().collect();
        assert_eq!(env["ZENITH_RANK"], "5");
        assert_eq!(env["ZENITH_NUM_NODES"], "3");
        assert_eq!(env["ZENITH_WORLD_SIZE"], "6");
        assert_eq!(env["MASTER_ADDR"], "10.0.0.1");
        assert_eq!(env["MASTER_PORT"], "29500");
        assert_eq!(
            m.hostfile(),
            "10.0.0.1 slots=2\n10.0.0.2 slots=2\n10.0.0.3 slots=2\n"
        );
        assert!(Gang {
            nodes: 0,
            tasks_per_node: 1
        }
        .validate()
        .is_err());
        assert_eq!(
            Gang {
                nodes: 2,
                tasks_per_node: 0
            }
            .validate()
            .unwrap_err()
            .field,
            "gang.tasksPerNode"
        );
    }
}
