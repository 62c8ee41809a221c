//! Sign-in with an identity provider, on the real binary: the test plays an OpenID Connect
//! provider (discovery document and key set over HTTP on 127.0.0.1, tokens signed with a test
//! key) and `zenith up --oidc-issuer` judges its JWTs: claims map to user, role and
//! namespaces; a wrong audience, an expired token, an unknown key, a forged algorithm and a
//! token without a Zenith group are refused and audited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod common;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const KEY: &[u8] = include_bytes!("fixtures/oidc/test-idp-key.pem");
const JWKS: &str = include_str!("fixtures/oidc/jwks.json");

/// A provider on 127.0.0.1 answering discovery and the key set; counts key set fetches.
fn provider() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let fetches = Arc::new(AtomicUsize::new(0));
    let (iss, count) = (issuer.clone(), fetches.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut line = String::new();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // Skip the headers.
            let mut h = String::new();
            while reader.read_line(&mut h).is_ok_and(|n| n > 2) {
                h.clear();
            }
            let body = if line.contains("/.well-known/openid-configuration") {
                json!({"issuer": iss, "jwks_uri": format!("{iss}/keys")}).to_string()
            } else if line.contains("/keys") {
                count.fetch_add(1, Ordering::SeqCst);
                JWKS.to_string()
            } else {
                String::new()
            };
            let status = if body.is_empty() {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (issuer, fetches)
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(claims: &Value, kid: &str) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_rsa_pem(KEY).unwrap()).unwrap()
}

fn claims(issuer: &str, email: &str, groups: &[&str]) -> Value {
    json!({"iss": issuer, "aud": "zenith", "sub": "u-123", "email": email,
        "groups": groups, "iat": now_s(), "exp": now_s() + 600})
}

#[test]
fn an_identity_providers_tokens_map_to_users_roles_and_namespaces() {
    let (issuer, fetches) = provider();
    let c = Cluster::up(&[
        "--oidc-issuer",
        &issuer,
        "--oidc-audience",
        "zenith",
        "--oidc-user-claim",
        "email",
    ]);
    let dana = sign(
        &claims(
            &issuer,
            "dana@example.com",
            &["staff", "zenith:ml:submitter"],
        ),
        "test-1",
    );

    let who = c.cli_as(&dana, &["whoami", "-o", "json"]);
    assert!(
        who.status.success(),
        "{}",
        String::from_utf8_lossy(&who.stderr)
    );
    let who: Value = serde_json::from_slice(&who.stdout).unwrap();
    assert_eq!(
        (&who["user"], &who["role"], &who["namespaces"]),
        (
            &json!("dana@example.com"),
            &json!("submitter"),
            &json!(["ml"])
        )
    );

    // Work goes to her namespace, recorded as hers; another namespace is refused.
    let out = c.cli_as(&dana, &["submit", "--", "true"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let job = c.wait_final(id, 30);
    assert_eq!(
        (&job["namespace"], &job["submitter"]),
        (&json!("ml"), &json!("dana@example.com"))
    );
    let out = c.cli_as(&dana, &["submit", "-n", "web", "--", "true"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An admin group gives admin.
    let boss = sign(
        &claims(&issuer, "boss@example.com", &["zenith:admin"]),
        "test-1",
    );
    let out = c.cli_as(&boss, &["token", "list", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Refused: another audience, expired, an unknown key, HMAC with the public key as its
    // secret (the classic forgery), no Zenith group.
    let mut other_aud = claims(&issuer, "eve@example.com", &["zenith:admin"]);
    other_aud["aud"] = json!("another-app");
    let mut expired = claims(&issuer, "eve@example.com", &["zenith:admin"]);
    expired["exp"] = json!(now_s() - 3600);
    let unknown_key = sign(
        &claims(&issuer, "eve@example.com", &["zenith:admin"]),
        "rotated-9",
    );
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(&issuer, "eve@example.com", &["zenith:admin"]),
        &EncodingKey::from_secret(JWKS.as_bytes()),
    )
    .unwrap();
    let no_group = sign(&claims(&issuer, "gus@example.com", &["staff"]), "test-1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (token, status, why) in [
        (sign(&other_aud, "test-1"), 401, "InvalidAudience"),
        (sign(&expired, "test-1"), 401, "ExpiredSignature"),
        (unknown_key, 401, "no key"),
        (forged, 401, "not accepted"),
        (no_group, 403, "no Zenith group"),
    ] {
        let resp = rt
            .block_on(c.api().with_token(&token).get("/api/v1/jobs").send())
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{why}");
        let body = rt.block_on(resp.text()).unwrap();
        assert!(body.contains(why), "{why}: {body}");
    }
    // Keys were fetched once at the first token, and again (rate-limited) for the unknown key.
    let n = fetches.load(Ordering::SeqCst);
    assert!((1..=2).contains(&n), "key set fetched {n} times");

    // The refusals are in the audit log.
    let audit: Value = serde_json::from_str(&c.ok(&["audit", "--refused", "-o", "json"])).unwrap();
    let refused = audit["records"].as_array().unwrap();
    assert!(
        refused
            .iter()
            .filter(|r| r["path"] == "/api/v1/jobs")
            .count()
            >= 5,
        "{audit}"
    );
}
