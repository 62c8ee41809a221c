//! Complete validation of a flow spec at submit: names, the dependency graph, templates and
//! their references, artifacts, schedules. Every error names the field path.

use crate::cron::Schedule;
use crate::template::{TemplateError, Templates};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{BTreeMap, HashMap, HashSet};
use zenith_model::flow::limits::*;
use zenith_model::flow::{FlowSpec, ForEach, StepKind, StepSpec};
use zenith_model::job::{env_key_ok, limits as job_limits, validate_failure_policy};
use zenith_model::{DurationMs, JobSpec, ValidationError};

/// The validated shape of a flow: step indices and edges, for the engine. It lives here, beside
/// `check`, its only producer: every index in it is valid and the graph acyclic because
/// `check` made it from a spec it accepted; it is never stored (a restore checks the stored
/// spec again) and nothing below the engine reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowPlan {
    /// Step name -> index in `spec.steps`.
    pub index: HashMap<String, u32>,
    /// Per step: the steps it depends on.
    pub deps: Vec<Vec<u32>>,
    /// Per step: the steps that depend on it.
    pub dependents: Vec<Vec<u32>>,
    /// Per step: the steps its templates read (`steps.<name>...`), sorted.
    pub reads: Vec<Vec<u32>>,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError::new(field, message)
}

/// Letters, digits and `_`, not starting with a digit, at most 63 characters.
fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

const IDENT_RULE: &str =
    "must be 1-63 letters, digits or '_', not starting with a digit (templates use it as a name)";

/// A relative path inside the working directory: no `..`, not absolute, no NUL.
pub fn check_rel_path(p: &str, field: &str) -> Result<(), ValidationError> {
    let bad = p.is_empty()
        || p.len() > job_limits::MAX_CWD
        || p.starts_with('/')
        || p.contains('\0')
        || p.split('/').any(|c| c == "..");
    if bad {
        Err(err(
            field,
            "must be a relative path inside the working directory (no '..', not absolute)",
        ))
    } else {
        Ok(())
    }
}

fn check_duration(d: Option<DurationMs>, field: &str) -> Result<(), ValidationError> {
    match d {
        Some(d) if d.0 == 0 || d.0 > job_limits::MAX_TIMEOUT_MS => {
            Err(err(field, "must be between 1ms and 366 days"))
        }
        _ => Ok(()),
    }
}

/// Validates `spec` completely and returns its plan.
pub fn check(spec: &FlowSpec, t: &Templates) -> Result<FlowPlan, ValidationError> {
    check_all(spec, t).map_err(|mut errors| errors.swap_remove(0))
}

/// Most errors [`check_all`] reports.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// [`check`], reporting every error it finds (up to [`MAX_REPORTED_ERRORS`], each with its
/// field path) instead of the first: the flow's own fields, then each step. Errors in the
/// step graph itself (names, dependencies, cycles) stop it, as nothing after can be judged.
pub fn check_all(spec: &FlowSpec, t: &Templates) -> Result<FlowPlan, Vec<ValidationError>> {
    let mut errors = Vec::new();
    if let Err(e) = check_flow_fields(spec) {
        errors.push(e);
    }
    let mut plan = match index_steps(spec).and_then(|index| link_steps(spec, index)) {
        Ok(plan) => plan,
        Err(e) => {
            errors.push(e);
            return Err(errors);
        }
    };
    let mut reads = Vec::with_capacity(spec.steps.len());
    let mut ancestry = Ancestry::new(&plan);
    for (i, s) in spec.steps.iter().enumerate() {
        let mut r = Vec::new();
        if let Err(e) = check_step(spec, &plan, &mut ancestry, t, i, s, &mut r) {
            errors.push(e.within(&format!("steps[{i}]")));
            if errors.len() >= MAX_REPORTED_ERRORS {
                break;
            }
        }
        r.sort_unstable();
        r.dedup();
        reads.push(r);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    plan.reads = reads;
    Ok(plan)
}

/// The flow's own fields: name, params, deadline, ttl, retryBudget, schedule and timezone.
fn check_flow_fields(spec: &FlowSpec) -> Result<(), ValidationError> {
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= MAX_NAME
        && spec
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        return Err(err("name", "must be 1-63 characters of [a-z0-9-]"));
    }
    if !spec.namespace.is_empty() {
        zenith_model::tenancy::validate_namespace(&spec.namespace, "namespace")?;
    }
    if !spec.submitter.is_empty() {
        zenith_model::tenancy::validate_user(&spec.submitter, "submitter")?;
    }
    if spec.params.len() > MAX_PARAMS {
        return Err(err("params", format!("at most {MAX_PARAMS} parameters")));
    }
    for (k, v) in &spec.params {
        if !is_ident(k) {
            return Err(err(format!("params.{k}"), IDENT_RULE));
        }
        if v.len() > MAX_PARAM_BYTES || v.contains('\0') {
            return Err(err(
                format!("params.{k}"),
                "value must be at most 64 KiB without NUL",
            ));
        }
    }
    check_duration(spec.deadline, "deadline")?;
    check_duration(spec.ttl, "ttl")?;
    if spec.retry_budget.is_some_and(|b| b > MAX_RETRY_BUDGET) {
        return Err(err("retryBudget", format!("at most {MAX_RETRY_BUDGET}")));
    }
    match (&spec.schedule, &spec.timezone) {
        (Some(s), tz) => {
            Schedule::parse(s, tz.as_deref())?;
        }
        (None, Some(_)) => return Err(err("timezone", "needs a schedule")),
        (None, None) => {}
    }
    Ok(())
}

/// Step count and names: name -> index in `spec.steps`.
fn index_steps(spec: &FlowSpec) -> Result<HashMap<String, u32>, ValidationError> {
    if spec.steps.is_empty() {
        return Err(err("steps", "must list at least one step"));
    }
    if spec.steps.len() > MAX_STEPS {
        return Err(err("steps", format!("at most {MAX_STEPS} steps")));
    }
    let mut index = HashMap::with_capacity(spec.steps.len());
    for (i, s) in spec.steps.iter().enumerate() {
        if !is_ident(&s.name) {
            return Err(err(format!("steps[{i}].name"), IDENT_RULE));
        }
        if index.insert(s.name.clone(), i as u32).is_some() {
            return Err(err(
                format!("steps[{i}].name"),
                format!("duplicate step name {:?}", s.name),
            ));
        }
    }
    Ok(index)
}

/// The dependency graph: each `depends` entry resolved, no cycle. Returns the plan without
/// `reads` (the step checks fill them in).
fn link_steps(spec: &FlowSpec, index: HashMap<String, u32>) -> Result<FlowPlan, ValidationError> {
    let n = spec.steps.len();
    let mut deps = vec![Vec::new(); n];
    let mut dependents = vec![Vec::new(); n];
    let mut graph = DiGraph::<u32, ()>::with_capacity(n, n);
    let nodes: Vec<NodeIndex> = (0..n as u32).map(|i| graph.add_node(i)).collect();
    for (i, s) in spec.steps.iter().enumerate() {
        let mut seen = HashSet::new();
        for (j, d) in s.depends.iter().enumerate() {
            let field = format!("steps[{i}].depends[{j}]");
            let Some(&di) = index.get(d) else {
                return Err(err(field, format!("unknown step {d:?}")));
            };
            if di as usize == i {
                return Err(err(field, "a step cannot depend on itself"));
            }
            if !seen.insert(di) {
                return Err(err(field, format!("{d:?} is listed twice")));
            }
            deps[i].push(di);
            dependents[di as usize].push(i as u32);
            graph.add_edge(nodes[di as usize], nodes[i], ());
        }
    }
    if let Err(cycle) = petgraph::algo::toposort(&graph, None) {
        let i = graph[cycle.node_id()] as usize;
        return Err(err(
            format!("steps[{i}].depends"),
            format!("dependency cycle through step {:?}", spec.steps[i].name),
        ));
    }
    Ok(FlowPlan {
        index,
        deps,
        dependents,
        reads: Vec::new(),
    })
}

/// Answers "is A an ancestor of B" with a memo, walking `depends` edges.
struct Ancestry<'a> {
    plan: &'a FlowPlan,
    memo: HashMap<(u32, u32), bool>,
}

impl<'a> Ancestry<'a> {
    fn new(plan: &'a FlowPlan) -> Self {
        Ancestry {
            plan,
            memo: HashMap::new(),
        }
    }

    fn is_ancestor(&mut self, a: u32, of: u32) -> bool {
        if let Some(&r) = self.memo.get(&(a, of)) {
            return r;
        }
        let mut stack = self.plan.deps[of as usize].clone();
        let mut seen = HashSet::new();
        let mut found = false;
        while let Some(x) = stack.pop() {
            if x == a {
                found = true;
                break;
            }
            if seen.insert(x) {
                stack.extend(self.plan.deps[x as usize].iter().copied());
            }
        }
        self.memo.insert((a, of), found);
        found
    }
}

/// Checks step `i` (`s`) field by field, in the order its errors are reported, and collects
/// in `reads` the steps its templates read.
fn check_step(
    spec: &FlowSpec,
    plan: &FlowPlan,
    anc: &mut Ancestry,
    t: &Templates,
    i: usize,
    s: &StepSpec,
    reads: &mut Vec<u32>,
) -> Result<(), ValidationError> {
    check_kind(s)?;
    let names = Names {
        spec,
        plan,
        me: i as u32,
        has_item: s.for_each.is_some(),
    };
    let mut templates = StepTemplates {
        t,
        names,
        anc,
        reads,
    };
    check_command(s, &mut templates)?;
    if let Some(r) = &s.resources {
        r.validate().map_err(|e| e.within("resources"))?;
    }
    if let Some(g) = &s.gang {
        g.validate()?;
        if !s.outputs.is_empty() {
            return Err(err(
                "gang",
                "a gang step has no outputs (each of its tasks would write its own)",
            ));
        }
    }
    if let Some(w) = &s.when {
        // `when` decides whether the step runs at all: before any item exists.
        templates.expression(w, "when")?;
    }
    check_retry_and_limits(s)?;
    check_outputs(s)?;
    check_inputs(s, names, templates.anc)?;
    check_for_each(s, &mut templates)
}

/// An approval step takes nothing a job would; a job step has `run` or `script`.
fn check_kind(s: &StepSpec) -> Result<(), ValidationError> {
    if s.kind == StepKind::Approval {
        let extra = s.run.is_some()
            || s.script.is_some()
            || !s.env.is_empty()
            || s.cwd.is_some()
            || s.resources.is_some()
            || s.gang.is_some()
            || !s.constraints.is_empty()
            || !s.prefer.is_empty()
            || s.queue.is_some()
            || s.priority.is_some()
            || s.retry.is_some()
            || s.timeout.is_some()
            || !s.failure_policy.is_empty()
            || !s.outputs.is_empty()
            || !s.inputs.is_empty()
            || s.for_each.is_some()
            || s.continue_on_failure;
        if extra {
            return Err(err(
                "type",
                "an approval step takes only name, depends and when",
            ));
        }
    } else {
        match (&s.run, &s.script) {
            (Some(_), Some(_)) => return Err(err("run", "give run or script, not both")),
            (None, None) => return Err(err("run", "give run (argv) or script")),
            _ => {}
        }
    }
    Ok(())
}

/// The templated fields of the process: `run`, `script`, `env`, `cwd`.
fn check_command(s: &StepSpec, templates: &mut StepTemplates) -> Result<(), ValidationError> {
    if let Some(run) = &s.run {
        if run.is_empty() || run.len() > job_limits::MAX_ARGS {
            return Err(err("run", "must have 1-4096 elements"));
        }
        if run[0].is_empty() {
            return Err(err("run[0]", "must not be empty"));
        }
        for (j, a) in run.iter().enumerate() {
            let f = format!("run[{j}]");
            if a.contains('\0') {
                return Err(err(f, "must not contain NUL"));
            }
            templates.template(a, &f)?;
        }
    }
    if let Some(script) = &s.script {
        if script.len() > job_limits::MAX_ARGV_BYTES || script.contains('\0') {
            return Err(err("script", "at most 1 MiB without NUL"));
        }
        templates.template(script, "script")?;
    }
    if s.env.len() > job_limits::MAX_ENV {
        return Err(err("env", "at most 1024 variables"));
    }
    for (k, v) in &s.env {
        let f = format!("env.{k}");
        if !env_key_ok(k) || v.contains('\0') {
            return Err(err(
                f,
                "name of 1-256 bytes without '=' or NUL; value without NUL",
            ));
        }
        templates.template(v, &f)?;
    }
    if let Some(cwd) = &s.cwd {
        if cwd.contains('\0') || cwd.len() > job_limits::MAX_CWD {
            return Err(err("cwd", "at most 4096 bytes without NUL"));
        }
        if !cwd.contains("{{") && !cwd.starts_with('/') {
            return Err(err("cwd", "must be an absolute path"));
        }
        templates.template(cwd, "cwd")?;
    }
    Ok(())
}

/// `retry` (by the job rules, named as in the flow spec), `timeout`, `failurePolicy`.
fn check_retry_and_limits(s: &StepSpec) -> Result<(), ValidationError> {
    // Placement is checked as the step's job will be: same limits, same messages.
    let mut job = JobSpec::new(vec!["x".into()]);
    job.constraints = s.constraints.clone();
    job.prefer = s.prefer.clone();
    if let Some(q) = &s.queue {
        job.queue = q.clone();
    }
    job.priority = s.priority.unwrap_or(0);
    job.validate()?;
    if let Some(r) = &s.retry {
        let mut job = JobSpec::new(vec!["x".into()]);
        job.retry = r.policy();
        job.validate().map_err(|e| {
            let f = e.field.replace("max_delay", "maxDelay");
            err(f, e.message)
        })?;
    }
    check_duration(s.timeout, "timeout")?;
    validate_failure_policy(&s.failure_policy, "failurePolicy")
}

/// `outputs`: parameter names, and artifact names and paths (the artifact count limit covers
/// inputs too).
fn check_outputs(s: &StepSpec) -> Result<(), ValidationError> {
    let mut seen = HashSet::new();
    if s.outputs.params.len() > MAX_OUTPUT_PARAMS {
        return Err(err(
            "outputs.params",
            format!("at most {MAX_OUTPUT_PARAMS}"),
        ));
    }
    for (j, p) in s.outputs.params.iter().enumerate() {
        let f = format!("outputs.params[{j}]");
        if !is_ident(p) {
            return Err(err(f, IDENT_RULE));
        }
        if !seen.insert(p.as_str()) {
            return Err(err(f, format!("{p:?} is listed twice")));
        }
    }
    seen.clear();
    if s.outputs.artifacts.len() > MAX_ARTIFACTS || s.inputs.artifacts.len() > MAX_ARTIFACTS {
        return Err(err("outputs.artifacts", format!("at most {MAX_ARTIFACTS}")));
    }
    for (j, a) in s.outputs.artifacts.iter().enumerate() {
        let f = format!("outputs.artifacts[{j}]");
        if !is_ident(&a.name) {
            return Err(err(format!("{f}.name"), IDENT_RULE));
        }
        if !seen.insert(a.name.as_str()) {
            return Err(err(
                format!("{f}.name"),
                format!("{:?} is listed twice", a.name),
            ));
        }
        check_rel_path(&a.path, &format!("{f}.path"))?;
    }
    Ok(())
}

/// `inputs`: each artifact comes from an ancestor that declares it and does not fan out.
fn check_inputs(s: &StepSpec, names: Names, anc: &mut Ancestry) -> Result<(), ValidationError> {
    for (j, a) in s.inputs.artifacts.iter().enumerate() {
        let f = format!("inputs.artifacts[{j}]");
        check_rel_path(&a.path, &format!("{f}.path"))?;
        let Some((step, name)) = a.source() else {
            return Err(err(format!("{f}.from"), "must be <step>.<artifact>"));
        };
        let Some(&si) = names.plan.index.get(step) else {
            return Err(err(format!("{f}.from"), format!("unknown step {step:?}")));
        };
        if !anc.is_ancestor(si, names.me) {
            return Err(err(
                format!("{f}.from"),
                format!("step {step:?} must be a dependency (direct or indirect) of this step"),
            ));
        }
        let src = &names.spec.steps[si as usize];
        if src.for_each.is_some() {
            return Err(err(
                format!("{f}.from"),
                format!("step {step:?} fans out (forEach): its artifacts cannot be inputs"),
            ));
        }
        if !src.outputs.artifacts.iter().any(|x| x.name == name) {
            return Err(err(
                format!("{f}.from"),
                format!("step {step:?} declares no artifact {name:?}"),
            ));
        }
    }
    Ok(())
}

/// `forEach`: a literal list within the limit, or an expression (evaluated before any item).
fn check_for_each(s: &StepSpec, templates: &mut StepTemplates) -> Result<(), ValidationError> {
    match &s.for_each {
        Some(ForEach::Items(items)) if items.len() > MAX_FOREACH_ITEMS => {
            Err(err("forEach", format!("at most {MAX_FOREACH_ITEMS} items")))
        }
        Some(ForEach::Expr(e)) => templates.expression(e, "forEach"),
        _ => Ok(()),
    }
}

/// The templates of one step: compiles each, checks the names it reads and collects the steps
/// it reads.
struct StepTemplates<'a, 'b, 'p> {
    t: &'a Templates,
    names: Names<'a>,
    anc: &'b mut Ancestry<'p>,
    reads: &'b mut Vec<u32>,
}

impl StepTemplates<'_, '_, '_> {
    /// A template (`{{ ... }}` inside text), where `item` exists if the step fans out.
    fn template(&mut self, source: &str, field: &str) -> Result<(), ValidationError> {
        let names = self.t.names_in_template(source);
        self.names.check(self.anc, self.reads, names, field)
    }

    /// An expression evaluated for the step as a whole, before any item exists.
    fn expression(&mut self, source: &str, field: &str) -> Result<(), ValidationError> {
        let names = self.t.names_in_expression(source);
        let before_items = Names {
            has_item: false,
            ..self.names
        };
        before_items.check(self.anc, self.reads, names, field)
    }
}

/// Checks the names a template reads against what exists for one step.
#[derive(Clone, Copy)]
struct Names<'a> {
    spec: &'a FlowSpec,
    plan: &'a FlowPlan,
    me: u32,
    has_item: bool,
}

impl Names<'_> {
    fn check(
        &self,
        anc: &mut Ancestry,
        reads: &mut Vec<u32>,
        names: Result<HashSet<String>, TemplateError>,
        field: &str,
    ) -> Result<(), ValidationError> {
        let names = names.map_err(|m| err(field, format!("template: {m}")))?;
        let mut sorted: Vec<&String> = names.iter().collect();
        sorted.sort();
        for n in sorted {
            if let Some(step) = self
                .check_one(anc, n)
                .map_err(|m| err(field, format!("template reads {n}: {m}")))?
            {
                reads.push(step);
            }
        }
        Ok(())
    }

    /// Checks one dotted name; returns the step it reads, if any.
    // String: private to `Names`; `check` wraps each message at once into a ValidationError
    // naming the field and the name ("template reads <name>: <message>").
    fn check_one(&self, anc: &mut Ancestry, name: &str) -> Result<Option<u32>, String> {
        let parts: Vec<&str> = name.split('.').collect();
        match parts.as_slice() {
            ["params"] => Ok(None),
            ["params", p, ..] => {
                if self.spec.params.contains_key(*p) {
                    Ok(None)
                } else {
                    Err(format!("no parameter {p:?} is declared in params"))
                }
            }
            ["item", ..] if self.has_item => Ok(None),
            ["item", ..] => Err("item exists only in forEach steps".into()),
            ["run"] | ["run", "id" | "name"] => Ok(None),
            ["run", ..] => Err("run has only id and name".into()),
            ["steps"] => Err("name a step: steps.<name>".into()),
            ["steps", step, rest @ ..] => {
                let Some(&si) = self.plan.index.get(*step) else {
                    return Err(format!("unknown step {step:?}"));
                };
                if !anc.is_ancestor(si, self.me) {
                    return Err(format!(
                        "step {step:?} must be a dependency (direct or indirect) of this step"
                    ));
                }
                match rest {
                    [] | ["state"] | ["outputs"] => Ok(Some(si)),
                    ["outputs", p, ..] => {
                        let src = &self.spec.steps[si as usize];
                        if src.outputs.params.iter().any(|x| x == p) {
                            Ok(Some(si))
                        } else {
                            Err(format!("step {step:?} declares no output {p:?}"))
                        }
                    }
                    _ => Err("a step has state and outputs".into()),
                }
            }
            ["range" | "dict" | "namespace" | "loop"] => Ok(None),
            _ => Err("unknown name (params, steps, item and run are available)".into()),
        }
    }
}

/// Run parameters: the spec's defaults overridden by `given`; every given name must be declared.
pub fn merge_params(
    spec: &FlowSpec,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ValidationError> {
    let mut out = spec.params.clone();
    for (k, v) in given {
        if !spec.params.contains_key(k) {
            return Err(err(
                format!("params.{k}"),
                "not declared in the flow's params",
            ));
        }
        if v.len() > MAX_PARAM_BYTES || v.contains('\0') {
            return Err(err(
                format!("params.{k}"),
                "value must be at most 64 KiB without NUL",
            ));
        }
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}
