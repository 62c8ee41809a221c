//! Dependencies between jobs: `--after ID[:ok|:any|:fail]` holds a job until job `ID` has
//! ended as asked (`ok`, the default: succeeded; `fail`: failed or cancelled; `any`: ended).
//! A job only depends on jobs that exist when it is submitted, so cycles cannot form.

use crate::{JobId, JobState, ParseError};

/// Most dependencies of one job.
pub const MAX_DEPENDENCIES: usize = 64;

/// One job another waits for, and how it must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dependency {
    pub job: JobId,
    pub on: DependsOn,
}

/// How a dependency must end for the dependent job to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DependsOn {
    /// Succeeded.
    Ok,
    /// Failed or was cancelled.
    Fail,
    /// Ended, however.
    Any,
}

impl DependsOn {
    pub fn as_str(self) -> &'static str {
        match self {
            DependsOn::Ok => "ok",
            DependsOn::Fail => "fail",
            DependsOn::Any => "any",
        }
    }

    /// Whether a dependency that ended in `state` is met (`None` while it has not ended).
    pub fn met_by(self, state: JobState) -> Option<bool> {
        if !state.is_final() {
            return None;
        }
        Some(match self {
            DependsOn::Ok => state == JobState::Succeeded,
            DependsOn::Fail => state != JobState::Succeeded,
            DependsOn::Any => true,
        })
    }
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.job, self.on.as_str())
    }
}

impl std::str::FromStr for Dependency {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = || ParseError::Dependency {
            text: s.to_string(),
        };
        let (id, on) = match s.trim().split_once(':') {
            Some((id, on)) => (id, on),
            None => (s.trim(), "ok"),
        };
        let on = match on {
            "ok" => DependsOn::Ok,
            "fail" => DependsOn::Fail,
            "any" => DependsOn::Any,
            _ => return Err(bad()),
        };
        let job: u64 = id.parse().map_err(|_| bad())?;
        if job == 0 {
            return Err(bad());
        }
        Ok(Dependency {
            job: JobId(job),
            on,
        })
    }
}

serde_as_text!(Dependency);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_parse_and_say_when_they_are_met() {
        let d: Dependency = "12".parse().unwrap();
        assert_eq!((d.job, d.on), (JobId(12), DependsOn::Ok));
        assert_eq!(d.to_string(), "12:ok");
        let f: Dependency = "3:fail".parse().unwrap();
        assert_eq!(f.on.met_by(JobState::Cancelled), Some(true));
        assert_eq!(f.on.met_by(JobState::Succeeded), Some(false));
        assert_eq!(f.on.met_by(JobState::Running), None);
        assert_eq!(DependsOn::Any.met_by(JobState::Failed), Some(true));
        for bad in ["0", "x", "3:maybe", "-1", ""] {
            assert!(bad.parse::<Dependency>().is_err(), "{bad}");
        }
    }
}
