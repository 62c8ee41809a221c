//! `zenith namespace set|show|reset|list` (weights and quotas; setting takes an admin) and
//! `zenith share` (the fair-share table).

use super::Conn;
use crate::output::{self, Format};
use clap::Args;
use zenith_model::namespace::{NamespaceSettings, PartyShare, Quota};
use zenith_model::resources::{format_bytes, parse_bytes};

#[derive(clap::Subcommand, Debug)]
pub enum NamespaceVerb {
    /// Change a namespace's fair-share weight, its users' weights or its quota (admin);
    /// what is not given stays as it was.
    Set(SetArgs),
    /// A namespace's settings.
    Show(NameArgs),
    /// Back to weight 1, no user weights and no quota (admin).
    Reset(NameArgs),
    /// Namespaces that have settings.
    List(ListArgs),
}

/// A limit as given: a number, or `none` (no limit).
#[derive(Clone, Copy, Debug)]
struct Limit<T>(Option<T>);

fn limit<T: std::str::FromStr>(s: &str) -> Result<Limit<T>, String> {
    if s == "none" {
        return Ok(Limit(None));
    }
    s.parse()
        .map(|v| Limit(Some(v)))
        .map_err(|_| format!("{s:?} is not a number (or none)"))
}

fn memory_limit(s: &str) -> Result<Limit<u64>, String> {
    if s == "none" {
        return Ok(Limit(None));
    }
    parse_bytes(s)
        .map(|v| Limit(Some(v)))
        .map_err(|e| e.to_string())
}

fn user_weight(s: &str) -> Result<(String, u32), String> {
    let (user, w) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected USER=WEIGHT"))?;
    let w = w
        .parse()
        .map_err(|_| format!("{s:?}: weight is not a number"))?;
    Ok((user.to_string(), w))
}

#[derive(Args, Debug)]
pub struct SetArgs {
    name: String,
    /// Fair-share weight against other namespaces (1-10000; default 1).
    #[arg(long)]
    weight: Option<u32>,
    /// A user's weight inside the namespace, USER=WEIGHT (repeatable; weight 1 removes it).
    #[arg(long = "user-weight", value_parser = user_weight)]
    user_weights: Vec<(String, u32)>,
    /// CPU cores its running attempts may hold (`none`: no limit).
    #[arg(long, value_parser = limit::<f64>)]
    cpus: Option<Limit<f64>>,
    /// Memory its running attempts may hold, e.g. 256G (`none`: no limit).
    #[arg(long, value_parser = memory_limit)]
    memory: Option<Limit<u64>>,
    /// GPUs its running attempts may hold (`none`: no limit).
    #[arg(long, value_parser = limit::<u64>)]
    gpus: Option<Limit<u64>>,
    /// Attempts it may run at once (`none`: no limit).
    #[arg(long, value_parser = limit::<u64>)]
    max_running: Option<Limit<u64>>,
    /// Live (queued or running) jobs it may hold; more are refused at submit.
    #[arg(long, value_parser = limit::<u64>)]
    max_jobs: Option<Limit<u64>>,
    /// Live tasks it may hold over all its jobs; more are refused at submit.
    #[arg(long, value_parser = limit::<u64>)]
    max_tasks: Option<Limit<u64>>,
    #[command(flatten)]
    conn: Conn,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

#[derive(Args, Debug)]
pub struct NameArgs {
    name: String,
    #[command(flatten)]
    conn: Conn,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

pub async fn run(verb: NamespaceVerb) -> anyhow::Result<u8> {
    match verb {
        NamespaceVerb::Set(a) => {
            let client = a.conn.client()?;
            let mut s = client.namespace(&a.name).await?;
            apply(&mut s, &a);
            let s = client.set_namespace(&s).await?;
            show(&s, a.format)
        }
        NamespaceVerb::Show(a) => show(&a.conn.client()?.namespace(&a.name).await?, a.format),
        NamespaceVerb::Reset(a) => {
            show(&a.conn.client()?.clear_namespace(&a.name).await?, a.format)
        }
        NamespaceVerb::List(a) => {
            let list = a.conn.client()?.namespaces().await?;
            if a.format.is_data() {
                output::data(a.format, &list)?;
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = list
                .namespaces
                .iter()
                .map(|s| {
                    let users: Vec<String> = s
                        .user_weights
                        .iter()
                        .map(|(u, w)| format!("{u}={w}"))
                        .collect();
                    vec![
                        s.name.clone(),
                        s.weight.to_string(),
                        users.join(","),
                        quota_text(&s.quota),
                    ]
                })
                .collect();
            output::table(&["NAMESPACE", "WEIGHT", "USER WEIGHTS", "QUOTA"], &rows);
            Ok(0)
        }
    }
}

fn apply(s: &mut NamespaceSettings, a: &SetArgs) {
    if let Some(w) = a.weight {
        s.weight = w;
    }
    for (user, w) in &a.user_weights {
        if *w == 1 {
            s.user_weights.remove(user);
        } else {
            s.user_weights.insert(user.clone(), *w);
        }
    }
    let q = &mut s.quota;
    if let Some(Limit(v)) = a.cpus {
        q.cpus = v;
    }
    if let Some(Limit(v)) = a.memory {
        q.memory = v;
    }
    if let Some(Limit(v)) = a.gpus {
        q.gpus = v;
    }
    if let Some(Limit(v)) = a.max_running {
        q.running = v;
    }
    if let Some(Limit(v)) = a.max_jobs {
        q.jobs = v;
    }
    if let Some(Limit(v)) = a.max_tasks {
        q.tasks = v;
    }
}

fn show(s: &NamespaceSettings, format: Format) -> anyhow::Result<u8> {
    if format.is_data() {
        output::data(format, s)?;
        return Ok(0);
    }
    out!("namespace {}: weight {}", s.name, s.weight);
    for (u, w) in &s.user_weights {
        out!("  user {} weight {w}", output::safe(u));
    }
    out!("  quota: {}", quota_text(&s.quota));
    Ok(0)
}

/// `cpus 64, memory 256.0G, running 100`, or `none`.
fn quota_text(q: &Quota) -> String {
    let mut parts = Vec::new();
    if let Some(c) = q.cpus {
        parts.push(format!("cpus {c}"));
    }
    if let Some(m) = q.memory {
        parts.push(format!("memory {}", format_bytes(m)));
    }
    for (name, v) in [
        ("gpus", q.gpus),
        ("running", q.running),
        ("jobs", q.jobs),
        ("tasks", q.tasks),
    ] {
        if let Some(v) = v {
            parts.push(format!("{name} {v}"));
        }
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

#[derive(Args, Debug)]
pub struct ShareArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

/// `zenith share`: each namespace, then its users indented.
pub async fn share(a: ShareArgs) -> anyhow::Result<u8> {
    let list = a.conn.client()?.share().await?;
    if a.format.is_data() {
        output::data(a.format, &list)?;
        return Ok(0);
    }
    let pct = |v: f64| format!("{:.1}%", v * 100.0);
    let row = |name: String, p: &PartyShare, quota: String| {
        vec![
            name,
            p.weight.to_string(),
            p.running.to_string(),
            format!("{}", p.cpu_millis as f64 / 1000.0),
            format_bytes(p.memory),
            p.gpus.to_string(),
            p.live_jobs.to_string(),
            pct(p.share),
            p.target.map(pct).unwrap_or_else(|| "-".into()),
            pct(p.usage),
            quota,
        ]
    };
    let mut rows = Vec::new();
    for ns in &list.namespaces {
        rows.push(row(ns.party.name.clone(), &ns.party, quota_text(&ns.quota)));
        for u in &ns.users {
            let name = if u.name.is_empty() { "(none)" } else { &u.name };
            rows.push(row(format!("  {}", output::safe(name)), u, String::new()));
        }
    }
    output::table(
        &[
            "NAMESPACE/USER",
            "WEIGHT",
            "RUNNING",
            "CPUS",
            "MEMORY",
            "GPUS",
            "JOBS",
            "SHARE",
            "TARGET",
            "USAGE",
            "QUOTA",
        ],
        &rows,
    );
    eprintln!(
        "usage: dominant share averaged with a {} half-life; lowest (share + usage) / weight goes next",
        humantime::format_duration(std::time::Duration::from_millis(list.half_life_ms))
    );
    Ok(0)
}
