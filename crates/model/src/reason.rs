//! Why a job, task, step or run ended the way it did: a reason code with its details.
//!
//! The text form (`Display`) is what the store, the API and the CLI have always shown
//! (`exit code 7`, `task 3: signal 9`, `step build failed: exit code 2`), so stored rows and
//! clients keep working; [`Reason::parse`] reads it back. Reasons nest: a job's reason names
//! the task that failed and that task's reason, a run's names its failed step.

use crate::flow::StepState;
use crate::AttemptOutcome;
use std::fmt;

/// One reason. Boxed causes keep the common leaves small.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The process exited with this code.
    ExitCode {
        code: i32,
    },
    /// The process was killed by this signal.
    Signal {
        signal: i32,
    },
    /// The attempt ran past its timeout.
    TimedOut,
    /// It failed while its node's disk was full (its output could not be written).
    DiskFull,
    Cancelled,
    /// Its node was lost while it ran.
    NodeLost,
    /// Stopped because its node was drained past its deadline (requeued).
    Evicted,
    /// Stopped to make room for a higher-priority job (requeued).
    Preempted,
    /// Stopped because another member of its gang ended early.
    GangStopped,
    /// Its nodes were lost more often than the requeue limit allows.
    NodeLostTimes {
        times: u32,
    },
    /// The process could not be started.
    StartFailed {
        message: Box<str>,
    },
    /// Its output parameters or artifacts could not be collected.
    OutputsFailed {
        message: Box<str>,
    },
    /// The exit code's policy says fail at once (no retry).
    FailurePolicy {
        cause: Box<Reason>,
    },
    /// It would have retried, but its run's retry budget is spent.
    RetryBudgetSpent {
        cause: Box<Reason>,
        budget: u32,
    },
    /// Of a job: its first failed task.
    Task {
        index: u32,
        cause: Box<Reason>,
    },
    /// Of a fanned-out step: its first failed item.
    Item {
        index: u32,
        cause: Box<Reason>,
    },
    /// Of a run: its first failed (or cancelled) step.
    Step(Box<StepFailure>),
    /// Failed with nothing more recorded.
    Failed,
    /// A step failed or was cancelled with nothing recorded.
    Unexplained,
    /// A run (or its step) ran past its deadline.
    DeadlineExceeded,
    /// A step was approved.
    Approved,
    /// A step did not run: a dependency failed, was cancelled or was skipped for that.
    DependencyNotMet {
        step: Box<str>,
        state: StepState,
    },
    /// A step's `when` was false.
    WhenFalse,
    /// A step's `when` could not be evaluated.
    WhenFailed {
        message: Box<str>,
    },
    /// A step's `forEach` could not be evaluated.
    ForEachFailed {
        message: Box<str>,
    },
    /// A step's `forEach` gave more items than allowed.
    TooManyItems {
        limit: u64,
    },
    /// A step's `forEach` gave no items (the step succeeds with nothing to do).
    NoItems,
    /// A step's job could not be rendered from its templates, or is not a valid job.
    /// Reads back (from text) as `Unrecognised`, with the same text.
    Invalid(Box<crate::ValidationError>),
    /// The engine refused a step's jobs (e.g. too many live jobs). Reads back (from text)
    /// as `Unrecognised`, with the same text.
    Refused {
        message: Box<str>,
    },
    /// A step did not run because its run was cancelled.
    RunCancelled,
    /// A job did not run: a job it was submitted `--after` ended otherwise than it needed.
    AfterNotMet {
        job: crate::JobId,
        needed: crate::DependsOn,
        state: crate::JobState,
    },
    /// A run was cancelled by a newer run of a `concurrency: replace` flow.
    ReplacedByNewerRun,
    /// Text this version does not know (written by another version); shown as it is.
    Unrecognised(Box<str>),
}

/// The step a run failed for (boxed in [`Reason::Step`], which tasks never hold, so a
/// task's reason stays as small as a string).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepFailure {
    pub name: String,
    pub state: StepState,
    pub cause: Reason,
}

const FAILURE_POLICY: &str = " (failurePolicy: fail)";

impl Reason {
    /// How an attempt's outcome reads as a reason.
    pub fn of_outcome(o: &AttemptOutcome) -> Reason {
        match o {
            AttemptOutcome::Exited { code } => Reason::ExitCode { code: *code },
            AttemptOutcome::Signaled { signal } => Reason::Signal { signal: *signal },
            AttemptOutcome::TimedOut => Reason::TimedOut,
            AttemptOutcome::DiskFull => Reason::DiskFull,
            AttemptOutcome::Cancelled => Reason::Cancelled,
            AttemptOutcome::NodeLost => Reason::NodeLost,
            AttemptOutcome::Evicted => Reason::Evicted,
            AttemptOutcome::Preempted => Reason::Preempted,
            AttemptOutcome::GangStopped => Reason::GangStopped,
            AttemptOutcome::StartFailed { message } => Reason::StartFailed {
                message: message.as_str().into(),
            },
            AttemptOutcome::OutputsFailed { message } => Reason::OutputsFailed {
                message: message.as_str().into(),
            },
        }
    }

    /// Reads the text form back. Never fails: text it does not know is kept as it is, so
    /// `parse(t).to_string() == t` for every `t`.
    pub fn parse(t: &str) -> Reason {
        Self::parse_nested(t).unwrap_or_else(|| Reason::Unrecognised(t.into()))
    }

    fn parse_nested(t: &str) -> Option<Reason> {
        let boxed = |s: &str| Box::new(Reason::parse(s));
        if let Some(rest) = t.strip_prefix("task ") {
            let (n, cause) = rest.split_once(": ")?;
            return Some(Reason::Task {
                index: n.parse().ok()?,
                cause: boxed(cause),
            });
        }
        if let Some(rest) = t.strip_prefix("item ") {
            let (n, cause) = rest.split_once(": ")?;
            return Some(Reason::Item {
                index: n.parse().ok()?,
                cause: boxed(cause),
            });
        }
        if let Some(rest) = t.strip_prefix("step ") {
            let (head, cause) = rest.split_once(": ")?;
            let (name, state) = head.rsplit_once(' ')?;
            return Some(Reason::Step(Box::new(StepFailure {
                name: name.to_string(),
                state: StepState::parse(state)?,
                cause: Reason::parse(cause),
            })));
        }
        if let Some(cause) = t.strip_suffix(FAILURE_POLICY) {
            return Some(Reason::FailurePolicy {
                cause: boxed(cause),
            });
        }
        if let Some((cause, spent)) = t.rsplit_once("; retry budget of ") {
            let budget = spent.strip_suffix(" spent")?.parse().ok()?;
            return Some(Reason::RetryBudgetSpent {
                cause: boxed(cause),
                budget,
            });
        }
        if let Some(m) = t.strip_prefix("start failed: ") {
            return Some(Reason::StartFailed { message: m.into() });
        }
        if let Some(m) = t.strip_prefix("outputs: ") {
            return Some(Reason::OutputsFailed { message: m.into() });
        }
        if let Some(code) = t.strip_prefix("exit code ") {
            return Some(Reason::ExitCode {
                code: code.parse().ok()?,
            });
        }
        if let Some(signal) = t.strip_prefix("signal ") {
            return Some(Reason::Signal {
                signal: signal.parse().ok()?,
            });
        }
        if let Some(rest) = t.strip_prefix("dependency ") {
            let (step, state) = rest.rsplit_once(' ')?;
            return Some(Reason::DependencyNotMet {
                step: step.into(),
                state: StepState::parse(state)?,
            });
        }
        if let Some(rest) = t.strip_prefix("after job ") {
            let (id, rest) = rest.split_once(' ')?;
            let (state, needed) = rest.split_once(" (needed ")?;
            let dep: crate::Dependency =
                format!("{id}:{}", needed.strip_suffix(')')?).parse().ok()?;
            return Some(Reason::AfterNotMet {
                job: dep.job,
                needed: dep.on,
                state: crate::JobState::parse(state)?,
            });
        }
        if let Some(m) = t.strip_prefix("when: ") {
            return Some(Reason::WhenFailed { message: m.into() });
        }
        if let Some(m) = t.strip_prefix("forEach: ") {
            return Some(Reason::ForEachFailed { message: m.into() });
        }
        if let Some(limit) = t
            .strip_prefix("forEach gave more than ")
            .and_then(|r| r.strip_suffix(" items"))
        {
            return Some(Reason::TooManyItems {
                limit: limit.parse().ok()?,
            });
        }
        if let Some(times) = t
            .strip_prefix("node lost ")
            .and_then(|r| r.strip_suffix(" times"))
        {
            return Some(Reason::NodeLostTimes {
                times: times.parse().ok()?,
            });
        }
        Some(match t {
            "timed_out" => Reason::TimedOut,
            "disk_full" => Reason::DiskFull,
            "cancelled" => Reason::Cancelled,
            "node_lost" => Reason::NodeLost,
            "evicted: node drained" => Reason::Evicted,
            "preempted" => Reason::Preempted,
            "stopped: a gang member ended" => Reason::GangStopped,
            "failed" => Reason::Failed,
            "no reason given" => Reason::Unexplained,
            "deadline_exceeded" => Reason::DeadlineExceeded,
            "approved" => Reason::Approved,
            "when was false" => Reason::WhenFalse,
            "forEach gave no items" => Reason::NoItems,
            "run cancelled" => Reason::RunCancelled,
            "replaced by a newer run" => Reason::ReplacedByNewerRun,
            _ => return None,
        })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ExitCode { code } => write!(f, "exit code {code}"),
            Reason::Signal { signal } => write!(f, "signal {signal}"),
            Reason::TimedOut => f.write_str("timed_out"),
            Reason::DiskFull => f.write_str("disk_full"),
            Reason::Cancelled => f.write_str("cancelled"),
            Reason::NodeLost => f.write_str("node_lost"),
            Reason::Evicted => f.write_str("evicted: node drained"),
            Reason::Preempted => f.write_str("preempted"),
            Reason::GangStopped => f.write_str("stopped: a gang member ended"),
            Reason::NodeLostTimes { times } => write!(f, "node lost {times} times"),
            Reason::StartFailed { message } => write!(f, "start failed: {message}"),
            Reason::OutputsFailed { message } => write!(f, "outputs: {message}"),
            Reason::FailurePolicy { cause } => write!(f, "{cause}{FAILURE_POLICY}"),
            Reason::RetryBudgetSpent { cause, budget } => {
                write!(f, "{cause}; retry budget of {budget} spent")
            }
            Reason::Task { index, cause } => write!(f, "task {index}: {cause}"),
            Reason::Item { index, cause } => write!(f, "item {index}: {cause}"),
            Reason::Step(s) => write!(f, "step {} {}: {}", s.name, s.state, s.cause),
            Reason::Failed => f.write_str("failed"),
            Reason::Unexplained => f.write_str("no reason given"),
            Reason::DeadlineExceeded => f.write_str("deadline_exceeded"),
            Reason::Approved => f.write_str("approved"),
            Reason::DependencyNotMet { step, state } => write!(f, "dependency {step} {state}"),
            Reason::WhenFalse => f.write_str("when was false"),
            Reason::WhenFailed { message } => write!(f, "when: {message}"),
            Reason::ForEachFailed { message } => write!(f, "forEach: {message}"),
            Reason::TooManyItems { limit } => write!(f, "forEach gave more than {limit} items"),
            Reason::NoItems => f.write_str("forEach gave no items"),
            Reason::Invalid(e) => write!(f, "{e}"),
            Reason::Refused { message } => f.write_str(message),
            Reason::RunCancelled => f.write_str("run cancelled"),
            Reason::AfterNotMet { job, needed, state } => {
                write!(f, "after job {job} {state} (needed {})", needed.as_str())
            }
            Reason::ReplacedByNewerRun => f.write_str("replaced by a newer run"),
            Reason::Unrecognised(t) => f.write_str(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_reads_back_as_itself() {
        let exit = || Box::new(Reason::ExitCode { code: 7 });
        let all = [
            Reason::ExitCode { code: -1 },
            Reason::Signal { signal: 9 },
            Reason::AfterNotMet {
                job: crate::JobId(5),
                needed: crate::DependsOn::Ok,
                state: crate::JobState::Failed,
            },
            Reason::TimedOut,
            Reason::DiskFull,
            Reason::Cancelled,
            Reason::NodeLost,
            Reason::Evicted,
            Reason::Preempted,
            Reason::GangStopped,
            Reason::NodeLostTimes { times: 11 },
            Reason::StartFailed {
                message: "no such file: x".into(),
            },
            Reason::OutputsFailed {
                message: "param y: too long".into(),
            },
            Reason::FailurePolicy { cause: exit() },
            Reason::RetryBudgetSpent {
                cause: exit(),
                budget: 3,
            },
            Reason::Task {
                index: 4,
                cause: Box::new(Reason::FailurePolicy { cause: exit() }),
            },
            Reason::Step(Box::new(StepFailure {
                name: "build-x".into(),
                state: StepState::Failed,
                cause: Reason::Item {
                    index: 2,
                    cause: Box::new(Reason::Task {
                        index: 0,
                        cause: Box::new(Reason::Signal { signal: 15 }),
                    }),
                },
            })),
            Reason::Step(Box::new(StepFailure {
                name: "s".into(),
                state: StepState::Cancelled,
                cause: Reason::Unexplained,
            })),
            Reason::Failed,
            Reason::DeadlineExceeded,
            Reason::Approved,
            Reason::DependencyNotMet {
                step: "a-b".into(),
                state: StepState::Skipped,
            },
            Reason::WhenFalse,
            Reason::WhenFailed {
                message: "undefined value: x".into(),
            },
            Reason::ForEachFailed {
                message: "not a list".into(),
            },
            Reason::TooManyItems { limit: 10_000 },
            Reason::NoItems,
            Reason::RunCancelled,
            Reason::ReplacedByNewerRun,
        ];
        for r in all {
            let text = r.to_string();
            assert_eq!(Reason::parse(&text), r, "{text}");
        }
    }

    #[test]
    fn free_text_reasons_keep_their_text() {
        let v = crate::ValidationError::new("env.X", "undefined value");
        for r in [
            Reason::Invalid(Box::new(v)),
            Reason::Refused {
                message: "too many live jobs (limit 5); retry later".into(),
            },
        ] {
            let text = r.to_string();
            assert_eq!(Reason::parse(&text).to_string(), text);
        }
    }

    #[test]
    fn unknown_text_is_kept_as_it_is() {
        for t in [
            "",
            "something new",
            "task x: y",
            "exit code seven",
            "step nostate",
        ] {
            let r = Reason::parse(t);
            assert_eq!(r, Reason::Unrecognised(t.into()));
            assert_eq!(r.to_string(), t);
        }
    }

    #[test]
    fn a_reason_is_no_bigger_than_the_string_it_replaced() {
        // Every live task holds one: 1,000,000-task arrays must not grow.
        assert!(std::mem::size_of::<Option<Reason>>() <= std::mem::size_of::<Option<String>>());
    }

    #[test]
    fn todays_texts_keep_their_form() {
        let r = Reason::Task {
            index: 3,
            cause: Box::new(Reason::of_outcome(&AttemptOutcome::Exited { code: 1 })),
        };
        assert_eq!(r.to_string(), "task 3: exit code 1");
        assert_eq!(
            Reason::NodeLostTimes { times: 11 }.to_string(),
            "node lost 11 times"
        );
    }
}
