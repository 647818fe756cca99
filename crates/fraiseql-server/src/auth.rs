//! Authentication of `connection_init` payloads: a JWT verifier (HS256 / RS256 / a JWKS, with
//! `exp`, `nbf`, `aud` and `iss` checked) implementing the engine's [`Authenticator`] trait.
//! Any other scheme implements [`Authenticator`] itself and is passed to the server builder.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use fraiseql_protocol::JsonObject;
use fraiseql_subscriptions::security::{AuthError, Authenticator, Principal};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Why a JWT configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtConfigError {
    /// The HS256 secret is empty.
    #[error("the HS256 secret is empty: give at least 32 bytes of random data")]
    EmptySecret,
    /// The RS256 public key is not a PEM-encoded RSA public key.
    #[error("the RS256 public key is not a PEM-encoded RSA public key: {0}")]
    InvalidPublicKey(String),
    /// The JWKS is not a JSON Web Key Set of usable signature keys.
    #[error("invalid JWKS: {0}")]
    InvalidJwks(String),
}

/// The keys tokens are verified with.
#[derive(Clone)]
enum Keys {
    /// One key, of the validation's algorithm.
    One(DecodingKey),
    /// A JWKS: the token's `kid` picks the key (a set of one key also takes tokens without
    /// `kid`), each key with its own algorithm.
    Set(Vec<(Option<String>, DecodingKey, Algorithm)>),
}

/// The signature algorithm of a JWK: its `alg`, else what its key type implies.
fn jwk_algorithm(jwk: &Jwk) -> Result<Algorithm, String> {
    let kid = jwk.common.key_id.as_deref().unwrap_or("(no kid)");
    if let Some(alg) = jwk.common.key_algorithm {
        return alg
            .to_string()
            .parse::<Algorithm>()
            .map_err(|_| format!("key {kid}: {alg} is not a signature algorithm"));
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Ok(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => Ok(Algorithm::ES256),
            EllipticCurve::P384 => Ok(Algorithm::ES384),
            _ => Err(format!("key {kid}: unsupported curve")),
        },
        AlgorithmParameters::OctetKeyPair(_) => Ok(Algorithm::EdDSA),
        AlgorithmParameters::OctetKey(_) => Ok(Algorithm::HS256),
        _ => Err(format!("key {kid}: unsupported key type")),
    }
}

/// Verifies the JWT a client sends in its `connection_init` payload and turns its claims
/// into a [`Principal`].
///
/// The token is read from the payload's `token`, `authToken`, `Authorization` or
/// `authorization` key (a `Bearer ` prefix is accepted), or from `headers.Authorization`.
/// Claims: `sub` → user id; `tenant_id` (or `tenant`, or the configured claim) → tenant;
/// `roles` (array, or space-separated string) → roles; `scope` (space-separated, OAuth) or
/// `scopes` / `scp` (array) → scopes; `exp` → [`Principal::expires_at`] (the server closes
/// the socket with 4403 when it passes); every claim is kept in [`Principal::claims`].
///
/// ```
/// use fraiseql_server::JwtAuthenticator;
/// let auth = JwtAuthenticator::hs256(b"a-secret-of-at-least-32-bytes-long!!")
///     .unwrap()
///     .with_audience(["my-api"])
///     .with_issuer(["https://auth.example.com"]);
/// # drop(auth);
/// ```
#[derive(Clone)]
pub struct JwtAuthenticator {
    keys: Keys,
    validation: Validation,
    tenant_claim: String,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("algorithms", &self.validation.algorithms)
            .field("audience", &self.validation.aud)
            .field("issuer", &self.validation.iss)
            .field("tenant_claim", &self.tenant_claim)
            .finish_non_exhaustive()
    }
}

impl JwtAuthenticator {
    /// Tokens signed with HMAC-SHA256 and `secret`.
    ///
    /// # Errors
    /// [`JwtConfigError::EmptySecret`].
    pub fn hs256(secret: &[u8]) -> Result<Self, JwtConfigError> {
        if secret.is_empty() {
            return Err(JwtConfigError::EmptySecret);
        }
        Ok(Self::new(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// Tokens signed with RSA-SHA256, verified with a PEM-encoded public key
    /// (`-----BEGIN PUBLIC KEY-----` or `-----BEGIN RSA PUBLIC KEY-----`).
    ///
    /// # Errors
    /// [`JwtConfigError::InvalidPublicKey`].
    pub fn rs256_pem(public_key_pem: &[u8]) -> Result<Self, JwtConfigError> {
        let key = DecodingKey::from_rsa_pem(public_key_pem)
            .map_err(|e| JwtConfigError::InvalidPublicKey(e.to_string()))?;
        Ok(Self::new(key, Algorithm::RS256))
    }

    /// Tokens signed with any key of a JSON Web Key Set (`{"keys": [...]}`: RSA, EC P-256 /
    /// P-384, Ed25519 or symmetric keys), chosen by the token's `kid`; a set of one key
    /// also verifies tokens without `kid`. Each key's algorithm is its `alg`, else the one
    /// its type implies (RS256, ES256 / ES384, EdDSA, HS256).
    ///
    /// # Errors
    /// [`JwtConfigError::InvalidJwks`]: not a key set, an empty one, or an unusable key.
    pub fn jwks(json: &[u8]) -> Result<Self, JwtConfigError> {
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|e| JwtConfigError::InvalidJwks(e.to_string()))?;
        if set.keys.is_empty() {
            return Err(JwtConfigError::InvalidJwks("the set has no keys".into()));
        }
        let mut keys = Vec::with_capacity(set.keys.len());
        for jwk in &set.keys {
            let algorithm = jwk_algorithm(jwk).map_err(JwtConfigError::InvalidJwks)?;
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| JwtConfigError::InvalidJwks(e.to_string()))?;
            keys.push((jwk.common.key_id.clone(), key, algorithm));
        }
        let first = keys.first().map_or(Algorithm::RS256, |k| k.2);
        let mut this = Self::new(DecodingKey::from_secret(b"unused"), first);
        this.validation.algorithms = keys.iter().map(|k| k.2).collect();
        this.keys = Keys::Set(keys);
        Ok(this)
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.validate_nbf = true;
        validation.leeway = 30;
        validation.validate_aud = false;
        Self {
            keys: Keys::One(key),
            validation,
            tenant_claim: "tenant_id".to_owned(),
        }
    }

    /// Accepts only tokens whose `aud` names one of `audiences` (a token without `aud`
    /// is refused: jsonwebtoken checks the claim only when it is present, unless it is
    /// required).
    #[must_use]
    pub fn with_audience<I: IntoIterator<Item = S>, S: ToString>(mut self, audiences: I) -> Self {
        let audiences: Vec<String> = audiences.into_iter().map(|a| a.to_string()).collect();
        self.validation.validate_aud = !audiences.is_empty();
        if !audiences.is_empty() {
            self.validation
                .required_spec_claims
                .insert("aud".to_owned());
        }
        self.validation.set_audience(&audiences);
        self
    }

    /// Accepts only tokens whose `iss` is one of `issuers` (a token without `iss` is
    /// refused).
    #[must_use]
    pub fn with_issuer<I: IntoIterator<Item = S>, S: ToString>(mut self, issuers: I) -> Self {
        let issuers: Vec<String> = issuers.into_iter().map(|i| i.to_string()).collect();
        if !issuers.is_empty() {
            self.validation
                .required_spec_claims
                .insert("iss".to_owned());
        }
        self.validation.set_issuer(&issuers);
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default 30 s; a fraction of a second
    /// counts as a whole one). A token up to `leeway` past its `exp` is accepted, and its
    /// connection closes `leeway` after `exp`.
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.validation.leeway = leeway.as_secs() + u64::from(leeway.subsec_nanos() > 0);
        self
    }

    /// The claim holding the tenant (default `tenant_id`; `tenant` is also read).
    #[must_use]
    pub fn with_tenant_claim(mut self, claim: impl Into<String>) -> Self {
        self.tenant_claim = claim.into();
        self
    }

    /// Verifies `token` and builds its principal.
    ///
    /// # Errors
    /// [`AuthError`] with a message that names the problem but never the token or key.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let data = match &self.keys {
            Keys::One(key) => {
                jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation)
            }
            Keys::Set(keys) => {
                let header = jsonwebtoken::decode_header(token)
                    .map_err(|e| AuthError::new(describe(e.kind())))?;
                let found = match header.kid.as_deref() {
                    Some(kid) => keys.iter().find(|k| k.0.as_deref() == Some(kid)),
                    None if keys.len() == 1 => keys.first(),
                    None => None,
                };
                let Some((_, key, algorithm)) = found else {
                    return Err(AuthError::new(
                        "Forbidden: the token's key id (kid) names no key of this server's key set",
                    ));
                };
                let mut validation = self.validation.clone();
                validation.algorithms = vec![*algorithm];
                jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            }
        }
        .map_err(|e| AuthError::new(describe(e.kind())))?;
        let leeway = Duration::from_secs(self.validation.leeway);
        Ok(principal_from_claims(
            data.claims,
            &self.tenant_claim,
            leeway,
        ))
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, payload: Option<&JsonObject>) -> Result<Principal, AuthError> {
        let token = payload.and_then(token_of).ok_or_else(|| {
            AuthError::new(
                "connection_init carries no token: send {\"token\": \"<JWT>\"} or \
                 {\"Authorization\": \"Bearer <JWT>\"} as its payload",
            )
        })?;
        self.verify(token)
    }
}

/// The token in a `connection_init` payload, if there is one.
fn token_of(payload: &JsonObject) -> Option<&str> {
    let direct = ["token", "authToken", "Authorization", "authorization"]
        .iter()
        .find_map(|key| payload.get(*key).and_then(Value::as_str));
    let from_headers = || {
        payload
            .get("headers")
            .and_then(Value::as_object)
            .and_then(|h| h.get("Authorization").or_else(|| h.get("authorization")))
            .and_then(Value::as_str)
    };
    let raw = direct.or_else(from_headers)?.trim();
    let token = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
        .unwrap_or(raw)
        .trim();
    (!token.is_empty()).then_some(token)
}

fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "Forbidden: the token has expired",
        ErrorKind::ImmatureSignature => "Forbidden: the token is not valid yet (nbf)",
        ErrorKind::InvalidAudience => "Forbidden: the token's audience is not accepted",
        ErrorKind::InvalidIssuer => "Forbidden: the token's issuer is not accepted",
        ErrorKind::InvalidSignature => "Forbidden: the token's signature is invalid",
        ErrorKind::InvalidAlgorithm => "Forbidden: the token's algorithm is not accepted",
        ErrorKind::MissingRequiredClaim(_) => "Forbidden: the token lacks a required claim (exp)",
        _ => "Forbidden: the token is malformed",
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The principal of verified `claims`. It expires `leeway` after `exp`: the clock skew
/// tolerated at connect is tolerated for the rest of the connection too.
fn principal_from_claims(
    claims: Map<String, Value>,
    tenant_claim: &str,
    leeway: Duration,
) -> Principal {
    let mut principal = Principal::anonymous();
    principal.user_id = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
    principal.tenant_id = claims
        .get(tenant_claim)
        .or_else(|| claims.get("tenant"))
        .and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    principal = principal.with_roles(strings(claims.get("roles")));
    principal = principal.with_scopes(strings(claims.get("scope")));
    principal = principal.with_scopes(strings(claims.get("scopes")));
    principal = principal.with_scopes(strings(claims.get("scp")));
    let exp = claims.get("exp").and_then(|exp| {
        exp.as_u64().map(Duration::from_secs).or_else(|| {
            exp.as_f64()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
        })
    });
    if let Some(exp) = exp {
        principal.expires_at = UNIX_EPOCH
            .checked_add(exp)
            .and_then(|at| at.checked_add(leeway));
    }
    principal.claims = claims;
    principal
}

/// Seconds since the Unix epoch, for building tokens in tests and examples.
#[must_use]
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

    /// `SECRET` as base64url without padding (a JWK's `k`).
    fn secret_b64() -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in SECRET.chunks(3) {
            let n = chunk
                .iter()
                .fold(0_u32, |acc, b| (acc << 8) | u32::from(*b))
                << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    fn token_with_kid(kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    #[test]
    fn a_jwks_picks_the_key_by_kid() {
        let k = secret_b64();
        let jwks = json!({"keys": [
            {"kty": "oct", "kid": "one", "alg": "HS256", "k": k},
            {"kty": "oct", "kid": "two", "k": "c29tZS1vdGhlci1zZWNyZXQtb2YtZW5vdWdoLWxlbmd0aA"},
        ]});
        let auth = JwtAuthenticator::jwks(jwks.to_string().as_bytes()).unwrap();
        let claims = json!({"sub": "ann", "exp": unix_now() + 60});
        let principal = auth.verify(&token_with_kid(Some("one"), &claims)).unwrap();
        assert_eq!(principal.user_id.as_deref(), Some("ann"));
        // The other key does not verify this signature; an unknown kid names the problem.
        assert!(auth.verify(&token_with_kid(Some("two"), &claims)).is_err());
        let unknown = auth
            .verify(&token_with_kid(Some("three"), &claims))
            .unwrap_err();
        assert!(unknown.to_string().contains("kid"), "{unknown}");
        // Without a kid, a set of several keys cannot choose.
        assert!(auth.verify(&token_with_kid(None, &claims)).is_err());
        // A set of one key takes tokens without kid.
        let single = json!({"keys": [{"kty": "oct", "k": k}]});
        let auth = JwtAuthenticator::jwks(single.to_string().as_bytes()).unwrap();
        assert!(auth.verify(&token_with_kid(None, &claims)).is_ok());
    }

    #[test]
    fn an_unusable_jwks_is_refused() {
        for bad in [
            &b"not json"[..],
            br#"{"keys": []}"#,
            br#"{"keys": [{"kty": "oct", "k": "AA", "alg": "RSA-OAEP"}]}"#,
        ] {
            assert!(
                matches!(
                    JwtAuthenticator::jwks(bad),
                    Err(JwtConfigError::InvalidJwks(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn token(claims: &Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn payload(value: Value) -> JsonObject {
        value.as_object().unwrap().clone()
    }

    #[tokio::test]
    async fn a_valid_token_becomes_a_principal() {
        let exp = unix_now() + 600;
        let t = token(
            &json!({"sub": "u1", "tenant_id": "acme", "roles": ["admin"],
                              "scope": "read write", "exp": exp}),
        );
        let auth = JwtAuthenticator::hs256(SECRET).unwrap();
        let p = auth
            .authenticate(Some(&payload(json!({"token": t}))))
            .await
            .unwrap();
        assert_eq!(p.user_id.as_deref(), Some("u1"));
        assert_eq!(p.tenant_id.as_deref(), Some("acme"));
        assert!(p.has_role("admin"));
        assert!(p.has_scope("read") && p.has_scope("write"));
        assert_eq!(
            p.expires_at,
            UNIX_EPOCH.checked_add(Duration::from_secs(exp + 30)),
            "exp plus the default 30 s leeway"
        );
    }

    #[tokio::test]
    async fn the_leeway_applies_to_exp_at_connect_and_after() {
        let auth = JwtAuthenticator::hs256(SECRET).unwrap();
        let exp = unix_now() - 10;
        let t = token(&json!({"sub": "late", "exp": exp}));
        let p = auth
            .authenticate(Some(&payload(json!({"token": t}))))
            .await
            .expect("10 s past exp is within the default 30 s leeway");
        assert_eq!(
            p.expires_at,
            UNIX_EPOCH.checked_add(Duration::from_secs(exp + 30))
        );
        assert!(p.expires_at.unwrap() > SystemTime::now());
        let t = token(&json!({"sub": "late", "exp": unix_now() - 40}));
        let refused = auth
            .authenticate(Some(&payload(json!({"token": t}))))
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("expired"), "{refused}");
        // A fraction of a second counts as a whole one.
        let auth = JwtAuthenticator::hs256(SECRET)
            .unwrap()
            .with_leeway(Duration::from_millis(1500));
        assert_eq!(auth.validation.leeway, 2);
    }

    #[tokio::test]
    async fn bearer_header_forms_are_read() {
        let t = token(&json!({"sub": "u1", "exp": unix_now() + 600}));
        let auth = JwtAuthenticator::hs256(SECRET).unwrap();
        for p in [
            json!({"Authorization": format!("Bearer {t}")}),
            json!({"headers": {"authorization": format!("bearer {t}")}}),
        ] {
            assert!(auth.authenticate(Some(&payload(p))).await.is_ok());
        }
    }

    #[tokio::test]
    async fn refusals_name_the_problem() {
        let auth = JwtAuthenticator::hs256(SECRET)
            .unwrap()
            .with_audience(["api"])
            .with_issuer(["me"])
            .with_leeway(Duration::ZERO);
        let cases = [
            (
                json!({"sub": "u", "exp": unix_now() - 10, "aud": "api", "iss": "me"}),
                "expired",
            ),
            (
                json!({"sub": "u", "exp": unix_now() + 600, "nbf": unix_now() + 300, "aud": "api", "iss": "me"}),
                "not valid yet",
            ),
            (
                json!({"sub": "u", "exp": unix_now() + 600, "aud": "other", "iss": "me"}),
                "audience",
            ),
            (
                json!({"sub": "u", "exp": unix_now() + 600, "aud": "api", "iss": "them"}),
                "issuer",
            ),
            (
                json!({"sub": "u", "aud": "api", "iss": "me"}),
                "required claim",
            ),
            // A configured audience or issuer is required, not only checked when present.
            (
                json!({"sub": "u", "exp": unix_now() + 600, "iss": "me"}),
                "required claim",
            ),
            (
                json!({"sub": "u", "exp": unix_now() + 600, "aud": "api"}),
                "required claim",
            ),
        ];
        for (claims, expected) in cases {
            let err = auth
                .authenticate(Some(&payload(json!({"token": token(&claims)}))))
                .await
                .unwrap_err();
            assert!(err.to_string().contains(expected), "{err} / {expected}");
        }
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "u", "exp": unix_now() + 600}),
            &EncodingKey::from_secret(b"another-secret-another-secret-12"),
        )
        .unwrap();
        let err = auth.verify(&forged).unwrap_err();
        assert!(err.to_string().contains("signature"), "{err}");
        let err = auth.authenticate(None).await.unwrap_err();
        assert!(err.to_string().contains("no token"), "{err}");
        assert!(auth.verify("not.a.jwt").is_err());
    }

    #[test]
    fn bad_keys_are_config_errors() {
        assert!(matches!(
            JwtAuthenticator::hs256(b""),
            Err(JwtConfigError::EmptySecret)
        ));
        assert!(matches!(
            JwtAuthenticator::rs256_pem(b"not a key"),
            Err(JwtConfigError::InvalidPublicKey(_))
        ));
    }
}
