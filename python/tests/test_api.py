"""The Python API without a transport: values, configuration errors, the executor's
states, the direct subscription API of the original plan, and the message classes."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import decimal
import enum
import json
import threading
import uuid
from typing import Any

import pydantic
import pytest

from fraiseql_subscriptions import (
    Complete,
    ConfigurationError,
    EventBusConfig,
    ExecutorStateError,
    PyGraphQLMessage,
    PySubscriptionExecutor,
    PySubscriptionPayload,
    SubscribeError,
    SubscriptionConfig,
    SubscriptionError,
    SubscriptionManager,
    to_json,
)
from fraiseql_subscriptions import _native as rs


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Point:
    x: int
    at: dt.date


class User(pydantic.BaseModel):
    id: uuid.UUID
    joined: dt.datetime


def test_values_convert_faithfully() -> None:
    value = {
        "yes": True,
        "no": False,
        "one": 1,
        "big": 2**63,
        "neg": -(2**63),
        "pi": 3.5,
        "none": None,
        "list": [1, "a", (2, 3)],
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "day": dt.date(2026, 1, 2),
        "id": uuid.UUID(int=7),
        "price": decimal.Decimal("12.50"),
        "color": Color.RED,
        "level": Level.HIGH,
        "point": Point(1, dt.date(2026, 1, 1)),
        "user": User(id=uuid.UUID(int=1), joined=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)),
        "tags": {"b", "a"},
        1: "int key",
    }
    assert json.loads(to_json(value)) == {
        "yes": True,
        "no": False,
        "one": 1,
        "big": 2**63,
        "neg": -(2**63),
        "pi": 3.5,
        "none": None,
        "list": [1, "a", [2, 3]],
        "when": "2026-01-02T03:04:05+00:00",
        "day": "2026-01-02",
        "id": "00000000-0000-0000-0000-000000000007",
        "price": "12.50",
        "color": "red",
        "level": 3,
        "point": {"x": 1, "at": "2026-01-01"},
        "user": {"id": "00000000-0000-0000-0000-000000000001", "joined": "2026-01-01T00:00:00Z"},
        "tags": ["a", "b"],
        "1": "int key",
    }
    # bool stays bool, never 1 / 0
    assert to_json([True, False]) == "[true,false]"


@pytest.mark.parametrize(
    ("value", "error", "says"),
    [
        (object(), TypeError, "object is not JSON serializable"),
        (b"raw", TypeError, "bytes"),
        (float("nan"), ValueError, "NaN"),
        (2**70, ValueError, "64 bits"),
        ({(1, 2): "x"}, TypeError, "keys must be"),
        (decimal.Decimal("inf"), ValueError, "not a JSON number"),
    ],
)
def test_unserializable_values_raise_clear_errors(value: Any, error: type, says: str) -> None:
    with pytest.raises(error, match=says):
        to_json({"v": value})


def test_cyclic_values_raise_instead_of_recursing_forever() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="nested more than"):
        to_json(cyclic)


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: EventBusConfig.redis("http://localhost"), "not a Redis URL"),
        (lambda: EventBusConfig.redis("redis://localhost", mode="fast"), "pubsub"),
        (lambda: EventBusConfig.redis("redis://localhost", command_timeout=-1), "command_timeout"),
        (lambda: EventBusConfig.postgresql("mysql://x"), "invalid PostgreSQL URL"),
        (lambda: EventBusConfig.postgresql("postgres://h/db", prefix="no spaces"), "prefix"),
        (lambda: EventBusConfig.memory(capacity=0), "capacity"),
    ],
)
def test_bad_bus_configs_raise_value_errors(build: Any, says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        build()
    assert isinstance(caught.value, ConfigurationError)
    assert isinstance(caught.value, SubscriptionError)


def test_bus_configs_validate_and_describe_themselves() -> None:
    redis = EventBusConfig.redis("redis://:pw@127.0.0.1:6379/2", mode="streams", prefix="app:")
    assert redis.kind == "redis"
    assert "pw" not in repr(redis)
    pg = EventBusConfig.postgresql("postgres://app:pw@127.0.0.1/test", retention_seconds=60)
    assert pg.kind == "postgresql"
    assert "pw" not in repr(pg)
    assert EventBusConfig.memory().kind == "memory"


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"preset": "turbo"}, "unknown preset"),
        ({"outbox_size": 5}, "unknown setting"),
        ({"outbox_capacity": 0}, "outbox_capacity"),
        ({"overflow": "explode"}, "overflow"),
        ({"init_timeout": 0}, "init_timeout"),
        ({"user_arguments": [1]}, "list of str"),
    ],
)
def test_bad_settings_name_the_setting(config: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        PySubscriptionExecutor(None, None, config)


def test_presets_build() -> None:
    for config in (
        SubscriptionConfig.development(),
        SubscriptionConfig.production(max_connections=10),
        SubscriptionConfig.high_performance().with_(overflow="drop_oldest"),
    ):
        PySubscriptionExecutor(None, None, config.to_dict())


def test_bad_fields_are_refused_at_registration() -> None:
    executor = PySubscriptionExecutor()
    with pytest.raises(ConfigurationError, match="template"):
        executor.register_field("message", "room:{room")
    with pytest.raises(ConfigurationError, match="filter"):
        executor.register_field("x", "x", filter={"path": "a", "op": "almost"})
    with pytest.raises(ConfigurationError, match="field name"):
        executor.register_field("no-dash", "x")
    manager = SubscriptionManager()
    manager.subscription("m")
    with pytest.raises(ConfigurationError, match="twice"):
        manager.subscription("m")


async def test_executor_states() -> None:
    executor = PySubscriptionExecutor()
    # A Python resolver runs on the loop start() is awaited on: no implicit start.
    executor.register_field("x", "x", resolver=lambda event, variables, ctx: (event, False))
    with pytest.raises(ExecutorStateError, match=r"await executor\.start\(\)"):
        executor.publish_sync("c", 1)
    await executor.start()
    with pytest.raises(ExecutorStateError, match="already started"):
        await executor.start()
    with pytest.raises(ExecutorStateError, match="before start"):
        executor.register_field("late", "late")
    assert await executor.shutdown(1.0)
    with pytest.raises(ExecutorStateError, match="shut down"):
        executor.publish_sync("c", 1)
    assert await executor.shutdown(1.0)  # idempotent


async def test_direct_api_and_seed_names() -> None:
    manager = SubscriptionManager(config=SubscriptionConfig.development())

    @manager.subscription("order", channel="orders:{customer}")
    def order(event: dict[str, Any], variables: dict[str, Any], ctx: Any) -> Any:
        if event["status"] == "closed":
            return Complete({**event, "final": True})
        return {**event, "final": False}

    manager.subscription("tick")
    await manager.create_subscription(
        "o1", "conn", 'subscription { order(customer: "c1") { id status final } }'
    )
    await manager.create_subscription("t1", "conn", "subscription { tick }")
    await manager.publish_event("order.updated", "orders:c1", {"id": 1, "status": "open"})
    await manager.publish("tick", {"n": True})
    frame = await manager.get_next_event("o1", timeout=5)
    assert frame is not None
    assert json.loads(frame) == {
        "id": "o1",
        "type": "next",
        "payload": {"data": {"order": {"id": 1, "status": "open", "final": False}}},
    }
    assert json.loads(await manager.get_next_event("t1", timeout=5) or b"") == {
        "id": "t1",
        "type": "next",
        "payload": {"data": {"tick": {"n": True}}},
    }
    await manager.publish("orders:c1", {"id": 1, "status": "closed"})
    frame = await manager.get_next_event("o1", timeout=5)
    assert json.loads(frame or b"")["payload"]["data"]["order"]["final"] is True
    assert json.loads(await manager.get_next_event("o1", timeout=5) or b"") == {
        "id": "o1",
        "type": "complete",
    }
    assert manager.executor.next_event("t1") is None
    with pytest.raises(SubscribeError, match="No subscription field"):
        await manager.create_subscription("x", "conn", "subscription { nothing }")
    with pytest.raises(SubscribeError, match="already registered"):
        await manager.create_subscription("t1", "conn", "subscription { tick }")
    metrics = manager.get_metrics()
    assert metrics["events_published"] == 3
    assert metrics["subscribe_errors"] == 1
    assert "fraiseql" in manager.metrics_text()
    await manager.complete_subscription("t1")
    await manager.publish("tick", 1)
    assert manager.get_metrics()["active_subscriptions"] == 0
    await manager.shutdown()


async def test_publish_sync_from_a_thread_and_bad_publishes() -> None:
    manager = SubscriptionManager(config=SubscriptionConfig.development())
    manager.subscription("tick")
    # Before start() the manager's fields are not in the engine yet: refused, not lost.
    with pytest.raises(ExecutorStateError, match="not started"):
        manager.publish_sync("tick", 0)
    await manager.start()
    await manager.create_subscription("t", "c", "subscription { tick }")
    thread = threading.Thread(target=manager.publish_sync, args=("tick", 5))
    thread.start()
    thread.join(10)
    frame = await manager.get_next_event("t", timeout=5)
    assert json.loads(frame or b"")["payload"] == {"data": {"tick": 5}}
    with pytest.raises(ConfigurationError, match="channel"):
        await manager.publish("", 1)
    with pytest.raises(TypeError, match="not JSON serializable"):
        await manager.publish("tick", object())
    with pytest.raises(ConfigurationError, match="audience"):
        await manager.publish("tick", 1, audience=[1, 2])
    with pytest.raises(ConfigurationError, match="not both"):
        await manager.publish("tick", 1, tenant_id="acme", global_=True)
    await manager.shutdown()


async def test_publish_sync_refuses_the_loop_it_would_deadlock() -> None:
    # With a Python resolver the engine needs the manager's loop for every event; a
    # publish_sync flood on that loop's thread used to fill the bus and wait for the loop it
    # was blocking, forever. On that thread it raises now; from a thread it still works,
    # for more events than the bus holds, while the loop runs the resolver.
    events = 6000
    manager = SubscriptionManager(
        config=SubscriptionConfig.high_performance(subscribe_rate=0, outbox_capacity=events + 16)
    )

    @manager.subscription("tick")
    def tick(event: Any, variables: Any, ctx: Any) -> Any:
        return event + 1

    await manager.start()
    await manager.create_subscription("t", "c", "subscription { tick }")
    with pytest.raises(ExecutorStateError, match=r"await manager\.publish"):
        manager.publish_sync("tick", 1)
    with pytest.raises(ExecutorStateError, match="deadlock"):
        manager.executor.publish_event("message", "tick", 1)

    def flood() -> None:
        for n in range(events):
            manager.publish_sync("tick", n)

    thread = threading.Thread(target=flood)
    thread.start()
    for n in range(events):
        frame = await manager.get_next_event("t", timeout=10)
        assert json.loads(frame or b"")["payload"] == {"data": {"tick": n + 1}}
    await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive()
    await manager.shutdown()


def test_messages_parse_strictly() -> None:
    message = PyGraphQLMessage.from_dict(
        {"id": "1", "type": "subscribe", "payload": {"query": "subscription { a }"}}
    )
    assert message.type == "subscribe"
    assert message.id == "1"
    assert message.subscription is not None
    assert message.subscription.query == "subscription { a }"
    assert message.to_dict() == {
        "id": "1",
        "type": "subscribe",
        "payload": {"query": "subscription { a }"},
    }
    legacy = PyGraphQLMessage.from_dict({"id": "1", "type": "stop"}, protocol="graphql-ws")
    assert legacy.type == "stop"
    with pytest.raises(ConfigurationError, match="invalid"):
        PyGraphQLMessage.from_dict({"type": "subscribe", "payload": {"query": "x"}})
    with pytest.raises(ConfigurationError, match="protocol"):
        PyGraphQLMessage.from_dict({"type": "ping"}, protocol="mqtt")
    payload = PySubscriptionPayload("subscription { a }", None, {"x": True})
    assert payload.variables == {"x": True}
    with pytest.raises(ConfigurationError, match="empty"):
        PySubscriptionPayload("  ")


def test_negotiation() -> None:
    negotiate = rs.SubscriptionExecutor.negotiate
    assert negotiate(["graphql-transport-ws"]) == "graphql-transport-ws"
    assert negotiate("graphql-ws") == "graphql-ws"
    assert negotiate(["mqtt"]) is None


async def test_async_generator_fields_refuse_a_channel() -> None:
    manager = SubscriptionManager()

    async def gen(variables: Any, ctx: Any) -> Any:
        yield 1

    with pytest.raises(ConfigurationError, match="async generator"):
        manager.subscription("g", channel="somewhere")(gen)


async def test_sync_resolver_failures_and_awaitables_become_errors() -> None:
    manager = SubscriptionManager(config=SubscriptionConfig.development())

    @manager.subscription("bad", channel="bad")
    def bad(event: Any) -> Any:
        if event == "raise":
            raise ValueError("no good")

        async def later() -> Any:
            return event

        return later()

    await manager.create_subscription("a", "c", "subscription { bad }")
    await manager.publish("bad", "raise")
    error = json.loads(await manager.get_next_event("a", timeout=5) or b"")
    assert error["type"] == "error"
    assert error["payload"][0]["message"] == "no good"
    await manager.create_subscription("b", "c", "subscription { bad }")
    await manager.publish("bad", "await me")
    error = json.loads(await manager.get_next_event("b", timeout=5) or b"")
    assert "declare it `async def`" in error["payload"][0]["message"]
    await manager.shutdown()


async def test_many_resolver_groups_resolve_concurrently() -> None:
    manager = SubscriptionManager(config=SubscriptionConfig.development())
    gate = asyncio.Event()
    waiting = 0

    @manager.subscription("slow", channel="slow")
    async def slow(event: Any, variables: dict[str, Any], ctx: Any) -> Any:
        nonlocal waiting
        waiting += 1
        if waiting == 2:
            gate.set()
        await gate.wait()  # hangs unless both groups are being resolved at once
        return variables["k"]

    for k in ("a", "b"):
        await manager.create_subscription(k, "c", f'subscription {{ slow(k: "{k}") }}')
    await manager.publish("slow", {})
    for k in ("a", "b"):
        frame = await manager.get_next_event(k, timeout=10)
        assert json.loads(frame or b"")["payload"] == {"data": {"slow": k}}
    await manager.shutdown()


async def test_publish_json_checks_the_body_in_rust() -> None:
    manager = SubscriptionManager(config=SubscriptionConfig.development())
    manager.subscription("tick", channel="bench:{topic}")
    await manager.create_subscription("t", "c", 'subscription { tick(topic: "a") }')
    body = json.dumps([{"channel": "bench:a", "data": 1}, {"channel": "bench:a", "data": True}])
    assert await manager.publish_json(body) == 2
    for value in (1, True):
        frame = await manager.get_next_event("t", timeout=5)
        assert json.loads(frame or b"")["payload"] == {"data": {"tick": value}}
    for bad, says in (
        (b"not json", "invalid publish body"),
        (b'[{"channel": "ok"}, {"channel": ""}]', "event 1"),
        (b'{"channel": "c", "colour": 1}', "unknown field"),
    ):
        with pytest.raises(ConfigurationError, match=says):
            await manager.publish_json(bad)
    with pytest.raises(TimeoutError, match="still active"):
        await manager.get_next_event("t", timeout=0.2)
    await manager.shutdown()


def test_the_seed_spellings_of_the_native_classes() -> None:
    from fraiseql_subscriptions import EventBusConfig, GraphQLMessage

    assert EventBusConfig.memory().bus_type == "memory"
    pg = EventBusConfig.postgresql(connection_string="postgres://u@127.0.0.1:5432/test")
    assert pg.bus_type == pg.kind == "postgresql"
    with pytest.raises(ConfigurationError, match="not both"):
        EventBusConfig.postgresql("postgres://a@h/db", connection_string="postgres://a@h/db")
    with pytest.raises(ConfigurationError, match="needs the database address"):
        EventBusConfig.postgresql()
    with pytest.raises(ConfigurationError, match=r'mode="streams"') as refused:
        EventBusConfig.redis("redis://127.0.0.1:6379", consumer_group="workers")
    assert "one process only" in str(refused.value)
    message = GraphQLMessage.from_dict(
        {"id": "1", "type": "subscribe", "payload": {"query": "subscription { a }"}}
    )
    assert message.type_ == message.type == "subscribe"
    assert message.payload == {"query": "subscription { a }"}
    assert GraphQLMessage.from_dict({"type": "ping"}).payload is None
    assert PyGraphQLMessage is GraphQLMessage
    assert repr(EventBusConfig.memory()) == "EventBusConfig.memory()"


def test_a_bus_given_as_config_is_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match="pass the bus as `bus=`"):
        SubscriptionManager(config=EventBusConfig.memory())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bus must be an EventBusConfig"):
        SubscriptionManager(SubscriptionConfig())  # type: ignore[arg-type]
    # The seed's positional form is the bus.
    assert SubscriptionManager(EventBusConfig.memory()).config == SubscriptionConfig()


async def test_get_next_event_tells_a_timeout_from_the_end() -> None:
    manager = SubscriptionManager()
    manager.subscription("tick")
    await manager.create_subscription("t", "c", "subscription { tick }")
    with pytest.raises(TimeoutError, match="still active"):
        await manager.get_next_event("t", timeout=0.05)
    await manager.publish("tick", 1, final=True)
    assert json.loads(await manager.get_next_event("t", timeout=10) or b"")["type"] == "next"
    assert json.loads(await manager.get_next_event("t", timeout=10) or b"")["type"] == "complete"
    assert await manager.get_next_event("t", timeout=10) is None  # ended
    await manager.shutdown()


def test_the_bare_executor_serves_fields_named_only_by_subscriptions() -> None:
    executor = PySubscriptionExecutor()
    executor.register_subscription("c", "s", "subscription { orders { id } }")
    executor.publish_event("created", "orders", {"id": 7, "secret": "x"})
    frame = json.loads(executor.next_event("s") or b"")
    assert frame["payload"] == {"data": {"orders": {"id": 7}}}
    assert executor.next_event("s") is None  # nothing else queued
    # Once a field is declared, undeclared ones are refused (a typo is an error).
    strict = PySubscriptionExecutor()
    strict.register_field("orders", "orders")
    with pytest.raises(SubscribeError, match='No subscription field "order"'):
        strict.register_subscription("c", "s", "subscription { order { id } }")
