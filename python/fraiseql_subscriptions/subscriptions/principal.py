"""Who is on the other end of a connection: :class:`Principal`."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Principal:
    """Who is on the other end of a connection, as ``auth`` established it.

    ``expires_at`` (a timezone-aware ``datetime`` or seconds since the epoch) closes the
    connection with 4403 when it passes.
    """

    user_id: str | None = None
    tenant_id: str | None = None
    roles: Sequence[str] = ()
    scopes: Sequence[str] = ()
    claims: Mapping[str, Any] = field(default_factory=dict)
    expires_at: _dt.datetime | float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The form the Rust engine reads."""
        expires = self.expires_at
        if isinstance(expires, _dt.datetime):
            if expires.tzinfo is None:
                raise ValueError("Principal.expires_at must be timezone-aware")
            expires = expires.timestamp()
        return {
            "user_id": self.user_id,
            "tenant_id": self.tenant_id,
            "roles": list(self.roles),
            "scopes": list(self.scopes),
            "claims": dict(self.claims),
            "expires_at": expires,
        }

    @classmethod
    def from_dict(cls, principal: Mapping[str, Any]) -> Principal:
        """The principal from the dict the engine hands to hooks and executors."""
        return cls(
            user_id=principal.get("user_id"),
            tenant_id=principal.get("tenant_id"),
            roles=tuple(principal.get("roles") or ()),
            scopes=tuple(principal.get("scopes") or ()),
            claims=dict(principal.get("claims") or {}),
            expires_at=principal.get("expires_at"),
        )
