//! The audit log in both stores: rows appended with the batch they arrive in (group commit),
//! read newest first with filters, deleted by age and by count (`sweep_audit`).

use crate::postgres::{decode, Tx};
use crate::rows::{keep_good, Cols};
use crate::{AuditFilter, StoreError};
use zenith_model::records::Changes;
use zenith_model::tenancy::AuditRecord;

const COLS: &str = "id, at, \"user\", role, method, path, peer, status, detail";

pub(crate) fn commit_sqlite(
    tx: &rusqlite::Transaction<'_>,
    ch: &Changes,
) -> Result<(), StoreError> {
    if ch.audit.is_empty() {
        return Ok(());
    }
    let mut put = tx.prepare_cached(
        "INSERT INTO audit (at, user, role, method, path, peer, status, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for r in &ch.audit {
        put.execute(rusqlite::params![
            r.at as i64,
            r.user,
            r.role,
            r.method,
            r.path,
            r.peer,
            r.status,
            r.detail
        ])?;
    }
    Ok(())
}

pub(crate) fn commit_pg(tx: &mut Tx<'_, '_>, ch: &Changes) -> Result<(), StoreError> {
    if ch.audit.is_empty() {
        return Ok(());
    }
    let mut cols: [Vec<String>; 6] = Default::default();
    let (mut at, mut status) = (Vec::new(), Vec::new());
    for r in &ch.audit {
        at.push(r.at as i64);
        status.push(i64::from(r.status));
        for (c, v) in cols
            .iter_mut()
            .zip([&r.user, &r.role, &r.method, &r.path, &r.peer, &r.detail])
        {
            c.push(v.clone());
        }
    }
    let [user, role, method, path, peer, detail] = &cols;
    tx.execute(
        "INSERT INTO audit (at, \"user\", role, method, path, peer, status, detail) \
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::bigint[], $8::text[])",
        &[&at, user, role, method, path, peer, &status, detail],
    )?;
    Ok(())
}

/// The WHERE clause of `f` with `$n`/`?n` parameter marks from 3 on (1 is the cursor, 2 the
/// limit), and the text parameters in order.
fn clause(f: &AuditFilter, mark: char) -> (String, Vec<String>) {
    let mut sql = format!("id < {mark}1");
    let mut p = Vec::new();
    if let Some(u) = &f.user {
        p.push(u.clone());
        sql.push_str(&format!(" AND \"user\" = {mark}{}", p.len() + 2));
    }
    if let Some(since) = f.since {
        p.push(since.to_string());
        // Passed as text (one parameter type for both stores), read as a number.
        let text = if mark == '$' { "::text" } else { "" };
        sql.push_str(&format!(
            " AND at >= CAST({mark}{}{text} AS BIGINT)",
            p.len() + 2
        ));
    }
    if f.refused_only {
        sql.push_str(" AND status >= 400");
    }
    (sql, p)
}

fn cursor(f: &AuditFilter) -> (i64, i64) {
    (
        f.before.map(|b| b as i64).unwrap_or(i64::MAX),
        f.limit.clamp(1, MAX_AUDIT_PAGE) as i64,
    )
}

/// Most audit records one read returns.
pub const MAX_AUDIT_PAGE: usize = 10_000;

/// One audit row, read alike from either store.
fn record(r: &impl Cols) -> Result<AuditRecord, StoreError> {
    Ok(AuditRecord {
        id: r.u64(0)?,
        at: r.u64(1)?,
        user: r.text(2)?,
        role: r.text(3)?,
        method: r.text(4)?,
        path: r.text(5)?,
        peer: r.text(6)?,
        status: r.int(7)?.clamp(0, 999) as u16,
        detail: r.text(8)?,
    })
}

pub(crate) fn read_sqlite(
    c: &rusqlite::Connection,
    f: &AuditFilter,
) -> Result<Vec<AuditRecord>, StoreError> {
    let (wh, texts) = clause(f, '?');
    let sql = format!("SELECT {COLS} FROM audit WHERE {wh} ORDER BY id DESC LIMIT ?2");
    let (before, limit) = cursor(f);
    let mut p: Vec<&dyn rusqlite::ToSql> = vec![&before, &limit];
    for t in &texts {
        p.push(t);
    }
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(p.as_slice(), |r| Ok(record(r)))?;
    keep_good(rows)
}

pub(crate) fn read_pg(
    c: &mut postgres::Client,
    f: &AuditFilter,
) -> Result<Vec<AuditRecord>, StoreError> {
    let (wh, texts) = clause(f, '$');
    let sql = format!("SELECT {COLS} FROM audit WHERE {wh} ORDER BY id DESC LIMIT $2");
    let (before, limit) = cursor(f);
    let mut p: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&before, &limit];
    for t in &texts {
        p.push(t);
    }
    decode(c.query(&sql, &p)?, record)
}

/// Deletes records older than `before`, and the oldest beyond `keep`; how many went.
pub(crate) fn sweep_sqlite(
    conn: &mut rusqlite::Connection,
    before: u64,
    keep: u64,
) -> Result<usize, StoreError> {
    let tx = conn.transaction()?;
    let mut n = tx.execute("DELETE FROM audit WHERE at < ?1", [before as i64])?;
    n += tx.execute(
        "DELETE FROM audit WHERE id <= (SELECT COALESCE(MAX(id), 0) FROM audit) - ?1",
        [keep as i64],
    )?;
    tx.commit()?;
    Ok(n)
}

pub(crate) fn sweep_pg(tx: &mut Tx<'_, '_>, before: u64, keep: u64) -> Result<usize, StoreError> {
    let mut n = tx.execute("DELETE FROM audit WHERE at < $1", &[&(before as i64)])? as usize;
    n += tx.execute(
        "DELETE FROM audit WHERE id <= (SELECT COALESCE(MAX(id), 0) FROM audit) - $1",
        &[&(keep as i64)],
    )? as usize;
    Ok(n)
}
