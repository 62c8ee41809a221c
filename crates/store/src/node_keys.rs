//! Node credentials (`Changes::node_keys`, `Loaded::node_keys`) in both stores, one row each
//! in `meta` under `node_key/<node id>` holding the record as JSON: rare writes (enrolment,
//! revocation), read once at start, no schema change.

use crate::StoreError;
use zenith_model::records::{Changes, NodeKeyRecord};

const PREFIX: &str = "node_key/";

fn key(r: &NodeKeyRecord) -> String {
    format!("{PREFIX}{}", r.node)
}

fn decode(key: &str, value: &str) -> Option<NodeKeyRecord> {
    match serde_json::from_str(value) {
        Ok(r) => Some(r),
        Err(e) => {
            // A row no version wrote: skipped, so the node must enroll again.
            tracing::warn!(key, error = %e, "unreadable node credential skipped");
            None
        }
    }
}

fn encode(r: &NodeKeyRecord) -> Result<String, StoreError> {
    serde_json::to_string(r).map_err(|e| StoreError::Corrupt {
        what: "node key".into(),
        detail: e.to_string(),
    })
}

pub(crate) fn load_sqlite(conn: &rusqlite::Connection) -> Result<Vec<NodeKeyRecord>, StoreError> {
    let mut st = conn.prepare("SELECT key, value FROM meta WHERE key LIKE 'node_key/%'")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
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
    if ch.node_keys.is_empty() {
        return Ok(());
    }
    let mut put = tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?;
    for r in ch.node_keys.values() {
        put.execute(rusqlite::params![key(r), encode(r)?])?;
    }
    Ok(())
}

pub(crate) fn load_pg(
    tx: &mut postgres::Transaction<'_>,
) -> Result<Vec<NodeKeyRecord>, StoreError> {
    let mut out = Vec::new();
    for row in tx.query(
        "SELECT key, value FROM meta WHERE key LIKE 'node_key/%'",
        &[],
    )? {
        let (k, v): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        out.extend(decode(&k, &v));
    }
    Ok(out)
}

pub(crate) fn commit_pg(
    tx: &mut crate::postgres::Tx<'_, '_>,
    ch: &Changes,
) -> Result<(), StoreError> {
    for r in ch.node_keys.values() {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key(r), &encode(r)?],
        )?;
    }
    Ok(())
}
