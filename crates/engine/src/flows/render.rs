//! Turning a step into a job spec: templates rendered against the run's context.

use crate::Engine;
use minijinja::value::Value;
use serde_json::{json, Map};
use zenith_flowspec::template::{self, to_value};
use zenith_model::flow::{
    artifact_key, ArtifactIn, ArtifactOut, RunId, StepIo, StepRef, StepState,
};
use zenith_model::{JobSpec, ValidationError};

impl Engine {
    /// The template context of step `si`: `params`, `run`, `item`, and `steps.<name>` for the
    /// steps its templates read (state, and outputs: a fan-out step's outputs are lists).
    pub(crate) fn template_context(
        &self,
        id: RunId,
        si: u32,
        item: Option<&serde_json::Value>,
    ) -> Value {
        let Some(run) = self.runs.get(&id) else {
            return Value::UNDEFINED;
        };
        let mut steps = Map::new();
        for &r in &run.plan.reads[si as usize] {
            let s = &run.steps[r as usize];
            let spec = &run.spec.steps[r as usize];
            let mut outputs = Map::new();
            let fan_out = spec.for_each.is_some();
            for p in &spec.outputs.params {
                let v = if fan_out {
                    serde_json::Value::Array(
                        s.instances
                            .iter()
                            .map(|i| {
                                i.outputs
                                    .get(p)
                                    .map(|v| json!(v))
                                    .unwrap_or(serde_json::Value::Null)
                            })
                            .collect(),
                    )
                } else if s.state == StepState::Succeeded {
                    match s.instances.first().and_then(|i| i.outputs.get(p)) {
                        Some(v) => json!(v),
                        None => continue,
                    }
                } else {
                    continue;
                };
                outputs.insert(p.clone(), v);
            }
            steps.insert(
                spec.name.clone(),
                json!({"state": s.state.as_str(), "outputs": outputs}),
            );
        }
        let mut ctx = json!({
            "params": run.params,
            "run": {"id": id.to_string(), "name": run.spec.name},
            "steps": steps,
        });
        if let (Some(item), Some(obj)) = (item, ctx.as_object_mut()) {
            obj.insert("item".into(), item.clone());
        }
        to_value(&ctx)
    }

    /// What the agent does around the process of a step instance.
    pub(crate) fn step_io(&self, o: StepRef) -> StepIo {
        let Some(run) = self.runs.get(&o.run) else {
            return StepIo::default();
        };
        let Some(step) = run.spec.steps.get(o.step as usize) else {
            return StepIo::default();
        };
        StepIo {
            outputs: step.outputs.params.clone(),
            artifacts: step
                .outputs
                .artifacts
                .iter()
                .map(|a| ArtifactOut {
                    name: a.name.clone(),
                    path: a.path.clone(),
                    key: artifact_key(o.run, o.step, o.instance, &a.name),
                })
                .collect(),
            inputs: step
                .inputs
                .artifacts
                .iter()
                .filter_map(|a| {
                    let (from, name) = a.source()?;
                    let si = *run.plan.index.get(from)?;
                    Some(ArtifactIn {
                        key: artifact_key(o.run, si, 0, name),
                        path: a.path.clone(),
                    })
                })
                .collect(),
        }
    }

    /// Renders instance `ii` of step `si` into a validated job spec.
    pub(crate) fn step_job_spec(
        &self,
        id: RunId,
        si: u32,
        ii: u32,
        item: Option<&serde_json::Value>,
    ) -> Result<JobSpec, ValidationError> {
        let run = self
            .runs
            .get(&id)
            .ok_or_else(|| invalid("", "run is gone".into()))?;
        let step = &run.spec.steps[si as usize];
        let ctx = self.template_context(id, si, item);
        let t = &self.templates;
        let mut script_values = Vec::new();
        let command = match (&step.run, &step.script) {
            (Some(argv), _) => argv
                .iter()
                .enumerate()
                .map(|(j, a)| {
                    t.render(a, &ctx)
                        .map_err(|e| invalid(&format!("run[{j}]"), e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?,
            (None, Some(script)) => {
                let (text, values) = t
                    .render_script(script, &ctx)
                    .map_err(|e| invalid("script", e.to_string()))?;
                script_values = values;
                vec!["sh".to_string(), "-eu".to_string(), "-c".to_string(), text]
            }
            (None, None) => return Err(invalid("", "step has nothing to run".into())),
        };
        let mut spec = JobSpec::new(command);
        // The run's namespace and submitter: its jobs are seen, counted against quotas and
        // shared fairly as theirs.
        spec.namespace = run.spec.namespace.clone();
        spec.submitter = run.spec.submitter.clone();
        spec.name = if item.is_some() {
            format!("{}/{}[{ii}]", run.spec.name, step.name)
        } else {
            format!("{}/{}", run.spec.name, step.name)
        };
        for (k, v) in &step.env {
            let v = t
                .render(v, &ctx)
                .map_err(|e| invalid(&format!("env.{k}"), e.to_string()))?;
            spec.env.insert(k.clone(), v);
        }
        for (n, v) in script_values.into_iter().enumerate() {
            spec.env
                .insert(format!("{}{n}", template::SCRIPT_VALUE_PREFIX), v);
        }
        spec.env.insert("ZENITH_RUN_ID".into(), id.to_string());
        spec.env.insert("ZENITH_FLOW".into(), run.spec.name.clone());
        spec.env.insert("ZENITH_STEP".into(), step.name.clone());
        if let Some(cwd) = &step.cwd {
            spec.cwd = Some(
                t.render(cwd, &ctx)
                    .map_err(|e| invalid("cwd", e.to_string()))?,
            );
        }
        if let Some(r) = &step.resources {
            spec.resources = r.clone();
        }
        spec.gang = step.gang;
        spec.constraints = step.constraints.clone();
        spec.prefer = step.prefer.clone();
        if let Some(q) = &step.queue {
            spec.queue = q.clone();
        }
        if let Some(p) = step.priority {
            spec.priority = p;
        }
        if let Some(r) = &step.retry {
            spec.retry = r.policy();
        }
        spec.timeout = step.timeout;
        spec.failure_policy = step.failure_policy.clone();
        spec.validate()?;
        Ok(spec)
    }
}

/// A step's job could not be rendered: which field, and why.
fn invalid(field: &str, message: String) -> ValidationError {
    ValidationError::new(field, message)
}
