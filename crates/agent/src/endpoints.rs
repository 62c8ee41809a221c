//! The servers an agent may talk to: one URL, or several sharing a PostgreSQL store (one
//! leads; standbys answer agents with 503 and the leader's URL). Requests go to the current
//! one; a failed connection moves on to the next in the list, a standby's answer straight to
//! the leader it names.

use parking_lot::Mutex;

/// What is wrong with the `--server` list.
#[derive(Debug, thiserror::Error)]
pub enum ServerListError {
    #[error("--server: no URL given")]
    Empty,
    #[error("--server: {count} URLs; at most {MAX_SERVERS}")]
    TooMany { count: usize },
    #[error("--server: {url:?} is not an http:// or https:// URL")]
    NotHttp { url: String },
}

/// Most URLs in the `--server` list.
const MAX_SERVERS: usize = 16;

#[derive(Debug)]
pub struct Endpoints {
    list: Vec<String>,
    current: Mutex<String>,
}

impl Endpoints {
    /// `servers`: comma-separated URLs (at least one, at most 16, each http:// or https://).
    pub fn parse(servers: &str) -> Result<Endpoints, ServerListError> {
        let list: Vec<String> = servers
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if list.is_empty() {
            return Err(ServerListError::Empty);
        }
        if list.len() > MAX_SERVERS {
            return Err(ServerListError::TooMany { count: list.len() });
        }
        if let Some(bad) = list
            .iter()
            .find(|u| !u.starts_with("http://") && !u.starts_with("https://"))
        {
            return Err(ServerListError::NotHttp { url: bad.clone() });
        }
        Ok(Endpoints {
            current: Mutex::new(list[0].clone()),
            list,
        })
    }

    pub fn current(&self) -> String {
        self.current.lock().clone()
    }

    fn set(&self, url: String) {
        *self.current.lock() = url;
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
        assert!(Endpoints::parse("a:1")
            .unwrap_err()
            .to_string()
            .contains("a:1"));
        assert_eq!(
            Endpoints::parse("a:1").unwrap_err().to_string(),
            "--server: \"a:1\" is not an http:// or https:// URL"
        );
        let many = vec!["http://a"; 17].join(",");
        assert_eq!(
            Endpoints::parse(&many).unwrap_err().to_string(),
            "--server: 17 URLs; at most 16"
        );
        assert_eq!(
            Endpoints::parse(" , ").unwrap_err().to_string(),
            "--server: no URL given"
        );
    }
}
