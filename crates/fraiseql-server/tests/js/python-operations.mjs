// The reference graphql-ws client sends queries and mutations on the same socket as its
// subscriptions, against the Python example examples/python/graphql_operations.py (graphql-core
// executes the operations, the native server and engine serve the subscriptions).
//
// Not picked up by `node --test <dir>` (its name matches no test pattern): `just test-python`
// runs it with FRAISEQL_OPERATIONS_BIN set to a launcher of the example.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { startServer, within } from "./harness.mjs";

let server;
let client;

before(async () => {
  server = await startServer("FRAISEQL_OPERATIONS_BIN", ["0"]);
  client = createClient({
    url: server.wsUrl,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    connectionParams: { user: "ada" },
  });
});

after(async () => {
  await client?.dispose();
  await server?.stop("SIGKILL").catch(() => {});
});

/** Runs one query or mutation the way graphql-ws documents it: all results, then complete. */
function execute(query, variables) {
  return new Promise((resolve, reject) => {
    const results = [];
    client.subscribe(
      { query, variables },
      { next: (result) => results.push(result), error: reject, complete: () => resolve(results) },
    );
  });
}

test("a mutation answers once and its event reaches the room's subscription", { timeout: 20_000 }, async () => {
  const events = [];
  let first;
  const arrived = new Promise((resolve) => (first = resolve));
  const dispose = client.subscribe(
    { query: 'subscription { message(room: "js") { text author } }' },
    { next: (result) => { events.push(result); first(); }, error: () => {}, complete: () => {} },
  );
  // The subscription is registered before the mutation: both go over one socket, in order.
  const posted = await within(
    execute("mutation Post($text: String!) { post(room: \"js\", text: $text) { text author } }", { text: "hi" }),
    15_000,
    "the mutation's result",
  );
  assert.deepEqual(posted, [{ data: { post: { text: "hi", author: "ada" } } }]);
  await within(arrived, 15_000, "the posted message on the subscription");
  assert.deepEqual(events, [{ data: { message: { text: "hi", author: "ada" } } }]);
  dispose();

  const history = await within(execute('{ messages(room: "js") { text } }'), 15_000, "the query's result");
  assert.deepEqual(history, [{ data: { messages: [{ text: "hi" }] } }]);
});

test("a query the schema refuses ends in the error callback with the GraphQL errors", { timeout: 20_000 }, async () => {
  await assert.rejects(
    within(execute("{ nope }"), 15_000, "the refusal"),
    (errors) => {
      assert.ok(Array.isArray(errors), `expected the GraphQL errors, got ${errors}`);
      assert.match(errors[0].message, /Cannot query field 'nope'/);
      return true;
    },
  );
});
