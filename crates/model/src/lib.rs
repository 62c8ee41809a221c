//! Zenith's vocabulary: IDs, job specs and their validation, resources, states and records.
//!
//! Pure data: no I/O, no clock, no async. Every other crate speaks in these types.

/// Serde for a type whose form in JSON is its text (`Display` out, `FromStr` in, the parse
/// error as the message): constraints, arrays, dependencies.
macro_rules! serde_as_text {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub mod array;
pub mod constraint;
pub mod dependency;
pub mod duration;
pub mod flow;
pub mod gang;
pub mod ids;
pub mod job;
pub mod namespace;
#[cfg(feature = "openapi")]
mod openapi;
pub mod reason;
pub mod records;
pub mod resources;
pub mod state;
pub mod tenancy;
pub mod validate;

pub use array::{ArrayPart, ArrayRange, MAX_ARRAY_PARTS};
pub use constraint::{Constraint, ConstraintOp};
pub use dependency::{Dependency, DependsOn};
pub use duration::DurationMs;
pub use gang::{Gang, GangMember};
pub use ids::{AttemptId, JobId, NodeId};
pub use job::{validate_word, Backoff, ExitAction, ExitRule, JobSpec, RetryPolicy};
pub use reason::{Reason, StepFailure};
pub use records::{AttemptRecord, IdempotencyRecord, JobRecord, NodeRecord, TaskRecord};
pub use resources::Resources;
pub use state::{AttemptOutcome, JobState, NodeState, TaskCounts, TaskState};
pub use validate::{ParseError, ValidationError};

/// Milliseconds since the Unix epoch, as handed to the engine by the server's clock module.
pub type Millis = u64;
