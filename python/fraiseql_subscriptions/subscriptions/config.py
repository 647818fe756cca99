"""Settings of a :class:`~fraiseql_subscriptions.subscriptions.SubscriptionManager`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Preset = Literal["development", "production", "high_performance"]


@dataclass(frozen=True)
class SubscriptionConfig:
    """Limits, security and protocol settings; ``None`` keeps the preset's value.

    Rates are per second (``0`` turns a limit off). Durations are in seconds. Start from a
    preset: :meth:`development` (generous), :meth:`production` (the default: per-user
    subscribe rate, per-connection message rate, caps), :meth:`high_performance` (large
    outboxes, no per-delivery limits), and override with :func:`dataclasses.replace` or
    :meth:`with_`.
    """

    preset: Preset = "production"
    #: The canonical WebSocket path.
    path: str = "/graphql"
    #: The original plan's default path, served beside ``path`` by the adapters (when no
    #: path is given to them) and the native server; ``None`` serves ``path`` only.
    legacy_path: str | None = "/graphql/subscriptions"
    outbox_capacity: int | None = None
    overflow: Literal["close", "drop_oldest"] = "close"
    subscribe_rate: int | None = None
    message_rate: int | None = None
    delivery_rate: int | None = None
    max_subscriptions_per_connection: int | None = None
    max_subscriptions_per_user: int | None = None
    max_connections_per_user: int | None = None
    max_connections: int | None = None
    init_timeout: float | None = None
    keep_alive: float | None = None
    max_message_bytes: int | None = None
    #: Longest subscription id a client may use (default 128 bytes; longer: close 4400).
    max_id_bytes: int | None = None
    max_query_depth: int | None = None
    multi_tenant: bool = False
    user_arguments: list[str] = field(default_factory=list)
    tenant_arguments: list[str] = field(default_factory=list)
    act_for_roles: list[str] = field(default_factory=list)
    write_timeout: float | None = None
    #: Enables the native server's ``POST /publish`` for ``Authorization: Bearer <token>``.
    publish_token: str | None = None

    @classmethod
    def development(cls, **overrides: Any) -> SubscriptionConfig:
        """Generous limits for local work."""
        return cls(preset="development", **overrides)

    @classmethod
    def production(cls, **overrides: Any) -> SubscriptionConfig:
        """The default: bounded subscribe and message rates, per-user caps."""
        return cls(preset="production", **overrides)

    @classmethod
    def high_performance(cls, **overrides: Any) -> SubscriptionConfig:
        """Large outboxes and no per-delivery limits, for trusted high-volume clients."""
        return cls(preset="high_performance", **overrides)

    @property
    def paths(self) -> list[str]:
        """Every WebSocket path served: ``path``, then ``legacy_path`` when set."""
        paths = [self.path]
        if self.legacy_path and self.legacy_path != self.path:
            paths.append(self.legacy_path)
        return paths

    def with_(self, **changes: Any) -> SubscriptionConfig:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings the Rust executor reads (``None`` values left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
