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
//   3. fails on any console error, uncaught page error, CSP violation, failed
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

console.log(`playground: passed in ${((Date.now() - started) / 1000).toFixed(1)} s (public: 2 messages in order; private: 1 message over ?token=)`);
console.log("1 passed, 0 failed");
