// The demo page in headless Chromium against the real demo binary: two pages in one room,
// a message posted through the form on one shows up on both.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { startServer } from "./harness.mjs";

const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const missing = existsSync(executablePath)
  ? null
  : `Chromium not found at ${executablePath} (set CHROMIUM, or apt-get install chromium)`;
// Skipped on a developer's machine without Chromium; in CI a missing browser is a failure.
const skip = missing && process.env.CI !== "true" ? missing : false;

let demo;
let browser;

before(async () => {
  if (missing) return;
  demo = await startServer("FRAISEQL_DEMO_BIN", ["--bind", "127.0.0.1:0", "--no-bot"]);
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start. The rest keep
  // Chromium from reaching for the network on its own (updates, sync, QUIC probes).
  const args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"];
  browser = await chromium.launch({ executablePath, headless: true, args, timeout: 30_000 });
});

after(async () => {
  await browser?.close().catch(() => {});
  if (demo) {
    // Ctrl-C, as a person stops the demo.
    const { code, signal } = await demo.stop("SIGINT");
    assert.equal(code, 0, `the demo exited with code ${code}, signal ${signal}; stderr:\n${demo.stderr()}`);
  }
});

async function postMessage(message) {
  const response = await fetch(`${demo.httpUrl}/messages`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(message),
  });
  assert.equal(response.status, 202, `POST /messages answered ${response.status}: ${await response.text()}`);
}

/** Opens the demo in a fresh browser context (its own storage, like a second visitor). */
async function openPage() {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const problems = [];
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => msg.type() === "error" && problems.push(`console: ${msg.text()}`));
  await page.goto(demo.httpUrl);
  try {
    await page.locator('#status[data-state="connected"]').waitFor();
  } catch (err) {
    const status = await page.locator("#status").textContent().catch(() => "?");
    throw new Error(`the page never showed connected (status: ${status}; ${problems.join("; ")})`, { cause: err });
  }
  return { page, problems };
}

test("a message posted on one page appears on both, and rooms are separate", { skip, timeout: 60_000 }, async () => {
  if (missing) assert.fail(`${missing}; CI runs the browser test, it does not skip it`);
  const one = await openPage();
  const two = await openPage();
  assert.equal(await one.page.locator("#room").inputValue(), "lobby");

  // Both pages are connected, but the server may not have registered the subscriptions yet:
  // post until the first message arrives on page two, then check a fresh one arrives on both.
  await one.page.locator("#author").fill("Ada");
  const text = `hello from page one ${Date.now()}`;
  for (let attempt = 0; ; attempt++) {
    await one.page.locator("#text").fill(attempt === 0 ? text : `${text} (${attempt})`);
    await one.page.locator("#send").click();
    await one.page.locator("#send:enabled").waitFor();
    const arrived = await two.page
      .locator("#messages li", { hasText: text })
      .first()
      .waitFor({ timeout: 1_000 })
      .then(() => true, () => false);
    if (arrived) break;
    assert.ok(attempt < 10, "no message reached page two");
  }
  assert.equal(await one.page.locator("#send-error").textContent(), "");

  const last = `second message ${Date.now()}`;
  await one.page.locator("#text").fill(last);
  await one.page.locator("#text").press("Enter");
  for (const { page } of [one, two]) {
    const item = page.locator("#messages li", { hasText: last });
    await item.waitFor();
    assert.equal(await item.locator(".author").textContent(), "Ada");
    assert.equal(await item.locator(".text").textContent(), last);
    assert.match(await item.locator("time").getAttribute("datetime"), /^\d{4}-\d\d-\d\dT/);
    assert.match(await item.locator("time").textContent(), /\d:\d\d/);
  }
  assert.equal(await one.page.locator("#text").inputValue(), "", "the form clears after sending");

  // Page two moves to another room: its list starts empty and shows only that room's messages.
  await two.page.locator("#room").fill("random");
  await two.page.locator("#join").click();
  await two.page.locator("#room-name", { hasText: "#random" }).waitFor();
  assert.equal(await two.page.locator("#messages li").count(), 0);
  for (let attempt = 0; ; attempt++) {
    await postMessage({ room: "lobby", author: "Bob", text: `still in the lobby ${attempt}` });
    await postMessage({ room: "random", author: "Bob", text: `welcome to random ${attempt}` });
    const arrived = await two.page
      .locator("#messages li", { hasText: "welcome to random" })
      .first()
      .waitFor({ timeout: 1_000 })
      .then(() => true, () => false);
    if (arrived) break;
    assert.ok(attempt < 10, "no message reached page two in room random");
  }
  assert.equal(await two.page.locator("#messages li", { hasText: "still in the lobby" }).count(), 0);
  await one.page.locator("#messages li", { hasText: "still in the lobby" }).first().waitFor();
  assert.deepEqual([...one.problems, ...two.problems], []);
});
