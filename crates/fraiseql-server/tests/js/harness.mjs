// Starts a server binary for a test and always stops it: the child is killed when the test
// file's process exits, however it exits.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/**
 * Spawns the binary named by environment variable `envVar` with `args`, and waits for its
 * `... listening on http://HOST:PORT` line.
 * @param {string} envVar e.g. `FRAISEQL_SERVER_BIN`
 * @param {string[]} args
 * @param {{startTimeoutMs?: number}} [options]
 * @returns {Promise<{httpUrl: string, wsUrl: string, child: import("node:child_process").ChildProcess,
 *   stderr: () => string, stop: (signal?: string) => Promise<{code: number | null, signal: string | null}>}>}
 */
export async function startServer(envVar, args, { startTimeoutMs = 20_000 } = {}) {
  const bin = process.env[envVar];
  if (!bin) throw new Error(`set ${envVar} to the binary to test (see \`just test-js\`)`);
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-20_000);
  });
  const exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    });
  });

  const stop = async (signal = "SIGTERM", timeoutMs = 10_000) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    let timer;
    const timedOut = new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), timeoutMs);
    });
    const result = await Promise.race([exited, timedOut]);
    clearTimeout(timer);
    if (result) return result;
    child.kill("SIGKILL");
    await exited;
    throw new Error(`${bin} did not exit within ${timeoutMs} ms of ${signal}; stderr:\n${stderr}`);
  };

  try {
    const httpUrl = await new Promise((resolve, reject) => {
      const lines = createInterface({ input: child.stdout });
      const timer = setTimeout(
        () => reject(new Error(`no "listening on" line from ${bin} within ${startTimeoutMs} ms`)),
        startTimeoutMs,
      );
      lines.on("line", (line) => {
        const match = / listening on (http:\/\/\S+)/.exec(line);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
      child.once("error", (err) => {
        clearTimeout(timer);
        reject(new Error(`could not start ${bin}: ${err.message}`));
      });
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`${bin} exited (code ${code}, signal ${signal}) before listening`));
      });
    });
    const wsUrl = `${httpUrl.replace(/^http/, "ws")}/graphql`;
    return { httpUrl, wsUrl, child, stderr: () => stderr, stop };
  } catch (err) {
    await stop("SIGKILL").catch(() => {});
    throw new Error(`${err.message}\nstderr:\n${stderr}`);
  }
}

/**
 * Resolves with the value of `promise`, or rejects after `ms` with `what` in the message.
 * @template T
 * @param {Promise<T>} promise
 * @param {number} ms
 * @param {string} what
 * @returns {Promise<T>}
 */
export function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
