//! The leader lease and the member list in PostgreSQL (docs/ha.md).
//!
//! One row holds the lease: holder, its URL, the epoch and an expiry in the database's clock.
//! A server takes the lease only when it has expired, and each takeover adds one to the epoch;
//! the holder renews it well before expiry. Writes of the holder are fenced by the epoch (see
//! [`crate::postgres::Fence`]). All times come from `zenith_now_ms()`, so servers' clocks may
//! disagree without harm.

use crate::postgres::{connect, PgConn};
use crate::StoreError;
use postgres::Client;

/// The lease as stored, with the database's clock at the time of reading.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseView {
    pub holder: String,
    pub url: String,
    pub epoch: i64,
    pub acquired_at: i64,
    pub expires_at: i64,
    /// Write transactions committed in this epoch.
    pub commits: i64,
    pub now: i64,
}

/// A server sharing the database.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub id: String,
    pub url: String,
    pub version: String,
    pub started_at: i64,
    pub last_seen: i64,
}

/// A past leader's term.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    pub epoch: i64,
    pub holder: String,
    pub url: String,
    pub acquired_at: i64,
    pub ended_at: i64,
    pub commits: i64,
}

/// Member rows silent this long are deleted.
const MEMBER_TTL_MS: i64 = 3_600_000;
/// Past terms kept.
const TERMS_KEPT: i64 = 1000;

/// One server's handle on the lease, with its own connection (reopened after an error).
pub struct Lease {
    url: String,
    client: Option<PgConn>,
    /// This server's identity (unique per process start).
    pub holder: String,
    /// Where other servers, clients and agents reach this one.
    pub advertise: String,
    pub ttl_ms: i64,
}

impl Lease {
    pub fn new(url: &str, holder: &str, advertise: &str, ttl_ms: u64) -> Self {
        Lease {
            url: url.to_string(),
            client: None,
            holder: holder.to_string(),
            advertise: advertise.to_string(),
            ttl_ms: ttl_ms as i64,
        }
    }

    /// Runs `f` on the connection; an error drops the connection so the next call reconnects.
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Client, &Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = match self.client.take() {
            Some(c) if !c.is_closed() => c,
            _ => connect(&self.url)?,
        };
        let out = f(&mut client, self);
        if out.is_ok() {
            self.client = Some(client);
        }
        out
    }

    /// Takes the lease if it has expired (or is ours); returns the new epoch.
    pub fn try_acquire(&mut self) -> Result<Option<i64>, StoreError> {
        self.run(|c, me| {
            let mut tx = c.transaction()?;
            let r = tx.query_one(
                "SELECT holder, url, epoch, acquired_at, commits, expires_at, zenith_now_ms() \
                 FROM zenith_lease WHERE id = 1 FOR UPDATE",
                &[],
            )?;
            let holder: String = r.try_get(0)?;
            let epoch: i64 = r.try_get(2)?;
            let expires: i64 = r.try_get(5)?;
            let now: i64 = r.try_get(6)?;
            if expires > now && holder != me.holder {
                return Ok(None);
            }
            if epoch > 0 {
                let url: String = r.try_get(1)?;
                let acquired: i64 = r.try_get(3)?;
                let commits: i64 = r.try_get(4)?;
                tx.execute(
                    "INSERT INTO zenith_terms VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (epoch) DO NOTHING",
                    &[&epoch, &holder, &url, &acquired, &now, &commits],
                )?;
                tx.execute("DELETE FROM zenith_terms WHERE epoch <= $1", &[&(epoch - TERMS_KEPT)])?;
            }
            let next = epoch + 1;
            tx.execute(
                "UPDATE zenith_lease SET holder = $1, url = $2, epoch = $3, acquired_at = $4, \
                 expires_at = $4::bigint + $5::bigint, commits = 0 WHERE id = 1",
                &[&me.holder, &me.advertise, &next, &now, &me.ttl_ms],
            )?;
            tx.commit()?;
            Ok(Some(next))
        })
    }

    /// Extends the lease of `epoch`; false when it is no longer ours (taken, or expired).
    pub fn renew(&mut self, epoch: i64) -> Result<bool, StoreError> {
        self.run(|c, me| {
            let n = c.execute(
                "UPDATE zenith_lease SET expires_at = zenith_now_ms() + $3 \
                 WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at > zenith_now_ms()",
                &[&me.holder, &epoch, &me.ttl_ms],
            )?;
            Ok(n == 1)
        })
    }

    /// Gives the lease up at once (clean shutdown), so a standby need not wait for expiry.
    pub fn release(&mut self, epoch: i64) -> Result<(), StoreError> {
        self.run(|c, me| {
            c.execute(
                "UPDATE zenith_lease SET expires_at = 0 WHERE id = 1 AND holder = $1 AND epoch = $2",
                &[&me.holder, &epoch],
            )?;
            Ok(())
        })
    }

    pub fn view(&mut self) -> Result<LeaseView, StoreError> {
        self.run(|c, _| {
            let r = c.query_one(
                "SELECT holder, url, epoch, acquired_at, expires_at, commits, zenith_now_ms() \
                 FROM zenith_lease WHERE id = 1",
                &[],
            )?;
            Ok(LeaseView {
                holder: r.try_get(0)?,
                url: r.try_get(1)?,
                epoch: r.try_get(2)?,
                acquired_at: r.try_get(3)?,
                expires_at: r.try_get(4)?,
                commits: r.try_get(5)?,
                now: r.try_get(6)?,
            })
        })
    }

    /// Records that this server is alive; prunes members silent for an hour.
    pub fn heartbeat(&mut self, version: &str, started_at: i64) -> Result<(), StoreError> {
        self.run(|c, me| {
            c.execute(
                "INSERT INTO zenith_servers VALUES ($1, $2, $3, $4, zenith_now_ms()) \
                 ON CONFLICT (id) DO UPDATE SET url = excluded.url, last_seen = excluded.last_seen",
                &[&me.holder, &me.advertise, &version, &started_at],
            )?;
            c.execute(
                "DELETE FROM zenith_servers WHERE last_seen < zenith_now_ms() - $1",
                &[&MEMBER_TTL_MS],
            )?;
            Ok(())
        })
    }

    /// Removes this server's member row (clean shutdown).
    pub fn leave(&mut self) -> Result<(), StoreError> {
        self.run(|c, me| {
            c.execute("DELETE FROM zenith_servers WHERE id = $1", &[&me.holder])?;
            Ok(())
        })
    }

    pub fn members(&mut self) -> Result<Vec<Member>, StoreError> {
        self.run(|c, _| {
            let rows = c.query(
                "SELECT id, url, version, started_at, last_seen FROM zenith_servers ORDER BY url, id LIMIT 1000",
                &[],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(Member {
                        id: r.try_get(0)?,
                        url: r.try_get(1)?,
                        version: r.try_get(2)?,
                        started_at: r.try_get(3)?,
                        last_seen: r.try_get(4)?,
                    })
                })
                .collect()
        })
    }

    /// The latest past terms, newest first.
    pub fn terms(&mut self, limit: usize) -> Result<Vec<Term>, StoreError> {
        self.run(|c, _| {
            let rows = c.query(
                "SELECT epoch, holder, url, acquired_at, ended_at, commits FROM zenith_terms \
                 ORDER BY epoch DESC LIMIT $1",
                &[&(limit.min(1000) as i64)],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(Term {
                        epoch: r.try_get(0)?,
                        holder: r.try_get(1)?,
                        url: r.try_get(2)?,
                        acquired_at: r.try_get(3)?,
                        ended_at: r.try_get(4)?,
                        commits: r.try_get(5)?,
                    })
                })
                .collect()
        })
    }
}
