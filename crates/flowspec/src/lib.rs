//! The flow compiler: reads a flow spec (`parse_yaml`, errors with the field path and, for
//! YAML errors, line and column), validates it completely (`check`: names, graph, templates,
//! cron) into the [`FlowPlan`] the engine runs it by, renders its templates, computes cron
//! fire times and writes the spec's JSON Schema. The spec types themselves are vocabulary and
//! live in `zenith_model::flow`; this crate holds what only the server, engine and CLI need,
//! with its heavy dependencies (minijinja, petgraph, croner, chrono-tz, serde-saphyr,
//! schemars), so the agent and the client build without them.

mod check;
pub mod cron;
pub mod template;

pub use check::{check, check_all, merge_params, FlowPlan, MAX_REPORTED_ERRORS};
pub use template::{TemplateError, Templates};

use zenith_model::flow::{limits, FlowSpec};
use zenith_model::ValidationError;

/// Reads a flow spec from YAML (JSON is YAML too). Syntax and type errors carry line and
/// column and, where it can be found, the field path (`steps[2].depends[0]`).
pub fn parse_yaml(text: &str) -> Result<FlowSpec, ValidationError> {
    if text.len() > limits::MAX_SPEC_BYTES {
        return Err(ValidationError::new(
            "",
            format!("spec larger than {} bytes", limits::MAX_SPEC_BYTES),
        ));
    }
    // A flow has little use for alias expansion: a bomb stops after `replays` replayed
    // events (the library's default, 1,000,000, takes a fifth of a second to reach).
    let options = |replays: usize| {
        let mut o = serde_saphyr::Options::default();
        o.strict_booleans = true;
        o.alias_limits.max_total_replayed_events = replays;
        o
    };
    match serde_saphyr::from_str_with_options::<FlowSpec>(text, options(20_000)) {
        Ok(spec) => Ok(spec),
        Err(e) => {
            let message = e.without_snippet().to_string();
            // Find the field path: read the document untyped (on a tighter budget: this is
            // only for a better message), then type it with path tracking.
            let field =
                serde_saphyr::from_str_with_options::<serde_json::Value>(text, options(2_000))
                    .ok()
                    .and_then(|v| {
                        serde_path_to_error::deserialize::<_, FlowSpec>(v)
                            .err()
                            .map(|pe| pe.path().to_string())
                    })
                    .filter(|p| p != ".")
                    .unwrap_or_default();
            Err(ValidationError::new(field, message))
        }
    }
}

#[cfg(test)]
mod tests;

/// The JSON Schema of the flow spec, for editors (`zenith flow schema`,
/// `docs/flow.schema.json`).
pub fn json_schema() -> serde_json::Value {
    let mut s = serde_json::to_value(schemars::schema_for!(FlowSpec)).unwrap_or_default();
    if let Some(o) = s.as_object_mut() {
        o.insert(
            "$id".into(),
            "https://zenith.dev/schemas/flow-v1.json".into(),
        );
    }
    s
}
