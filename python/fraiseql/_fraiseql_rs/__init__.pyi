"""Type stubs of the native module ``fraiseql._fraiseql_rs`` (built from bindings/python)."""

from . import subscriptions as subscriptions

__version__: str
