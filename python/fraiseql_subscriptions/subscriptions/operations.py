"""Queries and mutations on the socket: the ``execute`` callable of
:class:`~fraiseql_subscriptions.SubscriptionManager`.

graphql-transport-ws clients (Apollo Client, urql, ``gql``) may send queries and mutations
over the subscription socket. The engine serves subscriptions itself and hands any other
operation to ``execute``; its result goes back as one ``next`` then ``complete`` (legacy
graphql-ws: ``data`` then ``complete``)::

    from graphql import graphql

    async def execute(query, variables, operation_name, ctx):
        return await graphql(schema, query, variable_values=variables,
                             operation_name=operation_name, context_value=ctx)

    manager = SubscriptionManager(bus=..., execute=execute)
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fraiseql_subscriptions.subscriptions.principal import Principal

logger = logging.getLogger("fraiseql_subscriptions")

_INTERNAL = [{"message": "Internal server error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]


@dataclass(frozen=True)
class OperationContext:
    """What ``execute`` knows about a request besides its document and variables."""

    #: ``"query"`` or ``"mutation"``: the operation the document selects.
    kind: Literal["query", "mutation"]
    #: Who sent it: the connection's principal, as ``auth`` established it.
    principal: Principal
    #: The subscribe payload's ``extensions`` (persisted-query hashes, tracing ids), if any.
    extensions: dict[str, Any] | None = None


#: ``execute(query, variables, operation_name, ctx)``: sync or async, returns a GraphQL
#: response (a dict, or an ``ExecutionResult`` of graphql-core or Strawberry).
ExecuteCallable = Callable[[str, dict[str, Any] | None, str | None, OperationContext], Any]

#: What the engine calls: ``(query, variables, operation_name, kind, principal dict,
#: extensions)``.
_Wrapped = Callable[
    [str, dict[str, Any] | None, str | None, str, dict[str, Any], dict[str, Any] | None],
    Awaitable[tuple[str, Any]],
]


def _error_dict(error: Any) -> dict[str, Any]:
    if isinstance(error, Mapping):
        return dict(error)
    formatted = getattr(error, "formatted", None)  # graphql-core's GraphQLError
    if isinstance(formatted, Mapping):
        return dict(formatted)
    return {"message": str(error)}


def response_of(result: Any) -> tuple[str, Any]:
    """``("next", response)`` for a GraphQL response, ``("error", errors)`` for one without
    data but with errors (the request was refused before it ran: parse, validation or
    variable errors), as graphql-transport-ws wants them."""
    if isinstance(result, Mapping):
        if "data" not in result and "errors" not in result:
            raise TypeError(
                "execute must return a GraphQL response: a dict with 'data' and/or 'errors', "
                f"or an ExecutionResult; got a dict with keys {sorted(result)}"
            )
        data, errors = result.get("data"), result.get("errors")
        extensions = result.get("extensions")
    elif hasattr(result, "data") and hasattr(result, "errors"):
        # graphql-core's and Strawberry's ExecutionResult.
        data, errors, extensions = result.data, result.errors, getattr(result, "extensions", None)
    else:
        raise TypeError(
            "execute must return a GraphQL response: a dict with 'data' and/or 'errors', "
            f"or an ExecutionResult; got {type(result).__name__}"
        )
    error_list = [_error_dict(e) for e in errors or ()]
    if data is None and error_list:
        return ("error", error_list)
    response: dict[str, Any] = {"data": data}
    if error_list:
        response["errors"] = error_list
    if extensions:
        response["extensions"] = dict(extensions)
    return ("next", response)


def wrap_execute(execute: ExecuteCallable) -> _Wrapped:
    """The engine's view of ``execute``: never raises; an exception (logged with its
    traceback) or a result that is not a response becomes an ``error`` saying "Internal
    server error" (nothing of the exception reaches the client)."""

    async def call(
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        kind: str,
        principal: dict[str, Any],
        extensions: dict[str, Any] | None = None,
    ) -> tuple[str, Any]:
        ctx = OperationContext(
            kind="mutation" if kind == "mutation" else "query",
            principal=Principal.from_dict(principal),
            extensions=extensions,
        )
        # Named in the log by its operation name, else by the start of its document.
        name = operation_name or " ".join(query.split())[:80]
        try:
            result = execute(query, variables, operation_name, ctx)
            if inspect.isawaitable(result):
                result = await result
            return response_of(result)
        except Exception:
            logger.exception("execute failed on %s %s", kind, name)
            return ("error", _INTERNAL)

    return call
