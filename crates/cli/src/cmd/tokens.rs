//! `zenith token create|list|revoke` (admin) and `zenith whoami`.

use super::Conn;
use crate::output::{self, Format};
use clap::Args;
use zenith_model::tenancy::Role;
use zenith_model::DurationMs;
use zenith_protocol::tenancy::{TokenRequest, TokenView};

#[derive(clap::Subcommand, Debug)]
pub enum TokenVerb {
    /// Make a token for a person or a program; it is printed once, only its hash is kept.
    Create(CreateArgs),
    /// List tokens (never their secrets).
    List(ListArgs),
    /// Refuse a token from now on, on every server.
    Revoke(RevokeArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Who holds it: recorded as the submitter of what it submits, and in the audit log.
    #[arg(long)]
    name: String,
    /// admin (everything), operator (nodes, read everything), submitter (submit, cancel,
    /// read in its namespaces) or viewer (read in its namespaces).
    #[arg(long)]
    role: Role,
    /// A namespace it acts in (repeatable; `*` for all). Not needed for admin.
    #[arg(long = "ns")]
    namespaces: Vec<String>,
    /// Refused after this long, e.g. 90d, 12h (default: never).
    #[arg(long, value_parser = DurationMs::parse)]
    expires: Option<DurationMs>,
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

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// The token's ID (zenith token list).
    id: String,
    #[command(flatten)]
    conn: Conn,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

pub async fn run(verb: TokenVerb) -> anyhow::Result<u8> {
    match verb {
        TokenVerb::Create(a) => create(a).await,
        TokenVerb::List(a) => {
            let list = a.conn.client()?.tokens().await?;
            if a.format.is_data() {
                output::data(a.format, &list)?;
            } else {
                table(&list.tokens);
            }
            Ok(0)
        }
        TokenVerb::Revoke(a) => {
            let v = a.conn.client()?.revoke_token(&a.id).await?;
            if a.format.is_data() {
                output::data(a.format, &v)?;
            } else {
                out!(
                    "token {} of {} revoked",
                    output::safe(&v.id),
                    output::safe(&v.user)
                );
            }
            Ok(0)
        }
    }
}

async fn create(a: CreateArgs) -> anyhow::Result<u8> {
    // `-n`, the namespace of client verbs, also names the token's namespace when `--ns` does not.
    let mut namespaces = a.namespaces.clone();
    if namespaces.is_empty() {
        namespaces.extend(a.conn.namespace.clone());
    }
    let req = TokenRequest {
        name: a.name.clone(),
        role: a.role,
        namespaces,
        expires_in: a.expires,
    };
    let made = a.conn.client()?.create_token(&req).await?;
    if a.format.is_data() {
        output::data(a.format, &made)?;
        return Ok(0);
    }
    let v = &made.view;
    let expiry = match v.expires_at {
        Some(t) => format!(", expires {}", output::when(t)),
        None => String::new(),
    };
    eprintln!(
        "token {} for {} ({} in {}{expiry}); it is shown only now:",
        v.id,
        output::safe(&v.user),
        v.role,
        v.namespaces.join(",")
    );
    out!("{}", made.token);
    Ok(0)
}

fn table(tokens: &[TokenView]) {
    let now = output::now_ms();
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.user.clone(),
                t.role.to_string(),
                t.namespaces.join(","),
                t.state.clone(),
                output::ago(now, t.created_at),
                t.expires_at
                    .map(output::when)
                    .unwrap_or_else(|| "never".into()),
                t.created_by.clone(),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "USER",
            "ROLE",
            "NAMESPACES",
            "STATE",
            "CREATED",
            "EXPIRES",
            "BY",
        ],
        &rows,
    );
}

#[derive(Args, Debug)]
pub struct WhoAmIArgs {
    #[command(flatten)]
    conn: Conn,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    format: Format,
}

/// `zenith whoami`: the user, role and namespaces the token acts as.
pub async fn whoami(a: WhoAmIArgs) -> anyhow::Result<u8> {
    let w = a.conn.client()?.whoami().await?;
    if a.format.is_data() {
        output::data(a.format, &w)?;
    } else {
        out!(
            "{} ({}) in {}; default namespace {}",
            output::safe(&w.user),
            w.role,
            w.namespaces.join(","),
            w.default_namespace
        );
    }
    Ok(0)
}
