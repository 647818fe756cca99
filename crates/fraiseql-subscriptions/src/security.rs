//! The five security checks of DESIGN.md: authentication (a trait the transports
//! implement), tenant isolation and row-level visibility (per delivery), scope validation
//! and RBAC (at subscribe time).
//!
//! Everything a delivery check needs is computed once at subscribe time into a
//! [`DeliveryGuard`], so the per-event, per-subscriber cost is a few comparisons.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use fraiseql_protocol::{GraphQLError, JsonObject};
use serde_json::{Map, Value};

use crate::event::Event;

/// Who is on the other end of a connection, as its authentication established.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Principal {
    /// The user id, if authenticated.
    pub user_id: Option<String>,
    /// The tenant the user belongs to.
    pub tenant_id: Option<String>,
    /// Roles held (RBAC and audiences).
    pub roles: HashSet<String>,
    /// Scopes granted (OAuth-style permissions).
    pub scopes: HashSet<String>,
    /// Every other claim, as the authenticator found it.
    pub claims: Map<String, Value>,
    /// When the credentials stop being valid (a token's `exp`): transports close the
    /// connection then (4403). `None`: they do not expire.
    pub expires_at: Option<std::time::SystemTime>,
}

impl Principal {
    /// An anonymous principal (no user, tenant, role or scope).
    #[must_use]
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// A principal for `user_id`.
    #[must_use]
    pub fn user(user_id: impl Into<String>) -> Self {
        Self {
            user_id: Some(user_id.into()),
            ..Self::default()
        }
    }

    /// Sets the tenant.
    #[must_use]
    pub fn with_tenant(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant_id.into());
        self
    }

    /// Adds roles.
    #[must_use]
    pub fn with_roles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, roles: I) -> Self {
        self.roles.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Adds scopes.
    #[must_use]
    pub fn with_scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Sets when the credentials expire.
    #[must_use]
    pub fn with_expiry(mut self, expires_at: std::time::SystemTime) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    /// Whether the principal holds `role`.
    #[must_use]
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }

    /// Whether the principal was granted `scope`.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }
}

/// Why authentication refused a `connection_init` payload; the message goes to the client
/// in the 4403 close reason, so it must not leak secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    message: String,
}

impl AuthError {
    /// A refusal with a message for the client.
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Turns a `connection_init` payload into a [`Principal`], or refuses it (close 4403).
/// Transports call it; the native server ships a JWT implementation, Python users pass a
/// function.
#[async_trait]
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// Authenticates one connection.
    ///
    /// # Errors
    /// [`AuthError`] to refuse the connection.
    async fn authenticate(&self, payload: Option<&JsonObject>) -> Result<Principal, AuthError>;
}

/// Accepts every connection as anonymous: for development and public data only.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAnonymous;

#[async_trait]
impl Authenticator for AllowAnonymous {
    async fn authenticate(&self, _payload: Option<&JsonObject>) -> Result<Principal, AuthError> {
        Ok(Principal::anonymous())
    }
}

/// What a root field or a selected field requires of a principal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement {
    /// At least one of these roles (none listed: no role needed).
    pub any_role: Vec<String>,
    /// All of these scopes.
    pub all_scopes: Vec<String>,
}

impl Requirement {
    /// Requires one of these roles.
    #[must_use]
    pub fn any_role<I: IntoIterator<Item = S>, S: Into<String>>(roles: I) -> Self {
        Self {
            any_role: roles.into_iter().map(Into::into).collect(),
            all_scopes: Vec::new(),
        }
    }

    /// Requires all of these scopes.
    #[must_use]
    pub fn all_scopes<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        Self {
            any_role: Vec::new(),
            all_scopes: scopes.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether `principal` meets the requirement.
    #[must_use]
    pub fn is_met_by(&self, principal: &Principal) -> bool {
        let role_ok =
            self.any_role.is_empty() || self.any_role.iter().any(|r| principal.has_role(r));
        role_ok && self.all_scopes.iter().all(|s| principal.has_scope(s))
    }
}

/// The engine's security settings.
#[derive(Debug, Clone, Default)]
pub struct SecurityPolicy {
    /// Multi-tenant mode: a subscriber receives only its own tenant's events and events
    /// marked global; an event without a tenant is dropped (fail closed). Off: an event with
    /// a tenant still reaches only that tenant's subscribers, and one without reaches all.
    pub multi_tenant: bool,
    /// Argument names that name a user (`userId`, `ownerId`): at subscribe time their value
    /// must be the principal's own user id.
    pub user_arguments: Vec<String>,
    /// Argument names that name a tenant (`tenantId`): their value must be the principal's
    /// own tenant.
    pub tenant_arguments: Vec<String>,
    /// Roles whose holders may name any user or tenant in those arguments (act for others).
    pub act_for_roles: Vec<String>,
    /// Requirements on root fields, by field name.
    pub root_fields: HashMap<String, Requirement>,
    /// Requirements on selected fields, by dotted path from the root field
    /// (`"message.author.email"`).
    pub selected_fields: HashMap<String, Requirement>,
}

/// Which of the checks refused a subscription or a delivery (for metrics and errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityCheck {
    /// Tenant isolation.
    Tenant,
    /// Row-level visibility (audience).
    Audience,
    /// Scope validation of variables and arguments.
    Scope,
    /// RBAC on root or selected fields.
    Rbac,
}

impl SecurityCheck {
    /// A stable label for metrics.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Audience => "audience",
            Self::Scope => "scope",
            Self::Rbac => "rbac",
        }
    }
}

/// A refused subscribe: which check, and the GraphQL error for the client.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityRejection {
    /// The check that refused.
    pub check: SecurityCheck,
    /// The error to send (`extensions.code` is `FORBIDDEN`).
    pub error: GraphQLError,
}

impl SecurityRejection {
    fn new(check: SecurityCheck, message: String) -> Self {
        Self {
            check,
            error: GraphQLError::new(message).with_code("FORBIDDEN"),
        }
    }
}

impl SecurityPolicy {
    /// Checks a subscribe: scope validation of the root field's resolved `arguments`, then
    /// RBAC on the root field and on every selected field (dotted paths from the root).
    ///
    /// # Errors
    /// [`SecurityRejection`] naming the check and what the principal may not do.
    pub fn check_subscribe<'a>(
        &self,
        principal: &Principal,
        root_field: &str,
        arguments: &Map<String, Value>,
        selected: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), SecurityRejection> {
        let acts_for_others = self.act_for_roles.iter().any(|r| principal.has_role(r));
        if !acts_for_others {
            self.check_named(
                &self.user_arguments,
                arguments,
                principal.user_id.as_deref(),
                "user",
            )?;
            self.check_named(
                &self.tenant_arguments,
                arguments,
                principal.tenant_id.as_deref(),
                "tenant",
            )?;
        }
        if let Some(requirement) = self.root_fields.get(root_field) {
            if !requirement.is_met_by(principal) {
                return Err(SecurityRejection::new(
                    SecurityCheck::Rbac,
                    format!("Not authorized to subscribe to \"{root_field}\""),
                ));
            }
        }
        if !self.selected_fields.is_empty() {
            for path in selected {
                if let Some(requirement) = self.selected_fields.get(path) {
                    if !requirement.is_met_by(principal) {
                        return Err(SecurityRejection::new(
                            SecurityCheck::Rbac,
                            format!("Not authorized to select \"{path}\""),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn check_named(
        &self,
        names: &[String],
        arguments: &Map<String, Value>,
        own: Option<&str>,
        what: &str,
    ) -> Result<(), SecurityRejection> {
        for name in names {
            let Some(value) = arguments.get(name) else {
                continue;
            };
            let named = match value {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if own != Some(named.as_str()) {
                return Err(SecurityRejection::new(
                    SecurityCheck::Scope,
                    format!("Argument \"{name}\" must be your own {what} id"),
                ));
            }
        }
        Ok(())
    }

    /// What a subscription of `principal` needs for its delivery checks, computed once.
    #[must_use]
    pub fn guard_for(&self, principal: &Principal) -> DeliveryGuard {
        DeliveryGuard {
            multi_tenant: self.multi_tenant,
            tenant: principal.tenant_id.as_deref().map(Arc::from),
            user: principal.user_id.as_deref().map(Arc::from),
            roles: principal
                .roles
                .iter()
                .map(|r| Arc::from(r.as_str()))
                .collect(),
        }
    }
}

/// The per-subscription part of the delivery checks (tenant isolation and row-level
/// visibility), built at subscribe time so each delivery costs a few comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryGuard {
    multi_tenant: bool,
    tenant: Option<Arc<str>>,
    user: Option<Arc<str>>,
    roles: Vec<Arc<str>>,
}

impl DeliveryGuard {
    /// Whether the subscriber may receive `event`, or which check refuses it.
    ///
    /// # Errors
    /// The [`SecurityCheck`] that refused ([`SecurityCheck::Tenant`] or
    /// [`SecurityCheck::Audience`]), for the metrics.
    pub fn allows(&self, event: &Event) -> Result<(), SecurityCheck> {
        let tenant_ok = match (event.tenant_id(), self.tenant.as_deref()) {
            _ if event.is_global() => true,
            (Some(event_tenant), Some(own)) => event_tenant == own,
            (Some(_), None) => false,
            (None, _) => !self.multi_tenant,
        };
        if !tenant_ok {
            return Err(SecurityCheck::Tenant);
        }
        if let Some(audience) = event.audience() {
            let by_user = self
                .user
                .as_deref()
                .is_some_and(|user| audience.users.iter().any(|u| u == user));
            let by_role = !by_user
                && audience
                    .roles
                    .iter()
                    .any(|role| self.roles.iter().any(|own| **own == **role));
            if !by_user && !by_role {
                return Err(SecurityCheck::Audience);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Audience;
    use serde_json::json;

    fn args(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    fn multi() -> SecurityPolicy {
        SecurityPolicy {
            multi_tenant: true,
            ..SecurityPolicy::default()
        }
    }

    #[test]
    fn tenant_a_events_never_reach_tenant_b() {
        let guard = multi().guard_for(&Principal::user("u").with_tenant("b"));
        let event = Event::new("c", json!({})).with_tenant("a");
        assert_eq!(guard.allows(&event), Err(SecurityCheck::Tenant));
        let own = Event::new("c", json!({})).with_tenant("b");
        assert_eq!(guard.allows(&own), Ok(()));
    }

    #[test]
    fn multi_tenant_mode_drops_events_without_tenant_unless_global() {
        let guard = multi().guard_for(&Principal::user("u").with_tenant("a"));
        assert_eq!(
            guard.allows(&Event::new("c", json!({}))),
            Err(SecurityCheck::Tenant)
        );
        assert_eq!(guard.allows(&Event::new("c", json!({})).global()), Ok(()));
    }

    #[test]
    fn principal_without_tenant_gets_no_tenant_events() {
        let guard = SecurityPolicy::default().guard_for(&Principal::anonymous());
        let event = Event::new("c", json!({})).with_tenant("a");
        assert_eq!(guard.allows(&event), Err(SecurityCheck::Tenant));
        assert_eq!(guard.allows(&Event::new("c", json!({}))), Ok(()));
    }

    #[test]
    fn audience_limits_delivery_to_named_users_and_roles() {
        let policy = SecurityPolicy::default();
        let owner = policy.guard_for(&Principal::user("u1"));
        let admin = policy.guard_for(&Principal::user("x").with_roles(["admin"]));
        let other = policy.guard_for(&Principal::user("u2"));
        let event = Event::new("c", json!({})).with_audience(Audience {
            users: vec!["u1".into()],
            roles: vec!["admin".into()],
        });
        assert_eq!(owner.allows(&event), Ok(()));
        assert_eq!(admin.allows(&event), Ok(()));
        assert_eq!(other.allows(&event), Err(SecurityCheck::Audience));
    }

    #[test]
    fn empty_audience_means_nobody() {
        let guard = SecurityPolicy::default().guard_for(&Principal::user("u"));
        let event = Event::new("c", json!({})).with_audience(Audience::default());
        assert_eq!(guard.allows(&event), Err(SecurityCheck::Audience));
    }

    fn scoped() -> SecurityPolicy {
        SecurityPolicy {
            user_arguments: vec!["userId".into()],
            tenant_arguments: vec!["tenantId".into()],
            act_for_roles: vec!["support".into()],
            ..SecurityPolicy::default()
        }
    }

    #[test]
    fn variables_naming_another_user_are_refused_at_subscribe() {
        let me = Principal::user("u1").with_tenant("t1");
        let policy = scoped();
        assert!(policy
            .check_subscribe(&me, "inbox", &args(json!({"userId": "u1"})), [])
            .is_ok());
        let err = policy
            .check_subscribe(&me, "inbox", &args(json!({"userId": "u2"})), [])
            .unwrap_err();
        assert_eq!(err.check, SecurityCheck::Scope);
        assert!(
            err.error.message.contains("userId"),
            "{}",
            err.error.message
        );
        assert_eq!(err.error.extensions["code"], "FORBIDDEN");
        let err = policy
            .check_subscribe(&me, "inbox", &args(json!({"tenantId": "t2"})), [])
            .unwrap_err();
        assert_eq!(err.check, SecurityCheck::Scope);
    }

    #[test]
    fn numeric_ids_compare_as_text() {
        let me = Principal::user("42");
        assert!(scoped()
            .check_subscribe(&me, "f", &args(json!({"userId": 42})), [])
            .is_ok());
    }

    #[test]
    fn anonymous_principals_cannot_name_any_user() {
        let err = scoped()
            .check_subscribe(
                &Principal::anonymous(),
                "f",
                &args(json!({"userId": "u1"})),
                [],
            )
            .unwrap_err();
        assert_eq!(err.check, SecurityCheck::Scope);
    }

    #[test]
    fn act_for_roles_may_name_others() {
        let agent = Principal::user("agent").with_roles(["support"]);
        assert!(scoped()
            .check_subscribe(&agent, "f", &args(json!({"userId": "u9"})), [])
            .is_ok());
    }

    #[test]
    fn rbac_guards_root_fields_and_selected_fields() {
        let mut policy = SecurityPolicy::default();
        policy
            .root_fields
            .insert("auditLog".into(), Requirement::any_role(["admin"]));
        policy.selected_fields.insert(
            "message.author.email".into(),
            Requirement::all_scopes(["read:email"]),
        );
        let user = Principal::user("u");
        let err = policy
            .check_subscribe(&user, "auditLog", &Map::new(), [])
            .unwrap_err();
        assert_eq!(err.check, SecurityCheck::Rbac);
        assert!(err.error.message.contains("auditLog"));
        let admin = Principal::user("a").with_roles(["admin"]);
        assert!(policy
            .check_subscribe(&admin, "auditLog", &Map::new(), [])
            .is_ok());
        let selection = ["message.id", "message.author.email"];
        let err = policy
            .check_subscribe(&user, "message", &Map::new(), selection)
            .unwrap_err();
        assert!(err.error.message.contains("message.author.email"));
        let reader = Principal::user("r").with_scopes(["read:email"]);
        assert!(policy
            .check_subscribe(&reader, "message", &Map::new(), selection)
            .is_ok());
    }

    #[tokio::test]
    async fn allow_anonymous_authenticates_everyone_as_nobody() {
        let principal = AllowAnonymous.authenticate(None).await.unwrap();
        assert_eq!(principal, Principal::anonymous());
    }
}
