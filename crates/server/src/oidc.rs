//! OpenID Connect bearer tokens (`--oidc-issuer`): a company's identity provider signs a JWT;
//! Zenith checks it with the provider's published keys (jsonwebtoken) and maps its claims to
//! a user, a role and namespaces. Nothing is stored: the token is judged on every request.
//!
//! - Keys: `<issuer>/.well-known/openid-configuration` names `jwks_uri`; its JSON Web Key Set
//!   is fetched at the first OIDC request and again when a token names a key ID not in it (a
//!   key rotation), at most once per [`REFETCH_AFTER`]. At most [`MAX_KEYS`] keys, bodies of at
//!   most [`MAX_BODY`], [`FETCH_TIMEOUT`] each.
//! - Checked: signature (asymmetric algorithms only: RS*, PS*, ES*, EdDSA; never `none` or
//!   HMAC), `iss` = the issuer, `aud` contains the audience, `exp` in the future (60 s leeway),
//!   `nbf` when present.
//! - Claims: the user is the claim `--oidc-user-claim` (`sub` by default; `email` or
//!   `preferred_username` read better); groups are `--oidc-groups-claim` (`groups`). Groups
//!   named `<prefix>admin`, `<prefix>operator`, `<prefix><namespace>:submitter` and
//!   `<prefix><namespace>:viewer` (prefix `zenith:` by default) give the role: the highest one
//!   the groups give, in the namespaces named at that role. A token without such a group is
//!   refused (403).

use crate::clock::Monotonic;
use crate::error::ApiError;
use crate::users::Principal;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::time::Duration;
use zenith_model::tenancy::{validate_namespace, validate_user, Role, ALL_NAMESPACES};

/// A key set is fetched again at most this often (an unknown key ID asks for it).
pub const REFETCH_AFTER: Duration = Duration::from_secs(30);
/// Most keys kept from one key set.
pub const MAX_KEYS: usize = 64;
/// Largest discovery document or key set read.
pub const MAX_BODY: usize = 1 << 20;
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// How to trust an identity provider (the server's `--oidc-*` options).
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// `https://login.example.com/realms/acme` (plain `http` only on a loopback address).
    pub issuer: String,
    /// What `aud` must contain: the client ID registered for Zenith.
    pub audience: String,
    pub user_claim: String,
    pub groups_claim: String,
    pub group_prefix: String,
}

impl OidcConfig {
    /// Refuses an issuer that is not `https` (or `http` on a loopback address, for tests
    /// and local providers) and an empty audience.
    pub fn validate(&self) -> Result<(), String> {
        let url = reqwest::Url::parse(&self.issuer)
            .map_err(|e| format!("--oidc-issuer {:?}: {e}", self.issuer))?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(format!(
                "--oidc-issuer {:?} must be an https URL (http only on a loopback address)",
                self.issuer
            ));
        }
        if self.audience.trim().is_empty() {
            return Err("--oidc-audience is required with --oidc-issuer (Zenith's client ID at the provider)".into());
        }
        Ok(())
    }
}

struct Keys {
    by_kid: HashMap<String, (DecodingKey, Option<Algorithm>)>,
    /// When the key set was last asked for (fetched or failed).
    asked: Option<Monotonic>,
}

pub(crate) struct Oidc {
    cfg: OidcConfig,
    http: reqwest::Client,
    keys: tokio::sync::Mutex<Keys>,
    /// Key set fetches that worked and that failed (`zenith_oidc_key_fetches_total`).
    fetched: [Counter; 2],
}

/// Whether a bearer token has a JWT's shape (three base64url parts, a JSON header).
pub fn looks_like_jwt(t: &str) -> bool {
    t.starts_with("eyJ") && t.split('.').count() == 3
}

fn refused(why: impl Into<String>) -> ApiError {
    ApiError::BadToken(format!("OIDC token refused: {}", why.into()))
}

const ALLOWED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl Oidc {
    pub fn new(cfg: OidcConfig, fetched: [Counter; 2]) -> Result<Oidc, String> {
        cfg.validate()?;
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| format!("OIDC client: {e}"))?;
        Ok(Oidc {
            cfg,
            http,
            keys: tokio::sync::Mutex::new(Keys {
                by_kid: HashMap::new(),
                asked: None,
            }),
            fetched,
        })
    }

    /// The principal a JWT stands for, or why it is refused (and the user, when the token
    /// was good but gives no role).
    pub async fn check(&self, token: &str) -> Result<Principal, (ApiError, Option<String>)> {
        let claims = self.verify(token).await.map_err(|e| (e, None))?;
        self.principal(&claims)
    }

    /// The claims of a JWT whose signature and registered claims hold.
    async fn verify(&self, token: &str) -> Result<serde_json::Value, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| refused(e.to_string()))?;
        if !ALLOWED.contains(&header.alg) {
            return Err(refused(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header.kid.unwrap_or_default();
        let key = self.key(&kid).await?;
        if key.1.is_some_and(|a| a != header.alg) {
            return Err(refused("the token's algorithm is not its key's"));
        }
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.cfg.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.0, &v)
            .map_err(|e| refused(e.to_string()))?;
        Ok(data.claims)
    }

    /// The key `kid` names (with an empty `kid`: the set's only key), fetching the key set
    /// when it is not known yet or not among it.
    async fn key(&self, kid: &str) -> Result<(DecodingKey, Option<Algorithm>), ApiError> {
        let mut keys = self.keys.lock().await;
        let pick = |k: &Keys| {
            if kid.is_empty() && k.by_kid.len() == 1 {
                return k.by_kid.values().next().cloned();
            }
            k.by_kid.get(kid).cloned()
        };
        if let Some(k) = pick(&keys) {
            return Ok(k);
        }
        if keys
            .asked
            .is_some_and(|t| Monotonic::now().since(t) < REFETCH_AFTER)
        {
            return Err(refused(format!("no key {kid:?} at the identity provider")));
        }
        keys.asked = Some(Monotonic::now());
        match self.fetch().await {
            Ok(fetched) => {
                self.fetched[0].inc();
                keys.by_kid = fetched;
            }
            Err(e) => {
                self.fetched[1].inc();
                tracing::warn!(issuer = %self.cfg.issuer, error = %e, "OIDC keys not fetched");
                return Err(ApiError::Unavailable(format!(
                    "the identity provider's keys could not be fetched: {e}"
                )));
            }
        }
        pick(&keys).ok_or_else(|| refused(format!("no key {kid:?} at the identity provider")))
    }

    async fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: {}", resp.status()));
        }
        let body = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        if body.len() > MAX_BODY {
            return Err(format!("{url}: larger than {MAX_BODY} bytes"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
    }

    #[tracing::instrument(skip(self), fields(issuer = %self.cfg.issuer))]
    async fn fetch(&self) -> Result<HashMap<String, (DecodingKey, Option<Algorithm>)>, String> {
        let base = self.cfg.issuer.trim_end_matches('/');
        let disco = self
            .get_json(&format!("{base}/.well-known/openid-configuration"))
            .await?;
        if disco["issuer"].as_str().map(|i| i.trim_end_matches('/')) != Some(base) {
            return Err(format!(
                "the discovery document names issuer {} instead",
                disco["issuer"]
            ));
        }
        let uri = disco["jwks_uri"]
            .as_str()
            .ok_or("the discovery document has no jwks_uri")?
            .to_string();
        let set: JwkSet = serde_json::from_value(self.get_json(&uri).await?)
            .map_err(|e| format!("{uri}: not a key set: {e}"))?;
        let mut out = HashMap::new();
        for jwk in set.keys.iter().take(MAX_KEYS) {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue; // a key kind we cannot use (an encryption key, say)
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            out.insert(kid, (key, alg));
        }
        tracing::info!(keys = out.len(), "OIDC keys fetched");
        Ok(out)
    }

    /// User, role and namespaces from verified claims.
    fn principal(
        &self,
        claims: &serde_json::Value,
    ) -> Result<Principal, (ApiError, Option<String>)> {
        let c = &self.cfg;
        let user = claims[&c.user_claim].as_str().ok_or_else(|| {
            let e = refused(format!("no {:?} claim to name the user", c.user_claim));
            (e, None)
        })?;
        validate_user(user, &c.user_claim).map_err(|e| (refused(e.to_string()), None))?;
        let groups: Vec<&str> = match &claims[&c.groups_claim] {
            serde_json::Value::Array(a) => a.iter().filter_map(|g| g.as_str()).collect(),
            serde_json::Value::String(g) => vec![g.as_str()],
            _ => Vec::new(),
        };
        let (role, namespaces) = role_of(&groups, &c.group_prefix).ok_or_else(|| {
            let e = ApiError::Denied(format!(
                "{user} has no Zenith group (groups named {p}admin, {p}operator, {p}NAMESPACE:submitter or {p}NAMESPACE:viewer in the {:?} claim)",
                c.groups_claim,
                p = c.group_prefix
            ));
            (e, Some(user.to_string()))
        })?;
        Ok(Principal {
            user: user.to_string(),
            role,
            namespaces,
            token: Some("oidc".into()),
        })
    }
}

/// The highest role the groups give and its namespaces.
fn role_of(groups: &[&str], prefix: &str) -> Option<(Role, Vec<String>)> {
    let mine: Vec<&str> = groups
        .iter()
        .filter_map(|g| g.strip_prefix(prefix))
        .collect();
    if mine.contains(&"admin") {
        return Some((Role::Admin, vec![ALL_NAMESPACES.into()]));
    }
    if mine.contains(&"operator") {
        return Some((Role::Operator, vec![ALL_NAMESPACES.into()]));
    }
    for (role, name) in [(Role::Submitter, "submitter"), (Role::Viewer, "viewer")] {
        let mut namespaces: Vec<String> = mine
            .iter()
            .filter_map(|g| g.rsplit_once(':'))
            .filter(|(ns, r)| *r == name && validate_namespace(ns, "group").is_ok())
            .map(|(ns, _)| ns.to_string())
            .collect();
        namespaces.sort();
        namespaces.dedup();
        namespaces.truncate(zenith_model::tenancy::MAX_TOKEN_NAMESPACES);
        if !namespaces.is_empty() {
            return Some((role, namespaces));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_to_the_highest_role() {
        let p = "zenith:";
        assert_eq!(
            role_of(&["zenith:admin", "x"], p).map(|r| r.0),
            Some(Role::Admin)
        );
        assert_eq!(
            role_of(
                &[
                    "zenith:ml:viewer",
                    "zenith:ml:submitter",
                    "zenith:web:submitter"
                ],
                p
            ),
            Some((Role::Submitter, vec!["ml".into(), "web".into()]))
        );
        assert_eq!(
            role_of(&["zenith:ml:viewer"], p),
            Some((Role::Viewer, vec!["ml".into()]))
        );
        assert_eq!(role_of(&["admins", "zenith:Bad_NS:submitter"], p), None);
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(!looks_like_jwt("zt1:abc:def"));
    }

    #[test]
    fn issuer_must_be_https_or_loopback() {
        let cfg = |issuer: &str, audience: &str| OidcConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            user_claim: "sub".into(),
            groups_claim: "groups".into(),
            group_prefix: "zenith:".into(),
        };
        assert!(cfg("https://login.example.com", "zenith")
            .validate()
            .is_ok());
        assert!(cfg("http://127.0.0.1:9000", "zenith").validate().is_ok());
        assert!(cfg("http://login.example.com", "zenith")
            .validate()
            .is_err());
        assert!(cfg("https://login.example.com", " ").validate().is_err());
    }
}
