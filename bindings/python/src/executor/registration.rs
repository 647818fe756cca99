//! The fields and auth as Python registered them ([`FieldSpec`], [`AuthSpec`]), read from
//! the arguments of `register_field`, `set_auth` and `open_session`; [`build`](super::build)
//! turns them into the service at `start()`.

use std::sync::Arc;

use fraiseql_subscriptions::filter::FilterSpec;
use fraiseql_subscriptions::security::{Authenticator, Requirement};
use pyo3::prelude::*;

use super::jwt::PyJwtAuth;
use crate::errors::config;

/// A root field as registered, built into a
/// [`FieldConfig`](fraiseql_subscriptions::FieldConfig) when the executor starts.
#[derive(Debug)]
pub(super) struct FieldSpec {
    pub(super) channel: String,
    pub(super) filter: Option<FilterSpec>,
    pub(super) requirement: Option<Requirement>,
    pub(super) resolver: Option<Py<PyAny>>,
    pub(super) stream: Option<Py<PyAny>>,
}

/// Who may connect.
#[derive(Debug)]
pub(super) enum AuthSpec {
    Anonymous,
    Python(Py<PyAny>),
    Rust(Arc<dyn Authenticator>),
}

/// The requirement of `roles` (any of them) and `scopes` (all of them), if either is given.
pub(super) fn strings_requirement(
    roles: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
) -> Option<Requirement> {
    let roles = roles.unwrap_or_default();
    let scopes = scopes.unwrap_or_default();
    if roles.is_empty() && scopes.is_empty() {
        return None;
    }
    let mut requirement = Requirement::any_role(roles);
    requirement.all_scopes = scopes.into_iter().collect();
    Some(requirement)
}

/// Reads an `auth` argument: `None`, a `JwtAuth` or a callable.
pub(super) fn auth_spec(auth: Option<&Bound<'_, PyAny>>) -> PyResult<AuthSpec> {
    Ok(match auth {
        None => AuthSpec::Anonymous,
        Some(a) if a.is_none() => AuthSpec::Anonymous,
        Some(a) => {
            if let Ok(jwt) = a.cast::<PyJwtAuth>() {
                AuthSpec::Rust(Arc::new(jwt.get().inner.clone()))
            } else if a.is_callable() {
                AuthSpec::Python(a.clone().unbind())
            } else {
                return Err(config("auth must be None, a JwtAuth or a callable"));
            }
        }
    })
}
