//! Records kept one row each in `meta` under `<prefix><id>`, holding the record as JSON, in
//! both stores: node credentials (`node_key/<node id>`), people's API tokens
//! (`user_token/<token id>`) and namespace settings (`namespace/<name>`). Rare writes
//! (enrolment, token creation, revocation, an admin's settings), read once at start, no
//! schema of their own.

use crate::StoreError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use zenith_model::namespace::NamespaceSettings;
use zenith_model::records::Changes;
use zenith_model::records::NodeKeyRecord;
use zenith_model::tenancy::UserTokenRecord;

/// A kind of record kept in `meta`.
pub(crate) trait MetaRow: Serialize + DeserializeOwned {
    /// The key prefix, ending in '/'.
    const PREFIX: &'static str;
    /// What the record is, for messages.
    const WHAT: &'static str;
    fn id(&self) -> &str;
}

impl MetaRow for NodeKeyRecord {
    const PREFIX: &'static str = "node_key/";
    const WHAT: &'static str = "node credential";
    fn id(&self) -> &str {
        self.node.as_str()
    }
}

impl MetaRow for UserTokenRecord {
    const PREFIX: &'static str = "user_token/";
    const WHAT: &'static str = "API token";
    fn id(&self) -> &str {
        &self.id
    }
}

impl MetaRow for NamespaceSettings {
    const PREFIX: &'static str = "namespace/";
    const WHAT: &'static str = "namespace settings";
    fn id(&self) -> &str {
        &self.name
    }
}

fn decode<T: MetaRow>(key: &str, value: &str) -> Option<T> {
    match serde_json::from_str(value) {
        Ok(r) => Some(r),
        Err(e) => {
            // A row no version wrote: skipped (a node enrolls again; a token is refused).
            tracing::warn!(key, error = %e, "unreadable {} skipped", T::WHAT);
            None
        }
    }
}

fn encode<T: MetaRow>(r: &T) -> Result<(String, String), StoreError> {
    let v = serde_json::to_string(r).map_err(|e| StoreError::Corrupt {
        what: T::WHAT.into(),
        detail: e.to_string(),
    })?;
    Ok((format!("{}{}", T::PREFIX, r.id()), v))
}

/// Every record in `changes` to write, as (key, value) pairs, and the keys to delete.
type Writes = (Vec<(String, String)>, Vec<String>);

fn changed(ch: &Changes) -> Result<Writes, StoreError> {
    let mut put = Vec::with_capacity(ch.node_keys.len() + ch.user_tokens.len());
    let mut delete = Vec::new();
    for r in ch.node_keys.values() {
        put.push(encode(r)?);
    }
    for (id, r) in &ch.user_tokens {
        match r {
            Some(r) => put.push(encode(r)?),
            None => delete.push(format!("{}{id}", UserTokenRecord::PREFIX)),
        }
    }
    for (name, r) in &ch.namespaces {
        match r {
            Some(r) => put.push(encode(r)?),
            None => delete.push(format!("{}{name}", NamespaceSettings::PREFIX)),
        }
    }
    Ok((put, delete))
}

pub(crate) fn load_sqlite<T: MetaRow>(conn: &rusqlite::Connection) -> Result<Vec<T>, StoreError> {
    let mut st = conn.prepare("SELECT key, value FROM meta WHERE key LIKE ?1")?;
    let pattern = format!("{}%", T::PREFIX);
    let rows = st.query_map([pattern], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (k, v) = row?;
        out.extend(decode(&k, &v));
    }
    Ok(out)
}

pub(crate) fn commit_sqlite(
    tx: &rusqlite::Transaction<'_>,
    ch: &Changes,
) -> Result<(), StoreError> {
    if ch.node_keys.is_empty() && ch.user_tokens.is_empty() && ch.namespaces.is_empty() {
        return Ok(());
    }
    let (puts, deletes) = changed(ch)?;
    let mut put = tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?;
    for (k, v) in puts {
        put.execute(rusqlite::params![k, v])?;
    }
    let mut del = tx.prepare_cached("DELETE FROM meta WHERE key = ?1")?;
    for k in deletes {
        del.execute([k])?;
    }
    Ok(())
}

pub(crate) fn load_pg<T: MetaRow>(
    tx: &mut postgres::Transaction<'_>,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    let pattern = format!("{}%", T::PREFIX);
    for row in tx.query("SELECT key, value FROM meta WHERE key LIKE $1", &[&pattern])? {
        let (k, v): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        out.extend(decode(&k, &v));
    }
    Ok(out)
}

pub(crate) fn commit_pg(
    tx: &mut crate::postgres::Tx<'_, '_>,
    ch: &Changes,
) -> Result<(), StoreError> {
    let (puts, deletes) = changed(ch)?;
    for (k, v) in puts {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&k, &v],
        )?;
    }
    for k in deletes {
        tx.execute("DELETE FROM meta WHERE key = $1", &[&k])?;
    }
    Ok(())
}
