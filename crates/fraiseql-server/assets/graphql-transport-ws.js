// A small, dependency-free client for the graphql-transport-ws protocol
// (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md), served to browsers as
// an ES module. It speaks only the modern protocol; for Node.js use the `graphql-ws` package.

/** Close codes after which reconnecting would only repeat the failure. */
const FATAL_CLOSE_CODES = new Set([4400, 4401, 4403, 4406, 4409, 4429, 4500]);

/** What each close code means, for status lines and errors. */
const CLOSE_REASONS = {
  1000: "closed normally",
  1001: "server going away",
  1006: "connection lost",
  1011: "server error",
  1013: "try again later",
  4400: "bad request",
  4401: "unauthorized",
  4403: "forbidden",
  4406: "subprotocol not acceptable",
  4408: "connection initialisation timeout",
  4409: "subscriber already exists",
  4429: "too many initialisation requests",
  4500: "internal server error",
};

/**
 * Describes a WebSocket close code in words, e.g. `4403 forbidden`.
 * @param {number} code
 * @param {string} [reason] the reason the server sent, preferred when present
 * @returns {string}
 */
export function describeClose(code, reason) {
  return `${code} ${reason || CLOSE_REASONS[code] || "closed"}`;
}

/**
 * @typedef {object} Status
 * @property {"connecting"|"connected"|"reconnecting"|"closed"} state
 * @property {number} [code] the close code, when the socket closed
 * @property {string} [reason] the close code in words
 * @property {number} [retryInMs] delay before the next attempt, when reconnecting
 */

/**
 * @typedef {object} Sink
 * @property {(result: {data?: object, errors?: object[]}) => void} [next] each `next` payload
 * @property {(error: Error & {errors?: object[], code?: number}) => void} [error]
 *   GraphQL errors of an `error` message (in `error.errors`), or a fatal close (`error.code`)
 * @property {() => void} [complete] the server completed the subscription
 */

/**
 * Creates a lazy client: it connects on the first subscription and stays connected while
 * any subscription is active, reconnecting with exponential backoff (and re-subscribing)
 * after an unexpected close.
 *
 * @param {object} options
 * @param {string} options.url the `ws://` or `wss://` address of the GraphQL endpoint
 * @param {object | (() => object | Promise<object>)} [options.connectionParams]
 *   the `connection_init` payload, or a function returning it (called on every connect)
 * @param {(status: Status) => void} [options.onStatus] told of every change of connection state
 * @param {{attempts?: number, baseDelayMs?: number, maxDelayMs?: number} | false} [options.retry]
 *   backoff after an unexpected close (defaults: unlimited attempts, 500 ms doubling to 15 s);
 *   `false` never reconnects
 * @param {typeof WebSocket} [options.webSocketImpl] defaults to the global `WebSocket`
 * @returns {{subscribe: (request: {query: string, variables?: object, operationName?: string},
 *            sink: Sink) => () => void, dispose: () => void}}
 */
export function createClient({ url, connectionParams, onStatus = () => {}, retry = {}, webSocketImpl } = {}) {
  const WebSocketImpl = webSocketImpl || globalThis.WebSocket;
  const { attempts = Infinity, baseDelayMs = 500, maxDelayMs = 15000 } = retry || {};
  /** Active subscriptions by id: what to send again after a reconnect and where to deliver. */
  const active = new Map();
  let socket = null;
  let acknowledged = false;
  let failures = 0;
  let retryTimer = null;
  let disposed = false;
  let nextId = 1;

  const send = (message) => socket.send(JSON.stringify(message));
  const sendSubscribe = (id, { payload }) => send({ id, type: "subscribe", payload });

  function connect() {
    if (socket || disposed) return;
    clearTimeout(retryTimer);
    retryTimer = null;
    onStatus({ state: "connecting" });
    const ws = new WebSocketImpl(url, "graphql-transport-ws");
    socket = ws;
    acknowledged = false;

    ws.onopen = async () => {
      try {
        const payload = typeof connectionParams === "function" ? await connectionParams() : connectionParams;
        if (socket !== ws) return;
        send(payload === undefined ? { type: "connection_init" } : { type: "connection_init", payload });
      } catch (err) {
        ws.close(4400, "connectionParams failed");
        failAll(Object.assign(new Error(`connectionParams failed: ${err.message || err}`), { code: 4400 }));
      }
    };

    ws.onmessage = (event) => {
      if (socket !== ws) return; // a socket we are closing: its frames are stale
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        ws.close(4400, "invalid JSON from server");
        return;
      }
      const subscription = message.id === undefined ? undefined : active.get(message.id);
      switch (message.type) {
        case "connection_ack":
          acknowledged = true;
          failures = 0;
          onStatus({ state: "connected" });
          for (const [id, sub] of active) sendSubscribe(id, sub);
          break;
        case "ping":
          send(message.payload === undefined ? { type: "pong" } : { type: "pong", payload: message.payload });
          break;
        case "pong":
          break;
        case "next":
          subscription?.sink.next?.(message.payload);
          break;
        case "error": {
          if (!subscription) break;
          active.delete(message.id);
          const errors = Array.isArray(message.payload) ? message.payload : [message.payload];
          const text = errors.map((e) => e?.message).filter(Boolean).join("; ") || "subscription failed";
          subscription.sink.error?.(Object.assign(new Error(text), { errors }));
          closeIfIdle();
          break;
        }
        case "complete":
          if (!subscription) break;
          active.delete(message.id);
          subscription.sink.complete?.();
          closeIfIdle();
          break;
        default:
          ws.close(4400, `unexpected message type ${JSON.stringify(message.type)}`);
      }
    };

    // A `close` event always follows an error, and the close code says more; the handler
    // only keeps Node.js WebSocket implementations from throwing an unhandled `error`.
    ws.onerror = () => {};

    ws.onclose = (event) => {
      if (socket !== ws) return;
      socket = null;
      acknowledged = false;
      const code = event.code;
      const reason = describeClose(code, event.reason);
      if (disposed || active.size === 0) {
        onStatus({ state: "closed", code, reason });
        return;
      }
      if (retry === false || FATAL_CLOSE_CODES.has(code) || failures >= attempts) {
        onStatus({ state: "closed", code, reason });
        failAll(Object.assign(new Error(`connection closed: ${reason}`), { code }));
        return;
      }
      const retryInMs = Math.min(maxDelayMs, baseDelayMs * 2 ** failures) * (0.75 + Math.random() / 2);
      failures += 1;
      onStatus({ state: "reconnecting", code, reason, retryInMs: Math.round(retryInMs) });
      retryTimer = setTimeout(connect, retryInMs);
    };
  }

  function failAll(error) {
    const sinks = [...active.values()].map((sub) => sub.sink);
    active.clear();
    for (const sink of sinks) sink.error?.(error);
  }

  /** Closes the socket (or cancels a pending reconnect) once no subscription is left. */
  function closeIfIdle() {
    if (active.size > 0) return;
    clearTimeout(retryTimer);
    retryTimer = null;
    if (socket) {
      const ws = socket;
      socket = null;
      ws.close(1000, "normal closure");
      onStatus({ state: "closed", code: 1000, reason: describeClose(1000) });
    }
  }

  return {
    subscribe({ query, variables, operationName }, sink) {
      if (disposed) throw new Error("client is disposed");
      const id = String(nextId++);
      const sub = { payload: { query, variables, operationName }, sink };
      active.set(id, sub);
      if (socket && acknowledged) sendSubscribe(id, sub);
      else connect();
      return () => {
        if (!active.delete(id)) return;
        if (socket && acknowledged) send({ id, type: "complete" });
        closeIfIdle();
      };
    },
    dispose() {
      disposed = true;
      active.clear();
      closeIfIdle();
    },
  };
}
