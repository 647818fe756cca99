"""The original plan's path to the native classes, ``fraiseql._fraiseql_rs``, kept under this
package: ``from fraiseql_subscriptions import _fraiseql_rs``, then
``_fraiseql_rs.subscriptions.PySubscriptionExecutor()`` or ``_fraiseql_rs.PyEventBusConfig``.

New code imports the Python names from :mod:`fraiseql_subscriptions` (see the migration
table in the guide).
"""

from fraiseql_subscriptions._fraiseql_rs import subscriptions
from fraiseql_subscriptions._fraiseql_rs.subscriptions import (
    PyEventBusConfig,
    PyGraphQLMessage,
    PySubscriptionExecutor,
    PySubscriptionPayload,
    __version__,
)

__all__ = [
    "PyEventBusConfig",
    "PyGraphQLMessage",
    "PySubscriptionExecutor",
    "PySubscriptionPayload",
    "__version__",
    "subscriptions",
]
