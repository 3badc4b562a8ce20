// The extension in Debian's Chromium: the unpacked build loads, its service worker starts without errors, and
// on a stand-in compose page the extension stops a send to an unsubscribed address and shows the gate's reason
// (screenshot for the README), and lets a send to a subscribed address go out. The service worker calls a live
// gate that lists the extension's origin in GATEWAY_CORS_ORIGINS.
import assert from "node:assert/strict";
import { createHash, generateKeyPairSync } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { startGate, SUBSCRIBED, UNSUBSCRIBED } from "../../test-support/live-gate.mjs";
import { build, DIST, KIT } from "../scripts/build.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const SCREENSHOT = join(KIT, "..", "..", "docs", "images", "gmail-extension-deny.png");
const DEADLINE_MS = 30_000;
const temporary = [];

function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temporary.push(dir);
  return dir;
}

/** A key pinning the extension's id, as a Chrome Web Store or self-hosted build has one: {key, id}. */
function extensionKey() {
  const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const der = publicKey.export({ type: "spki", format: "der" });
  const hex = createHash("sha256").update(der).digest("hex").slice(0, 32);
  return { key: der.toString("base64"), id: [...hex].map((digit) => String.fromCharCode(97 + parseInt(digit, 16))).join("") };
}

async function launch(extensionDir) {
  const profile = tempDir("gmail-kit-profile-");
  mkdirSync(join(profile, "Default"));
  // Developer mode on from the start, so chrome://extensions collects the extension's errors.
  writeFileSync(join(profile, "Default", "Preferences"), JSON.stringify({ extensions: { ui: { developer_mode: true } } }));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: false, // the new headless mode comes from the flag below; extensions need it
    args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run",
      `--disable-extensions-except=${extensionDir}`, `--load-extension=${extensionDir}`],
  });
  const worker = context.serviceWorkers()[0] || await context.waitForEvent("serviceworker", { timeout: DEADLINE_MS });
  return { context, worker, id: new URL(worker.url()).host };
}

/** chrome://serviceworker-internals and chrome://extensions, read until the worker is activated (or not). */
async function workerHealth(context, id) {
  const page = await context.newPage();
  try {
    await page.goto("chrome://serviceworker-internals/");
    const scope = `chrome-extension://${id}/`;
    await page.waitForFunction((scopeUrl) => {
      const text = document.body.innerText;
      const at = text.indexOf(`Scope: ${scopeUrl}`);
      return at >= 0 && /Installation Status: (ACTIVATED|REDUNDANT)/.test(text.slice(at));
    }, scope, { timeout: DEADLINE_MS, polling: 100 });
    const internals = await page.evaluate((scopeUrl) => {
      const text = document.body.innerText;
      return text.slice(text.indexOf(`Scope: ${scopeUrl}`)).split("Scope:")[1];
    }, scope);
    await page.goto("chrome://extensions/");
    const info = await page.evaluate((extensionId) => chrome.developerPrivate.getExtensionInfo(extensionId), id);
    return { internals, state: info.state, manifestErrors: info.manifestErrors, runtimeErrors: info.runtimeErrors, installWarnings: info.installWarnings };
  } finally {
    await page.close();
  }
}

test("Chromium loads the unpacked extension, its service worker starts without errors, and its options page saves", { timeout: 120_000 }, async () => {
  const { context, worker, id } = await launch(DIST);
  const errors = [];
  worker.on("console", (message) => { if (message.type() === "error") errors.push(message.text()); });
  try {
    assert.equal(worker.url(), `chrome-extension://${id}/background.js`);
    const health = await workerHealth(context, id);
    assert.match(health.internals, /Installation Status: ACTIVATED/);
    assert.equal(health.state, "ENABLED");
    assert.deepEqual([health.manifestErrors, health.runtimeErrors, health.installWarnings], [[], [], []]);
    const started = await worker.evaluate(() => ({
      name: chrome.runtime.getManifest().name,
      listening: chrome.runtime.onMessage.hasListeners(),
      schema: chrome.runtime.getManifest().storage.managed_schema,
    }));
    assert.deepEqual(started, { name: "Marketo unsubscribe check for Gmail", listening: true, schema: "managed_schema.json" });

    // The options page: what a rep without a policy fills in lands in chrome.storage.sync, as typed.
    const options = await context.newPage();
    const pageErrors = [];
    options.on("pageerror", (error) => pageErrors.push(error.message));
    const loaded = () => options.waitForFunction(() => document.querySelector("#timeoutMs").value !== "", null, { timeout: DEADLINE_MS });
    await options.goto(`chrome-extension://${id}/options.html`);
    await loaded(); // the settings are read asynchronously
    assert.equal(await options.inputValue("#timeoutMs"), "4000");
    assert.equal(await options.isChecked("#failClosed"), true);
    assert.equal(await options.isHidden("#managed"), true, "no policy: nothing locked");
    await options.fill("#url", "https://gate.acme.example/");
    await options.fill("#key", "gk_from_the_options_page");
    await options.uncheck("#failClosed");
    await options.click("button[type=submit]");
    await options.locator("#status", { hasText: "Saved." }).waitFor({ timeout: DEADLINE_MS });
    const saved = await worker.evaluate(() => chrome.storage.sync.get(null));
    assert.deepEqual(saved, { url: "https://gate.acme.example", key: "gk_from_the_options_page", timeoutMs: 4000, failClosed: false });
    await options.reload();
    await loaded();
    assert.equal(await options.inputValue("#url"), "https://gate.acme.example");
    assert.equal(await options.isChecked("#failClosed"), false);
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

let gate;
let standIn;
let pinned;
let testBuild;

before(async () => {
  pinned = extensionKey();
  testBuild = await build({ outdir: tempDir("gmail-kit-test-build-"), entries: { "standin-content": join(KIT, "test", "standin", "standin-content.js") } });
  const manifest = JSON.parse(readFileSync(join(testBuild, "manifest.json"), "utf8"));
  manifest.key = pinned.key;
  manifest.content_scripts.push({ matches: ["http://127.0.0.1/*"], js: ["standin-content.js"], run_at: "document_end" });
  writeFileSync(join(testBuild, "manifest.json"), JSON.stringify(manifest, null, 2));

  gate = await startGate({ keys: { "gmail-extension": ["gmail"] }, env: { GATEWAY_CORS_ORIGINS: `chrome-extension://${pinned.id}` } });
  const page = readFileSync(join(KIT, "test", "standin", "compose.html"));
  standIn = createServer((request, response) => { response.writeHead(200, { "content-type": "text/html; charset=utf-8" }); response.end(page); });
  await new Promise((resolve) => standIn.listen(0, "127.0.0.1", resolve));
});

after(async () => {
  await gate?.stop();
  await new Promise((resolve) => (standIn ? standIn.close(resolve) : resolve()));
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});

test("on the stand-in compose page: an unsubscribed recipient is stopped with the gate's reason; a subscribed one is sent", { timeout: 180_000 }, async () => {
  const { context, worker, id } = await launch(testBuild);
  try {
    assert.equal(id, pinned.id, "the key pins the extension's id, and so its origin");
    await worker.evaluate((settings) => chrome.storage.sync.set(settings), { url: gate.url, key: gate.keys["gmail-extension"] });

    const page = await context.newPage();
    const pageErrors = [];
    page.on("pageerror", (error) => pageErrors.push(error.message));
    await page.setViewportSize({ width: 640, height: 520 });
    await page.goto(`http://127.0.0.1:${standIn.address().port}/`);

    await page.fill("#to", `Jane <${UNSUBSCRIBED[0]}>`);
    await page.fill("#cc", SUBSCRIBED[0]);
    await page.click("#send");
    const notice = page.locator("unsubscribe-gate-notice [role=alert]");
    await notice.waitFor({ timeout: DEADLINE_MS });
    assert.match(await notice.innerText(), /Marketo unsubscribe check\s+Not sent: jane@example\.com has unsubscribed from email in Marketo/);
    assert.equal(await page.locator("#outbox").innerText(), "", "nothing went out");
    mkdirSync(join(SCREENSHOT, ".."), { recursive: true });
    await page.locator("#compose").screenshot({ path: SCREENSHOT });

    await page.fill("#to", SUBSCRIBED[1]);
    await page.click("#send");
    await page.locator("#outbox", { hasText: "Sent to" }).waitFor({ timeout: DEADLINE_MS });
    assert.equal(await page.locator("#outbox").innerText(), `Sent to ${SUBSCRIBED[1]}, ${SUBSCRIBED[0]}`);
    assert.equal(await notice.count(), 0, "the old reason is gone");
    assert.deepEqual(pageErrors, []);
  } finally {
    await context.close();
  }
});
