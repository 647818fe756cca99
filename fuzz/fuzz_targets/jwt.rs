//! Fuzzes the server's [`JwtAuthenticator`]: token structure, header and claims parsing,
//! key selection by `kid`, and the claims-to-principal mapping (not the cryptography).
//! Every token goes to two authenticators: HS256 with a fixed secret, and a JWKS of two
//! symmetric keys (`k1`: the same secret, `k2`: another), which picks the key by the
//! token's `kid`.
//!
//! The first byte picks the mode; the rest is read by it:
//!
//! - raw (low bit 0): the rest, as lossy UTF-8, is the token. It is verified directly and
//!   through `authenticate` in the `connection_init` payload shape picked by bits 1-2
//!   (`token`, `Authorization: Bearer`, `headers.authorization`, `authToken`).
//! - structured (low bit 1): the rest is `header NUL claims NUL signature`. Header and
//!   claims bytes are base64url-encoded as they are, so parsing gets past base64 with
//!   arbitrary (JSON or not) segments. With bit 1 set the token is signed with the secret,
//!   so the claims reach the principal mapping; otherwise the signature part is taken as
//!   is. Bit 2 appends the signature part as a fourth segment.
//!
//! Checked: every refusal is one of the authenticator's `Forbidden: ...` messages (or the
//! key set's unknown-`kid` one) and never contains the secret; a correctly signed token is
//! never refused for its signature (by the key set: when its header names `k1`); an
//! accepted token's principal has the `sub` claim as its user id and keeps the required
//! `exp` claim.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use fraiseql_server::JwtAuthenticator;
use fraiseql_subscriptions::security::{AuthError, Authenticator, Principal};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

/// The secret of the server's auth tests.
const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

/// The other key of the key set.
const OTHER_SECRET: &[u8] = b"another-secret-another-secret-12";

/// The HS256 authenticator and the key-set one.
fn authenticators() -> &'static [JwtAuthenticator; 2] {
    static AUTH: OnceLock<[JwtAuthenticator; 2]> = OnceLock::new();
    AUTH.get_or_init(|| {
        let jwks = json!({ "keys": [
            { "kty": "oct", "kid": "k1", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(SECRET) },
            { "kty": "oct", "kid": "k2", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(OTHER_SECRET) },
        ]});
        [
            JwtAuthenticator::hs256(SECRET).expect("a non-empty secret"),
            JwtAuthenticator::jwks(jwks.to_string().as_bytes()).expect("a valid key set"),
        ]
    })
}

/// The refusal of a token whose `kid` names no key of the set.
const UNKNOWN_KID: &str = "Forbidden: the token's key id (kid) names no key";

/// `JwtAuthenticator::authenticate` never awaits anything: one poll finishes it.
fn run_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("authenticate did not finish in one poll"),
    }
}

fn check(result: &Result<Principal, AuthError>, signed: bool) {
    match result {
        Ok(principal) => {
            assert_eq!(
                principal.user_id.as_deref(),
                principal.claims.get("sub").and_then(Value::as_str),
                "user id is not the sub claim"
            );
            assert!(principal.claims.contains_key("exp"), "accepted without exp");
        }
        Err(err) => {
            let message = err.to_string();
            assert!(
                message.starts_with("Forbidden: ") || message.starts_with(UNKNOWN_KID),
                "refusal {message:?}"
            );
            for secret in [SECRET, OTHER_SECRET] {
                let secret = String::from_utf8_lossy(secret);
                assert!(!message.contains(&*secret), "the refusal leaks a secret");
            }
            assert!(
                !(signed && message.contains("signature")),
                "a correctly signed token was refused for its signature"
            );
        }
    }
}

fn raw(mode: u8, rest: &[u8]) {
    let token = String::from_utf8_lossy(rest);
    let payload = match (mode >> 1) & 0b11 {
        0 => json!({ "token": token }),
        1 => json!({ "Authorization": format!("Bearer {token}") }),
        2 => json!({ "headers": { "authorization": format!("bearer {token}") } }),
        _ => json!({ "authToken": token }),
    };
    let payload: Map<String, Value> = match payload {
        Value::Object(map) => map,
        _ => unreachable!("built as an object"),
    };
    for auth in authenticators() {
        check(&auth.verify(&token), false);
        match run_now(auth.authenticate(Some(&payload))) {
            // Only a blank token is refused before verification, with its own message.
            Err(err) if err.to_string().contains("carries no token") => {
                assert!(token.trim().is_empty(), "token {token:?} not found");
            }
            result => check(&result, false),
        }
    }
}

fn structured(mode: u8, rest: &[u8]) {
    let mut parts = rest.splitn(3, |&b| b == 0);
    let header = parts.next().unwrap_or_default();
    let claims = parts.next().unwrap_or_default();
    let signature = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signed = mode & 0b10 != 0;
    let mut token = if signed {
        let key = EncodingKey::from_secret(SECRET);
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256)
            .expect("HMAC signing does not fail");
        format!("{message}.{signature}")
    } else {
        format!("{message}.{signature}")
    };
    if mode & 0b100 != 0 {
        token.push('.');
        token.push_str(&signature);
    }
    let well_signed = signed && mode & 0b100 == 0;
    let [hs256, key_set] = authenticators();
    check(&hs256.verify(&token), well_signed);
    let names_k1 = serde_json::from_slice::<Value>(header)
        .is_ok_and(|header| header.get("kid").and_then(Value::as_str) == Some("k1"));
    check(&key_set.verify(&token), well_signed && names_k1);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        raw(mode, rest);
    } else {
        structured(mode, rest);
    }
});
