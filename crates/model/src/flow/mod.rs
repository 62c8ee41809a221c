//! Flows as vocabulary: the spec (version 1) users write, the records of runs, steps,
//! instances and applied definitions, their states, and what an agent does around a step.
//! Reading, checking and running a spec (YAML parser, `check`, templates, cron, JSON Schema)
//! is `zenith-flowspec`'s, so the agent and the client build without it.

mod run;
mod spec;

pub use run::*;
pub use spec::*;

/// Limits on a flow spec.
pub mod limits {
    /// Largest spec text (YAML or JSON).
    pub const MAX_SPEC_BYTES: usize = 4 << 20;
    pub const MAX_STEPS: usize = 10_000;
    /// Most instances of one `forEach` step.
    pub const MAX_FOREACH_ITEMS: usize = 10_000;
    pub const MAX_PARAMS: usize = 256;
    pub const MAX_PARAM_BYTES: usize = 64 << 10;
    pub const MAX_OUTPUT_PARAMS: usize = 64;
    /// Largest value of one output parameter.
    pub const MAX_OUTPUT_BYTES: usize = 64 << 10;
    pub const MAX_ARTIFACTS: usize = 32;
    pub const MAX_RETRY_BUDGET: u32 = 100_000;
    pub const MAX_NAME: usize = 63;
}
