"""Connection authentication: what the engine calls on ``connection_init`` for the ``auth``
of :class:`~fraiseql_subscriptions.SubscriptionManager` (``None``, a :class:`JwtAuth` or a
callable) and its ``on_connect`` hooks, and how a callable's answer becomes a principal.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from fraiseql_subscriptions import _native as _rs
from fraiseql_subscriptions.subscriptions.principal import Principal

#: What an ``auth`` callable may be: ``(connection_init payload) -> principal``.
AuthCallable = Callable[[dict[str, Any] | None], Any]

#: What the engine calls on ``connection_init``: ``(payload) -> principal dict``.
Authenticator = _rs.JwtAuth | Callable[..., Awaitable[Any]] | None


def principal_dict(result: Any) -> dict[str, Any]:
    """The principal (as the engine's dict) of what an ``auth`` callable returned: a
    :class:`Principal`, a dict of its fields or a user id. Raises :class:`TypeError` for
    anything else."""
    if isinstance(result, Principal):
        return result.to_dict()
    if isinstance(result, str):
        return Principal(user_id=result).to_dict()
    if isinstance(result, Mapping):
        known = {f.name for f in dataclasses.fields(Principal)}
        unknown = set(result) - known
        if unknown:
            raise TypeError(
                f"the auth callable returned unknown principal keys {sorted(unknown)}; "
                f"use {sorted(known)}"
            )
        return Principal(**result).to_dict()
    raise TypeError(
        "the auth callable must return a Principal, a dict of its fields or a user id "
        f"(str), not {type(result).__name__}; raise to refuse the connection"
    )


def token_of(payload: dict[str, Any] | None) -> str:
    """The bearer token of a ``connection_init`` payload (``token``, or an
    ``Authorization: Bearer ...`` entry). Raises :class:`AuthenticationError` without one."""
    if not payload:
        raise _rs.AuthenticationError("Forbidden: no token in connection_init")
    token = payload.get("token")
    if token is None:
        header = payload.get("Authorization") or payload.get("authorization")
        if isinstance(header, str) and header.lower().startswith("bearer "):
            token = header[7:]
    if not isinstance(token, str) or not token:
        raise _rs.AuthenticationError("Forbidden: no token in connection_init")
    return token


def authenticator(
    auth: _rs.JwtAuth | AuthCallable | None, on_connect: Iterable[Callable[..., Any]]
) -> Authenticator:
    """What the engine calls on ``connection_init`` for ``auth``, with the ``on_connect``
    hooks ``(payload, principal)`` (as they are now) run after it accepts: ``None`` when
    there is nothing to do (anonymous, no hooks), the :class:`JwtAuth` itself when it has
    no hooks to run (verified in Rust), else a coroutine function."""
    hooks = list(on_connect)
    if auth is not None and not isinstance(auth, _rs.JwtAuth) and not callable(auth):
        raise TypeError(f"auth must be None, a JwtAuth or a callable, not {type(auth).__name__}")
    if auth is None and not hooks:
        return None
    if isinstance(auth, _rs.JwtAuth) and not hooks:
        return auth

    async def authenticate(payload: dict[str, Any] | None) -> dict[str, Any]:
        if isinstance(auth, _rs.JwtAuth):
            principal = auth.verify(token_of(payload))
        elif auth is None:
            principal = Principal().to_dict()
        else:
            result = auth(payload)
            if inspect.isawaitable(result):
                result = await result
            if result is None:
                raise _rs.AuthenticationError("Forbidden")
            principal = principal_dict(result)
        for hook in hooks:
            outcome = hook(payload, principal)
            if inspect.isawaitable(outcome):
                await outcome
        return principal

    return authenticate
