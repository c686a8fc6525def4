// Real-browser test of the landing role's /playground, in Debian's headless
// Chromium driven by playwright-core (no browser download).
//
//   node tests/browser/playground.mjs http://127.0.0.1:8080 [--screenshot PATH]
//
// Against a running `chantra serve --role all` (scripts/browser-test.sh starts
// one on free loopback ports and installs what this needs). It:
//   1. opens /playground, creates a public channel with the button, waits for
//      the stream state "connected" (the EventSource is open), publishes
//      "first message" then "second message" through the form, and waits
//      (bounded) until both are in #messages, in that order, each <li> with a
//      UUID data-id; then saves a screenshot (default target/playground.png)
//      and checks it is a non-empty PNG;
//   2. selects "private", creates a channel, checks the stream URL carries
//      ?token=, publishes one message and waits for it to arrive
//      (screenshot target/playground-private.png);
//   3. checks each action's equivalent commands: a curl and a `chantra` row
//      (contract D syntax, with this server's URLs and the channel's tokens),
//      and that a copy button puts exactly the shown command on the clipboard;
//      that a JSON body that does not parse is refused before it is sent;
//   4. ends both channels from the page: "Delete the channel" ends the public
//      stream with its `deleted` event, "Revoke the read token" the private
//      one with its `revoked` event (stream states "channel deleted", "read
//      access revoked");
//   5. renders /, /docs and /playground (with a channel, so the long commands
//      are shown) 390 px wide, and fails if anything overflows horizontally:
//      the page scrolls sideways, or an element is wider than the viewport
//      (screenshots target/playground-phone.png, target/docs-phone.png);
//   6. fails on any console error, uncaught page error, CSP violation, failed
//      request or HTTP error status, and on any request to an origin other
//      than the landing, rest and channels roles (the page works offline).
//
// Exits 0 when every check passes, 1 with a clear message otherwise.
// Environment: CHROMIUM (default /usr/bin/chromium), PLAYGROUND_TIMEOUT_MS
// (per wait, default 15000).

import { createRequire } from "node:module";
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const started = Date.now();
const problems = []; // console errors, page errors, CSP violations, failed requests
const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "..", "..");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const WAIT_MS = Number(process.env.PLAYGROUND_TIMEOUT_MS || 15000);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-quic",
];

// --- arguments ---------------------------------------------------------------

const argv = process.argv.slice(2);
let base = null;
let screenshot = resolve(ROOT, "target", "playground.png");
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--screenshot") screenshot = resolve(argv[++i] ?? "");
  else if (argv[i] === "-h" || argv[i] === "--help") {
    console.log("usage: node tests/browser/playground.mjs LANDING_URL [--screenshot PATH]");
    process.exit(0);
  } else if (base === null) base = argv[i];
  else fail(`unexpected argument: ${argv[i]}`);
}
if (!base) fail("usage: node tests/browser/playground.mjs LANDING_URL [--screenshot PATH]");
let landing;
try {
  landing = new URL(base);
} catch {
  fail(`not a URL: ${base}`);
}
const privateShot = screenshot.replace(/(\.png)?$/i, "-private.png");

// --- helpers -----------------------------------------------------------------

function fail(message) {
  console.error(`playground: FAILED: ${message}`);
  const seen = [...new Set(problems)].filter((p) => !message.includes(p));
  if (seen.length) console.error(`  the browser also reported:\n    ${seen.join("\n    ")}`);
  process.exit(1);
}

function step(message) {
  console.log(`  [${((Date.now() - started) / 1000).toFixed(1)} s] ${message}`);
}

// playwright-core is installed outside the repository (scripts/browser-test.sh
// puts it in a cache dir and sets NODE_PATH). ESM `import` ignores NODE_PATH,
// CommonJS `require` honours it: try both.
async function loadPlaywright() {
  try {
    return await import("playwright-core");
  } catch (err) {
    if (err?.code !== "ERR_MODULE_NOT_FOUND") throw err;
  }
  try {
    return createRequire(import.meta.url)("playwright-core");
  } catch {
    fail("playwright-core is not installed: run scripts/browser-test.sh (or set NODE_PATH to a node_modules holding it)");
  }
}

// The PNG signature, then an IHDR chunk with a non-zero width and height.
function checkPng(path) {
  let bytes;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    fail(`no screenshot at ${path}: ${err.message}`);
  }
  const magic = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (bytes.length < 33 || !bytes.subarray(0, 8).equals(magic)) fail(`${path} is not a PNG (${bytes.length} bytes)`);
  if (bytes.toString("latin1", 12, 16) !== "IHDR") fail(`${path}: no IHDR chunk`);
  const width = bytes.readUInt32BE(16);
  const height = bytes.readUInt32BE(20);
  if (width === 0 || height === 0) fail(`${path}: empty image (${width}x${height})`);
  return { size: statSync(path).size, width, height };
}

// --- the browser -------------------------------------------------------------

const { chromium } = await loadPlaywright();
const requests = [];
let browser;

// Whatever happens, never hang: the whole test has a hard deadline.
const watchdog = setTimeout(() => {
  console.error("playground: FAILED: the test did not finish within 120 s");
  process.exit(1);
}, 120_000);
watchdog.unref();

try {
  step(`launching ${CHROMIUM}`);
  // launch() gives Chromium a fresh temporary --user-data-dir of its own (and
  // refuses one in args); it is removed when the browser closes.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 30_000 });
  step(`Chromium ${browser.version()}`);
  const context = await browser.newContext({ viewport: { width: 1024, height: 900 }, colorScheme: "light" });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: landing.origin });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);

  // CSP violations as the page sees them (an init script is not subject to CSP).
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "(inline)"} (${e.sourceFile || "?"}:${e.lineNumber})`);
    });
  });
  page.on("console", (msg) => {
    if (msg.type() === "error" || msg.type() === "warning") {
      const where = msg.location()?.url ? ` (${msg.location().url}:${msg.location().lineNumber})` : "";
      // Chromium's own warnings that say nothing about the page are not problems;
      // every console error is.
      if (msg.type() === "error") problems.push(`console error: ${msg.text()}${where}`);
      else step(`console warning: ${msg.text()}${where}`);
    }
  });
  page.on("pageerror", (err) => problems.push(`uncaught page error: ${err.message}`));
  page.on("request", (req) => requests.push(req.url()));
  let closing = false;
  page.on("requestfailed", (req) => {
    // Closing an EventSource (a new channel, or the end of the test) aborts its request.
    const aborted = req.failure()?.errorText === "net::ERR_ABORTED" && req.resourceType() === "eventsource";
    if (!closing && !aborted) problems.push(`request failed: ${req.method()} ${req.url()}: ${req.failure()?.errorText}`);
  });
  page.on("response", (res) => {
    if (res.status() >= 400) problems.push(`HTTP ${res.status()} for ${res.request().method()} ${res.url()}`);
  });
  const assertClean = async (when) => {
    const csp = await page.evaluate(() => window.__cspViolations ?? []).catch(() => []);
    for (const v of csp) problems.push(`CSP violation: ${v}`);
    if (problems.length) fail(`${when}:\n    ${[...new Set(problems)].join("\n    ")}`);
  };

  // --- the page ---
  const url = new URL("/playground", landing).href;
  step(`GET ${url}`);
  const response = await page.goto(url, { waitUntil: "load", timeout: WAIT_MS });
  if (!response || response.status() !== 200) fail(`GET /playground answered ${response?.status()}`);
  const headers = response.headers();
  if (!(headers["content-type"] || "").startsWith("text/html")) fail(`/playground content type is ${headers["content-type"]}`);
  const csp = headers["content-security-policy"];
  if (!csp) fail("/playground has no Content-Security-Policy header");
  step(`CSP: ${csp}`);
  if ((await page.title()).trim() === "") fail("/playground has no <title>");
  const restUrl = await page.locator("#playground").getAttribute("data-rest-url");
  if (!restUrl) fail("#playground has no data-rest-url");
  step(`rest URL from the page: ${restUrl}`);
  const allowedOrigins = new Set([landing.origin, new URL(restUrl).origin]);

  const createButton = page.getByRole("button", { name: "Create a channel" });
  const streamState = page.locator("#stream-state");
  const message = page.locator("#message");
  const status = page.locator("#status");
  const items = page.locator("#messages > li");

  // Create a channel with the chosen visibility; wait for the open stream.
  const create = async (visibility) => {
    await page.locator(`input[name=visibility][value=${visibility}]`).check();
    const streamRequest = page.waitForRequest((r) => r.resourceType() === "eventsource", { timeout: WAIT_MS });
    const refused = status.filter({ hasText: /^Could not/ }).waitFor({ timeout: WAIT_MS }).then(() => null, () => null);
    await createButton.click();
    // Whichever comes first: the stream opens, or the page says creating failed.
    const stream = await Promise.race([streamRequest.catch(() => null), refused]);
    if (!stream) fail(`${visibility}: creating a channel opened no stream (status: "${await status.textContent()}")`);
    await streamState.filter({ hasText: /^connected$/ }).waitFor({ timeout: WAIT_MS }).catch(async () =>
      fail(`${visibility}: stream state is "${await streamState.textContent()}", not "connected", after ${WAIT_MS} ms (status: "${await status.textContent()}")`));
    const channelUrl = (await page.locator("#channel-url").textContent()).trim();
    const expected = new RegExp(`/channel/v1/${visibility}/[0-9a-f-]{36}$`, "i");
    if (!expected.test(channelUrl)) fail(`${visibility}: channel URL ${channelUrl} does not look like …/channel/v1/${visibility}/{uuid}`);
    if (!/^chp_/.test((await page.locator("#publish-token").textContent()).trim())) fail(`${visibility}: no chp_ publish token shown`);
    allowedOrigins.add(new URL(channelUrl).origin);
    if ((await items.count()) !== 0) fail(`${visibility}: #messages is not empty for a new channel`);
    step(`${visibility} channel ${channelUrl}, stream connected (${stream.url().replace(/token=[^&]+/, "token=…")})`);
    return { channelUrl, streamUrl: stream.url() };
  };

  // Publish through the form and wait until the API accepted it (the form
  // clears the input only after a successful answer).
  const publish = async (text) => {
    await message.fill(text);
    await page.getByRole("button", { name: "Publish" }).click();
    await status.filter({ hasText: /^Published / }).waitFor({ timeout: WAIT_MS }).catch(async () =>
      fail(`publishing "${text}": status is "${await status.textContent()}" after ${WAIT_MS} ms`));
    if ((await message.inputValue()) !== "") fail(`publishing "${text}": the input was not cleared`);
    await status.evaluate((el) => { el.textContent = ""; }); // so the next wait sees a new answer
    step(`published "${text}"`);
  };

  // The message texts in #messages (each <li> is the text, then a <time>).
  const shown = () => items.evaluateAll((lis) => lis.map((li) => ({
    text: [...li.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.nodeValue).join("").trim(),
    id: li.dataset.id ?? null,
    time: li.querySelector("time")?.getAttribute("datetime") ?? null,
  })));

  // Poll the DOM until `want` messages are shown (bounded).
  const waitForMessages = async (want, label) => {
    const deadline = Date.now() + WAIT_MS;
    let got = [];
    while (Date.now() < deadline) {
      got = await shown();
      if (got.length >= want.length) break;
      await page.waitForTimeout(100);
    }
    const texts = got.map((m) => m.text);
    if (JSON.stringify(texts) !== JSON.stringify(want)) {
      fail(`${label}: #messages shows ${JSON.stringify(texts)} after ${WAIT_MS} ms, expected ${JSON.stringify(want)} in this order (stream state: "${await streamState.textContent()}")`);
    }
    for (const m of got) {
      if (!m.id || !UUID.test(m.id)) fail(`${label}: <li> "${m.text}" has data-id ${JSON.stringify(m.id)}, not a UUID`);
      if (!m.time || Number.isNaN(Date.parse(m.time))) fail(`${label}: <li> "${m.text}" has no <time datetime>`);
    }
    if (new Set(got.map((m) => m.id)).size !== got.length) fail(`${label}: duplicate data-id in #messages`);
    step(`${label}: #messages shows ${JSON.stringify(texts)} in order, ids ${got.map((m) => m.id).join(", ")}`);
    return got;
  };

  // --- 1. a public channel, two messages in order ---
  const pub = await create("public");
  if (/[?&]token=/.test(pub.streamUrl)) fail("public channel: the stream URL carries a token");
  await publish("first message");
  await publish("second message");
  await waitForMessages(["first message", "second message"], "public channel");
  await assertClean("after the public channel");

  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  const png = checkPng(screenshot);
  step(`screenshot ${screenshot}: ${png.width}x${png.height}, ${png.size} bytes`);

  // --- commands to copy ---
  const commands = (action) => page.locator(`.commands[data-action="${action}"] .command`).evaluateAll((rows) =>
    rows.map((row) => ({ tool: row.dataset.tool, text: row.querySelector("code").textContent })));
  const pubId = pub.channelUrl.split("/").pop();
  const pubToken = (await page.locator("#publish-token").textContent()).trim();
  const cliPrefix = restUrl.replace(/\/$/, "") === "http://127.0.0.1:8081" ? "" : `CHANTRA_URL=${restUrl.replace(/\/$/, "")} `;
  const expectCommands = async (action, want) => {
    const got = await commands(action);
    const tools = got.map((c) => c.tool);
    if (!tools.includes("curl") || !tools.includes("chantra")) fail(`${action}: commands are ${JSON.stringify(got)}, want a curl and a chantra one`);
    for (const [tool, pattern] of want) {
      if (!got.some((c) => c.tool === tool && pattern.test(c.text))) fail(`${action}: no ${tool} command matching ${pattern}: ${JSON.stringify(got)}`);
    }
    step(`${action}: ${got.map((c) => c.text).join("  |  ")}`);
    return got;
  };
  const escaped = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  await expectCommands("create", [
    ["curl", new RegExp(`^curl -s -X POST ${escaped(restUrl.replace(/\/$/, ""))}/v1/channels`)],
    ["chantra", new RegExp(`^${escaped(cliPrefix)}chantra channel create$`)],
  ]);
  await message.fill("it's copied");
  const publishCommands = await expectCommands("publish", [
    // The message is shell-quoted: 'it'\''s copied'.
    ["curl", new RegExp(`/v1/channels/${pubId}/publish -H 'X-Publish-Token: ${pubToken}' -H 'content-type: text/plain; charset=utf-8' --data-binary ${escaped(String.raw`'it'\''s copied'`)}$`)],
    ["chantra", new RegExp(`^${escaped(cliPrefix)}CHANTRA_PUBLISH_TOKEN=${pubToken} chantra pub ${pubId} ${escaped(String.raw`'it'\''s copied'`)}$`)],
  ]);
  await message.fill("");
  await expectCommands("read", [
    ["curl", new RegExp(`^curl -N ${escaped(pub.channelUrl)}$`)],
    ["chantra", new RegExp(`^chantra sub ${escaped(pub.channelUrl)}$`)],
  ]);
  await expectCommands("delete", [
    ["curl", new RegExp(`^curl -s -X DELETE .*/v1/channels/${pubId} -H 'X-Publish-Token: ${pubToken}'$`)],
    ["chantra", new RegExp(`chantra channel delete ${pubId}$`)],
  ]);
  // A copy button puts exactly its command on the clipboard.
  const chantraPublish = publishCommands.find((c) => c.tool === "chantra").text;
  await message.fill("it's copied");
  const copyButton = page.locator('.commands[data-action="publish"] .command[data-tool="chantra"] button.copy');
  await copyButton.click();
  await page.locator('.commands[data-action="publish"] .command[data-tool="chantra"] button.copy', { hasText: "Copied" })
    .waitFor({ timeout: WAIT_MS }).catch(async () => fail(`copy button says "${await copyButton.textContent()}", not "Copied"`));
  const clipboard = await page.evaluate(() => navigator.clipboard.readText());
  if (clipboard !== chantraPublish) fail(`the clipboard holds ${JSON.stringify(clipboard)}, not the shown command ${JSON.stringify(chantraPublish)}`);
  step(`copy button: the clipboard holds ${JSON.stringify(clipboard)}`);
  await message.fill("");

  // A JSON body that does not parse is refused in the page (the server would answer 400 invalid_json).
  await page.locator("input[name=format][value=json]").check();
  await message.fill("{not json");
  await page.getByRole("button", { name: "Publish" }).click();
  await status.filter({ hasText: /^Not a JSON document/ }).waitFor({ timeout: WAIT_MS }).catch(async () =>
    fail(`an invalid JSON body: status is "${await status.textContent()}"`));
  await expectCommands("publish", [["curl", /-H 'content-type: application\/json' --data-binary '\{not json'$/], ["chantra", / --content-type application\/json$/]]);
  await message.fill("");
  await page.locator("input[name=format][value=text]").check();
  step("an invalid JSON body is refused before it is sent");

  // Deleting the channel ends its stream with `deleted`.
  await page.getByRole("button", { name: "Delete the channel" }).click();
  await streamState.filter({ hasText: /^channel deleted$/ }).waitFor({ timeout: WAIT_MS }).catch(async () =>
    fail(`after deleting: stream state is "${await streamState.textContent()}", not "channel deleted" (status: "${await status.textContent()}")`));
  if (!(await page.locator("#send").isDisabled())) fail("after deleting: publishing is still enabled");
  step("deleted: the stream said so and the page stopped publishing");
  await assertClean("after deleting the public channel");

  // --- 2. a private channel, read with ?token= ---
  const priv = await create("private");
  const token = new URL(priv.streamUrl).searchParams.get("token");
  if (!token || !/^chr_/.test(token)) fail(`private channel: the stream URL has no chr_ read token in ?token= (${priv.streamUrl.replace(/token=[^&]+/, "token=…")})`);
  await publish("private message");
  await waitForMessages(["private message"], "private channel");
  await assertClean("after the private channel");
  await page.screenshot({ path: privateShot, fullPage: true });
  const png2 = checkPng(privateShot);
  step(`screenshot ${privateShot}: ${png2.width}x${png2.height}, ${png2.size} bytes`);
  const readToken = (await page.locator("#read-token").textContent()).trim();
  await expectCommands("read", [
    ["curl", new RegExp(`^curl -N ${escaped(priv.channelUrl)} -H 'X-Read-Token: ${readToken}'$`)],
    ["chantra", new RegExp(`^CHANTRA_READ_TOKEN=${readToken} chantra sub ${escaped(priv.channelUrl)}$`)],
  ]);

  // Revoking the read token ends its stream with `revoked`.
  await page.getByRole("button", { name: "Revoke the read token" }).click();
  await streamState.filter({ hasText: /^read access revoked/ }).waitFor({ timeout: WAIT_MS }).catch(async () =>
    fail(`after revoking: stream state is "${await streamState.textContent()}", not "read access revoked" (status: "${await status.textContent()}")`));
  await expectCommands("revoke", [
    ["curl", /\/read-grants\/[0-9a-f-]{36}\/revoke -H 'X-Publish-Token: chp_[^']+'$/],
    ["chantra", /chantra grant revoke [0-9a-f-]{36} [0-9a-f-]{36}$/],
  ]);
  step(`revoked: stream state "${await streamState.textContent()}"`);
  await assertClean("after revoking the private channel's read token");

  // --- phone width: nothing overflows horizontally ---
  const PHONE_WIDTH = 390;
  const phone = await browser.newContext({ viewport: { width: PHONE_WIDTH, height: 844 }, colorScheme: "light", isMobile: true, hasTouch: true });
  const small = await phone.newPage();
  small.setDefaultTimeout(WAIT_MS);
  small.on("pageerror", (err) => problems.push(`uncaught page error (390 px): ${err.message}`));
  small.on("request", (req) => requests.push(req.url()));
  const overflow = async (label) => {
    const found = await small.evaluate(() => {
      const width = window.innerWidth;
      const wide = [];
      for (const el of document.body.querySelectorAll("*")) {
        const box = el.getBoundingClientRect();
        if (box.width === 0 && box.height === 0) continue;
        if (box.right > width + 0.5 || box.width > width + 0.5) {
          const name = el.tagName.toLowerCase() + (el.id ? `#${el.id}` : "") + (typeof el.className === "string" && el.className ? `.${el.className.split(" ")[0]}` : "");
          wide.push(`${name} ${Math.round(box.left)}..${Math.round(box.right)} px: ${(el.textContent || "").trim().slice(0, 50)}`);
        }
      }
      return { width, scrollWidth: document.scrollingElement.scrollWidth, wide };
    });
    // A phone browser zooms out to fit a page wider than the screen: then the layout is wider than 390 px.
    if (found.width !== PHONE_WIDTH) fail(`${label}: the layout is ${found.width} px wide, not ${PHONE_WIDTH} (the page was zoomed out to fit something wider)`);
    if (found.scrollWidth > found.width) fail(`${label} at ${found.width} px: the page is ${found.scrollWidth} px wide (scrolls sideways); too wide:\n    ${found.wide.slice(0, 10).join("\n    ")}`);
    if (found.wide.length) fail(`${label} at ${found.width} px: ${found.wide.length} element(s) wider than the viewport:\n    ${found.wide.slice(0, 10).join("\n    ")}`);
    step(`${label} at ${found.width} px: nothing overflows (scrollWidth ${found.scrollWidth})`);
  };
  for (const path of ["/", "/docs"]) {
    await small.goto(new URL(path, landing).href, { waitUntil: "load" });
    await overflow(path);
  }
  await small.screenshot({ path: resolve(dirname(screenshot), "docs-phone.png"), fullPage: true });
  await small.goto(new URL("/playground", landing).href, { waitUntil: "load" });
  await overflow("/playground (empty)");
  await small.locator("input[name=visibility][value=private]").check();
  await small.getByRole("button", { name: "Create a channel" }).click();
  await small.locator("#stream-state").filter({ hasText: /^connected$/ }).waitFor({ timeout: WAIT_MS });
  await small.locator("#message").fill("a message long enough to make the publish commands wrap on a phone");
  await overflow("/playground (private channel, commands shown)");
  await small.screenshot({ path: resolve(dirname(screenshot), "playground-phone.png"), fullPage: true });
  await phone.close();

  // --- 3. nothing left this machine's roles ---
  const foreign = [...new Set(requests.filter((u) => /^https?:/.test(u) && !allowedOrigins.has(new URL(u).origin)))];
  if (foreign.length) fail(`requests to other origins (the page must work offline):\n    ${foreign.join("\n    ")}`);
  step(`${requests.length} requests, all to ${[...allowedOrigins].join(", ")}`);

  closing = true;
  await context.close();
} catch (err) {
  fail(err?.stack || String(err));
} finally {
  await browser?.close().catch(() => {});
}

console.log(`playground: passed in ${((Date.now() - started) / 1000).toFixed(1)} s (public: 2 messages in order, commands + copy, deleted; private: 1 message over ?token=, revoked; 390 px: no overflow)`);
console.log("1 passed, 0 failed");
