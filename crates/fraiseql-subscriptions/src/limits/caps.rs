//! The hard caps checked before something new is accepted: subscriptions per connection and
//! per user ([`check_caps`]), connections per user ([`check_connection_cap`]).

use super::config::LimitsConfig;
use super::rejection::{LimitKind, LimitRejection};

/// Checks the subscription caps before a new subscribe. The counts are those held **before**
/// the new subscription (pass 0 for the per-user count of an anonymous connection if
/// anonymous users should not share a cap). The per-connection cap is checked first.
///
/// # Errors
/// [`LimitRejection`] of kind [`LimitKind::SubscriptionsPerConnection`] or
/// [`LimitKind::SubscriptionsPerUser`] when the new subscription would exceed a cap.
pub fn check_caps(
    config: &LimitsConfig,
    subscriptions_on_connection: usize,
    subscriptions_of_user: usize,
) -> Result<(), LimitRejection> {
    if let Some(max) = config.max_subscriptions_per_connection {
        if subscriptions_on_connection >= max {
            return Err(LimitRejection::new(
                LimitKind::SubscriptionsPerConnection,
                format!(
                    "At most {max} subscriptions per connection; complete some before subscribing again"
                ),
            ));
        }
    }
    if let Some(max) = config.max_subscriptions_per_user {
        if subscriptions_of_user >= max {
            return Err(LimitRejection::new(
                LimitKind::SubscriptionsPerUser,
                format!(
                    "At most {max} subscriptions per user across all connections; complete some before subscribing again"
                ),
            ));
        }
    }
    Ok(())
}

/// Checks the connection cap before a user's new connection is accepted; `connections_of_user`
/// is the count held **before** it.
///
/// # Errors
/// [`LimitRejection`] of kind [`LimitKind::ConnectionsPerUser`] when the new connection would
/// exceed the cap.
pub fn check_connection_cap(
    config: &LimitsConfig,
    connections_of_user: usize,
) -> Result<(), LimitRejection> {
    match config.max_connections_per_user {
        Some(max) if connections_of_user >= max => Err(LimitRejection::new(
            LimitKind::ConnectionsPerUser,
            format!("At most {max} connections per user; close one before opening another"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_per_connection_cap_refuses_at_the_limit() {
        let config = LimitsConfig::default();
        assert!(check_caps(&config, 99, 0).is_ok());
        let refused = check_caps(&config, 100, 0).unwrap_err();
        assert_eq!(refused.kind, LimitKind::SubscriptionsPerConnection);
        assert_eq!(
            refused.message,
            "At most 100 subscriptions per connection; complete some before subscribing again"
        );
    }

    #[test]
    fn subscriptions_per_user_cap_refuses_at_the_limit() {
        let config = LimitsConfig::default();
        assert!(check_caps(&config, 0, 999).is_ok());
        let refused = check_caps(&config, 0, 1000).unwrap_err();
        assert_eq!(refused.kind, LimitKind::SubscriptionsPerUser);
        assert!(refused
            .message
            .contains("At most 1000 subscriptions per user"));
    }

    #[test]
    fn per_connection_cap_is_checked_before_per_user_cap() {
        let refused = check_caps(&LimitsConfig::default(), 100, 1000).unwrap_err();
        assert_eq!(refused.kind, LimitKind::SubscriptionsPerConnection);
    }

    #[test]
    fn caps_set_to_none_are_unlimited() {
        let config = LimitsConfig {
            max_subscriptions_per_connection: None,
            max_subscriptions_per_user: None,
            max_connections_per_user: None,
            ..LimitsConfig::default()
        };
        assert!(check_caps(&config, usize::MAX, usize::MAX).is_ok());
        assert!(check_connection_cap(&config, usize::MAX).is_ok());
    }

    #[test]
    fn connections_per_user_cap_refuses_at_the_limit() {
        let config = LimitsConfig::default();
        assert!(check_connection_cap(&config, 99).is_ok());
        let refused = check_connection_cap(&config, 100).unwrap_err();
        assert_eq!(refused.kind, LimitKind::ConnectionsPerUser);
        assert!(refused.message.contains("At most 100 connections per user"));
    }
}
