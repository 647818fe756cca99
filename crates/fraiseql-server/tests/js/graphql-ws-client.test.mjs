// The reference graphql-ws client (the npm package most JavaScript apps use) against the real
// fraiseql-server binary: delivery, projection, client-side complete, errors, shutdown.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { startServer, within } from "./harness.mjs";

const PUBLISH_TOKEN = "t";
let server;
let client;
/** Every frame on the client's sockets, both ways, as parsed JSON. */
const frames = { sent: [], received: [] };
let closeCode = null;

/** A `ws` WebSocket that records its frames, so tests can check what went over the wire. */
class RecordingWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (event) => frames.received.push(JSON.parse(event.data)));
  }

  send(data, ...rest) {
    frames.sent.push(JSON.parse(data));
    return super.send(data, ...rest);
  }
}

async function publish(events) {
  const response = await fetch(`${server.httpUrl}/publish`, {
    method: "POST",
    headers: { authorization: `Bearer ${PUBLISH_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify(events),
  });
  assert.equal(response.status, 202, `POST /publish answered ${response.status}: ${await response.text()}`);
}

/**
 * Subscribes and collects results. `ready` resolves once the server delivers to this
 * subscription: warm-up events are published on `channel` until one arrives, so events
 * published afterwards cannot race the subscription's registration.
 */
function subscribe(query, operationName, channel) {
  const results = [];
  let warmed;
  const warm = new Promise((resolve) => (warmed = resolve));
  let sinks;
  const done = new Promise((resolve, reject) => (sinks = { resolve, reject }));
  done.catch(() => {}); // a test that expects an error awaits `done` itself
  const unsubscribe = client.subscribe(
    { query, operationName },
    {
      next: (result) => {
        const message = result.data?.message;
        if (message?.id === "warm-up" || message?.text === "warm-up") warmed();
        else results.push(result);
      },
      error: (error) => sinks.reject(error),
      complete: () => sinks.resolve(),
    },
  );
  const ready = (async () => {
    for (let attempt = 0; attempt < 100; attempt++) {
      await publish({ channel, data: { id: "warm-up", text: "warm-up" } });
      const arrived = await Promise.race([warm.then(() => true), delay(100).then(() => false)]);
      if (arrived) return;
    }
    throw new Error(`no warm-up event arrived on ${channel}`);
  })();
  return { results, done, ready, unsubscribe };
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition, what, ms = 5_000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await delay(20);
  }
}

before(async () => {
  server = await startServer("FRAISEQL_SERVER_BIN", [
    "--bind", "127.0.0.1:0",
    "--publish-token", PUBLISH_TOKEN,
    "--field", "message=room:{room}",
  ]);
  client = createClient({
    url: server.wsUrl,
    webSocketImpl: RecordingWebSocket,
    retryAttempts: 0,
    on: { closed: (event) => (closeCode = event?.code ?? null) },
  });
});

after(async () => {
  await client?.dispose();
  await server?.stop("SIGKILL").catch(() => {});
});

test("published events arrive in order with exactly the selected fields", { timeout: 20_000 }, async () => {
  const sub = subscribe('subscription OnR1 { message(room: "r1") { id text } }', "OnR1", "room:r1");
  await within(sub.ready, 15_000, "the subscription to room r1");
  await publish([
    { channel: "room:r1", data: { id: "1", text: "first", author: "ada", sentAt: "2024-01-01T00:00:00Z" } },
    { channel: "room:r1", data: { id: "2", text: "second", author: "bob", secret: 42 } },
  ]);
  await until(() => sub.results.length >= 2, "two events on room r1");
  assert.deepEqual(sub.results, [
    { data: { message: { id: "1", text: "first" } } },
    { data: { message: { id: "2", text: "second" } } },
  ]);
  sub.unsubscribe();
});

test("complete from the client stops delivery to that subscription", { timeout: 20_000 }, async () => {
  const stopped = subscribe('subscription Stopped { message(room: "r2") { id } }', "Stopped", "room:r2");
  const kept = subscribe('subscription Kept { message(room: "r2") { id } }', "Kept", "room:r2");
  await within(Promise.all([stopped.ready, kept.ready]), 15_000, "the subscriptions to room r2");
  const stoppedId = frames.sent.find((f) => f.type === "subscribe" && f.payload.operationName === "Stopped").id;

  stopped.unsubscribe();
  assert.ok(
    frames.sent.some((f) => f.type === "complete" && f.id === stoppedId),
    "the client sends complete for the stopped subscription",
  );
  // A subscription made after the complete, on the same socket, is registered after the
  // server has handled the complete: once it receives, the stopped one is gone.
  const later = subscribe('subscription Later { message(room: "r2") { text } }', "Later", "room:r2");
  await within(later.ready, 15_000, "the later subscription to room r2");
  const receivedBefore = frames.received.length;

  await publish({ channel: "room:r2", data: { id: "3", text: "after complete" } });
  await until(() => kept.results.length === 1 && later.results.length === 1, "the event on the other subscriptions");
  assert.deepEqual(kept.results, [{ data: { message: { id: "3" } } }]);
  assert.deepEqual(later.results, [{ data: { message: { text: "after complete" } } }]);
  const toStopped = frames.received.slice(receivedBefore).filter((f) => f.id === stoppedId);
  assert.deepEqual(toStopped, [], "no frame for the stopped subscription after its complete");
  kept.unsubscribe();
  later.unsubscribe();
});

test("a subscription with a syntax error gets an error with a message", { timeout: 10_000 }, async () => {
  const errors = await within(
    new Promise((resolve, reject) => {
      client.subscribe(
        { query: 'subscription { message(room: "r1") { id ' },
        { next: () => reject(new Error("unexpected next")), error: resolve, complete: () => reject(new Error("complete before error")) },
      );
    }),
    5_000,
    "the error for the malformed document",
  );
  assert.ok(Array.isArray(errors) && errors.length > 0, `error payload is a list of GraphQL errors: ${JSON.stringify(errors)}`);
  assert.equal(typeof errors[0].message, "string");
  assert.ok(errors[0].message.length > 0, "the error has a message");
});

test("SIGTERM closes open sockets with 1001 and the server exits 0", { timeout: 20_000 }, async () => {
  const sub = subscribe('subscription Open { message(room: "r3") { id } }', "Open", "room:r3");
  await within(sub.ready, 15_000, "the subscription to room r3");
  closeCode = null; // earlier sockets closed with 1000 when their last subscription ended
  const { code, signal } = await server.stop("SIGTERM");
  assert.equal(signal, null, `the server was killed by ${signal}; stderr:\n${server.stderr()}`);
  assert.equal(code, 0, `the server exited ${code}; stderr:\n${server.stderr()}`);
  await until(() => closeCode !== null, "the socket to close");
  assert.equal(closeCode, 1001);
});
