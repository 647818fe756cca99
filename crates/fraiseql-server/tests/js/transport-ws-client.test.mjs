// Our browser client module (assets/graphql-transport-ws.js, served by the demo) run in
// Node.js with the `ws` WebSocket: against the real server for delivery, errors, fatal close
// codes and reconnection, and against a scripted in-process peer for ping/pong.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, test } from "node:test";
import WebSocket, { WebSocketServer } from "ws";
import { startServer, within } from "./harness.mjs";

// Loaded as a browser loads it: an ES module, whatever the nearest package.json says.
const source = await readFile(new URL("../../assets/graphql-transport-ws.js", import.meta.url), "utf8");
const { createClient } = await import(`data:text/javascript;base64,${Buffer.from(source).toString("base64")}`);

const PUBLISH_TOKEN = "t";
const SERVER_ARGS = ["--publish-token", PUBLISH_TOKEN, "--field", "message=room:{room}"];
const QUERY = "subscription OnMessage($room: String!) { message(room: $room) { id text } }";
const servers = new Set();
const clients = new Set();

after(async () => {
  for (const client of clients) client.dispose();
  await Promise.all([...servers].map((server) => server.stop("SIGKILL").catch(() => {})));
});

async function start(bind = "127.0.0.1:0", extraArgs = []) {
  const server = await startServer("FRAISEQL_SERVER_BIN", ["--bind", bind, ...SERVER_ARGS, ...extraArgs]);
  servers.add(server);
  return server;
}

/** A client whose status changes and frames are recorded. */
function recordedClient(url, options = {}) {
  const statuses = [];
  const sent = [];
  class RecordingWebSocket extends WebSocket {
    send(data, ...rest) {
      sent.push(JSON.parse(data));
      return super.send(data, ...rest);
    }
  }
  const client = createClient({
    url,
    webSocketImpl: RecordingWebSocket,
    onStatus: (status) => statuses.push(status),
    retry: { baseDelayMs: 100, maxDelayMs: 500 },
    ...options,
  });
  clients.add(client);
  return { client, statuses, sent };
}

/** Subscribes to `room`, collecting every message that is not a warm-up. */
function subscribeRoom(client, room) {
  const messages = [];
  const errors = [];
  let completed = false;
  const unsubscribe = client.subscribe(
    { query: QUERY, variables: { room }, operationName: "OnMessage" },
    {
      next: ({ data }) => messages.push(data.message),
      error: (error) => errors.push(error),
      complete: () => (completed = true),
    },
  );
  return { messages, errors, unsubscribe, completed: () => completed };
}

async function publish(server, events) {
  const response = await fetch(`${server.httpUrl}/publish`, {
    method: "POST",
    headers: { authorization: `Bearer ${PUBLISH_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify(events),
  });
  assert.equal(response.status, 202, `POST /publish answered ${response.status}`);
}

/** Publishes warm-up events on `room` until `sub` receives one (its registration is done). */
async function warmUp(server, room, sub) {
  for (let attempt = 0; attempt < 100; attempt++) {
    await publish(server, { channel: `room:${room}`, data: { id: "warm-up", text: "warm-up" } });
    if (await eventually(() => sub.messages.some((m) => m.id === "warm-up"), 100)) {
      sub.messages.length = 0;
      return;
    }
  }
  throw new Error(`no warm-up event reached room ${room}`);
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(condition, ms) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await delay(10);
  }
  return true;
}

async function until(condition, what, ms = 5_000) {
  if (!(await eventually(condition, ms))) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

test("delivers events, sends complete on unsubscribe and closes when idle", { timeout: 20_000 }, async () => {
  const server = await start();
  const { client, statuses, sent } = recordedClient(server.wsUrl);
  const sub = subscribeRoom(client, "a");
  await within(warmUp(server, "a", sub), 15_000, "the subscription to room a");
  assert.deepEqual(sent.slice(0, 2).map((f) => f.type), ["connection_init", "subscribe"]);

  await publish(server, [
    { channel: "room:a", data: { id: "1", text: "one", author: "ada" } },
    { channel: "room:a", data: { id: "2", text: "two" } },
  ]);
  await until(() => sub.messages.length === 2, "two messages");
  assert.deepEqual(sub.messages, [{ id: "1", text: "one" }, { id: "2", text: "two" }]);

  sub.unsubscribe();
  const subscribeId = sent.find((f) => f.type === "subscribe").id;
  assert.deepEqual(sent.at(-1), { id: subscribeId, type: "complete" });
  assert.deepEqual(statuses.map((s) => s.state), ["connecting", "connected", "closed"]);
  assert.equal(statuses.at(-1).code, 1000);
  assert.deepEqual(sub.errors, []);
});

test("a syntax error reaches the sink's error with the server's message", { timeout: 10_000 }, async () => {
  const server = await start();
  const { client } = recordedClient(server.wsUrl);
  const error = await within(
    new Promise((resolve, reject) => {
      client.subscribe({ query: "subscription { message(room: " }, { next: reject, error: resolve, complete: reject });
    }),
    5_000,
    "the error",
  );
  assert.ok(error instanceof Error);
  assert.ok(Array.isArray(error.errors) && error.errors.length > 0);
  assert.ok(error.message.length > 0 && error.message === error.errors.map((e) => e.message).join("; "));
});

test("after the server goes away (1001) it reconnects and re-subscribes", { timeout: 40_000 }, async () => {
  const first = await start();
  const { client, statuses } = recordedClient(first.wsUrl);
  const sub = subscribeRoom(client, "b");
  await within(warmUp(first, "b", sub), 15_000, "the subscription to room b");

  assert.deepEqual(await first.stop("SIGTERM"), { code: 0, signal: null });
  await until(() => statuses.some((s) => s.state === "reconnecting"), "the reconnecting status");
  const reconnecting = statuses.find((s) => s.state === "reconnecting");
  assert.equal(reconnecting.code, 1001);
  assert.match(reconnecting.reason, /^1001 /);

  // The same port again: the client keeps its URL.
  const second = await start(new URL(first.httpUrl).host);
  await until(() => statuses.at(-1).state === "connected", "the reconnection", 15_000);
  await within(warmUp(second, "b", sub), 15_000, "the re-subscription to room b");
  await publish(second, { channel: "room:b", data: { id: "3", text: "after restart" } });
  await until(() => sub.messages.length === 1, "the message after the restart");
  assert.deepEqual(sub.messages, [{ id: "3", text: "after restart" }]);
  assert.deepEqual(sub.errors, []);
  sub.unsubscribe();
});

test("a rejected connection_init (4403) fails the subscription without retrying", { timeout: 15_000 }, async () => {
  const server = await start("127.0.0.1:0", ["--jwt-hs256-secret", "a-secret-of-at-least-32-bytes-long!!"]);
  const { client, statuses } = recordedClient(server.wsUrl, { connectionParams: { token: "not-a-jwt" } });
  const sub = subscribeRoom(client, "c");
  await until(() => sub.errors.length === 1, "the error");
  assert.equal(sub.errors[0].code, 4403);
  assert.match(sub.errors[0].message, /4403/);
  await delay(500);
  assert.deepEqual(statuses.map((s) => s.state), ["connecting", "closed"]);
  assert.equal(statuses.at(-1).code, 4403);
});

test("answers ping with pong, echoing the payload", { timeout: 10_000 }, async () => {
  const peer = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((resolve) => peer.once("listening", resolve));
  const pong = new Promise((resolve) => {
    peer.on("connection", (socket) => {
      assert.equal(socket.protocol, "graphql-transport-ws");
      socket.on("message", (raw) => {
        const message = JSON.parse(raw);
        if (message.type === "connection_init") {
          socket.send(JSON.stringify({ type: "connection_ack" }));
          socket.send(JSON.stringify({ type: "ping", payload: { n: 1 } }));
        } else if (message.type === "pong") {
          resolve(message);
        }
      });
    });
  });
  try {
    const { client } = recordedClient(`ws://127.0.0.1:${peer.address().port}/graphql`);
    const unsubscribe = client.subscribe({ query: "subscription { x }" }, {});
    assert.deepEqual(await within(pong, 5_000, "the pong"), { type: "pong", payload: { n: 1 } });
    unsubscribe();
  } finally {
    for (const socket of peer.clients) socket.terminate();
    await new Promise((resolve) => peer.close(resolve));
  }
});
