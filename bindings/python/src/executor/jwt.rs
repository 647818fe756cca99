//! `JwtAuth`: JWT verification in Rust, for `auth=`.

use std::time::Duration;

use fraiseql_server::JwtAuthenticator;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::bridge::principal_to_dict;
use crate::errors::{self, config, Kind};

/// Verifies JWTs in `connection_init` (`token` or `Authorization: Bearer ...`) in Rust:
/// HS256 with a shared secret or RS256 with a PEM public key; `exp` is required, `nbf` is
/// checked, and `aud` / `iss` are required and checked when `audience=` / `issuer=` are
/// given. Claims `sub` (user), `tenant_id` (or `tenant_claim=`; `tenant` as a fallback),
/// `roles` and `scope` / `scopes` / `scp` (a list or a space-separated string) become the
/// principal.
#[pyclass(name = "JwtAuth", module = "fraiseql_subscriptions._native", frozen)]
#[derive(Debug, Clone)]
pub(crate) struct PyJwtAuth {
    pub(super) inner: JwtAuthenticator,
}

#[pymethods]
impl PyJwtAuth {
    #[new]
    #[pyo3(signature = (*, secret = None, public_key_pem = None, audience = None, issuer = None, leeway = None, tenant_claim = None))]
    fn new(
        secret: Option<String>,
        public_key_pem: Option<String>,
        audience: Option<Vec<String>>,
        issuer: Option<Vec<String>>,
        leeway: Option<f64>,
        tenant_claim: Option<String>,
    ) -> PyResult<Self> {
        let mut inner = match (secret, public_key_pem) {
            (Some(secret), None) => JwtAuthenticator::hs256(secret.as_bytes()),
            (None, Some(pem)) => JwtAuthenticator::rs256_pem(pem.as_bytes()),
            _ => {
                return Err(config(
                    "JwtAuth needs exactly one of secret= (HS256) or public_key_pem= (RS256)",
                ))
            }
        }
        .map_err(|e| config(e.to_string()))?;
        if let Some(audience) = audience {
            inner = inner.with_audience(audience);
        }
        if let Some(issuer) = issuer {
            inner = inner.with_issuer(issuer);
        }
        if let Some(leeway) = leeway {
            let leeway = Duration::try_from_secs_f64(leeway).map_err(|_| {
                config(format!(
                    "leeway must be a non-negative number of seconds, got {leeway}"
                ))
            })?;
            inner = inner.with_leeway(leeway);
        }
        if let Some(claim) = tenant_claim {
            inner = inner.with_tenant_claim(claim);
        }
        Ok(Self { inner })
    }

    /// Verifies `token` and returns the principal as a dict; raises `AuthenticationError`
    /// with the reason when it is refused.
    fn verify<'py>(&self, py: Python<'py>, token: &str) -> PyResult<Bound<'py, PyDict>> {
        let principal = self
            .inner
            .verify(token)
            .map_err(|e| errors::error(Kind::Authentication, e.to_string()))?;
        principal_to_dict(py, &principal)
    }
}
