//! The servers an agent may talk to: one URL, or several sharing a PostgreSQL store (one
//! leads; standbys answer agents with 503 and the leader's URL). Requests go to the current
//! one; a failed connection moves on to the next in the list, a standby's answer straight to
//! the leader it names.

use std::sync::Mutex;

#[derive(Debug)]
pub struct Endpoints {
    list: Vec<String>,
    current: Mutex<String>,
}

impl Endpoints {
    /// `servers`: comma-separated URLs (at least one, at most 16, each http:// or https://).
    pub fn parse(servers: &str) -> Result<Endpoints, String> {
        let list: Vec<String> = servers
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if list.is_empty() {
            return Err("--server: no URL given".into());
        }
        if list.len() > 16 {
            return Err(format!("--server: {} URLs; at most 16", list.len()));
        }
        if let Some(bad) = list
            .iter()
            .find(|u| !u.starts_with("http://") && !u.starts_with("https://"))
        {
            return Err(format!(
                "--server: {bad:?} is not an http:// or https:// URL"
            ));
        }
        Ok(Endpoints {
            current: Mutex::new(list[0].clone()),
            list,
        })
    }

    pub fn current(&self) -> String {
        match self.current.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set(&self, url: String) {
        match self.current.lock() {
            Ok(mut g) => *g = url,
            Err(p) => *p.into_inner() = url,
        }
    }

    /// `failed` did not answer: move to the next in the list (unless another caller already
    /// moved on).
    pub fn failed(&self, failed: &str) {
        if self.list.len() < 2 || self.current() != failed {
            return;
        }
        let i = self
            .list
            .iter()
            .position(|u| u == failed)
            .map_or(0, |i| i + 1);
        let next = self.list[i % self.list.len()].clone();
        tracing::info!(from = failed, to = %next, "trying the next server");
        self.set(next);
    }

    /// A standby named the leader: go there.
    pub fn redirect(&self, leader: &str) {
        let leader = leader.trim_end_matches('/');
        if leader.starts_with("http://") || leader.starts_with("https://") {
            if self.current() != leader {
                tracing::info!(
                    leader,
                    "the server is a standby; following it to the leader"
                );
            }
            self.set(leader.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_on_failure_and_follows_the_leader() {
        let e = Endpoints::parse("http://a:1, http://b:2/,http://c:3").unwrap();
        assert_eq!(e.current(), "http://a:1");
        e.failed("http://a:1");
        assert_eq!(e.current(), "http://b:2");
        e.failed("http://a:1"); // stale report: already moved on
        assert_eq!(e.current(), "http://b:2");
        e.failed("http://b:2");
        e.failed("http://c:3");
        assert_eq!(e.current(), "http://a:1", "wraps round");
        e.redirect("http://c:3/");
        assert_eq!(e.current(), "http://c:3");
        e.redirect("ftp://x");
        assert_eq!(
            e.current(),
            "http://c:3",
            "only http(s) leaders are followed"
        );
        assert!(Endpoints::parse(" , ").is_err());
        assert!(Endpoints::parse("a:1").unwrap_err().contains("a:1"));
    }
}
