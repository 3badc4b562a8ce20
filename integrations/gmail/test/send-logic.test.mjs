// The Gmail send logic (send-guard.js + gate-client.js, as the content script and service worker use them)
// against a live gate (`gateway demo` on free ports), with a stand-in compose view.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { freePort, startGate, SUBSCRIBED, UNSUBSCRIBED } from "../../test-support/live-gate.mjs";
import { startFixedGate, startSilentGate, startTap } from "../../test-support/servers.mjs";
import { DEFAULTS, loadSettings } from "../src/config.js";
import { checkDraft } from "../src/gate-client.js";
import { guardSends } from "../src/send-guard.js";
import { StandInCompose } from "./standin/compose-view.mjs";

const NOT_ASKED = /could not be made/;
let gate;
let gmailKey;

before(async () => {
  gate = await startGate({ keys: { "gmail-extension": ["gmail"], "outlook-addin": ["outlook"] } });
  gmailKey = gate.keys["gmail-extension"];
});
after(async () => { await gate?.stop(); });

const settingsFor = (url, overrides = {}) => ({ ...DEFAULTS, url, key: gmailKey, ...overrides });

/** A compose window with the guard on it; `click()` is the rep's Send, resolving once the check is done. */
function protectedCompose(draft, settings) {
  const view = new StandInCompose(draft);
  const notices = [];
  let cleared = 0;
  const guard = guardSends(view, {
    ask: (asked) => checkDraft(settings, asked),
    showDenied: (message) => notices.push(message),
    clearDenied: () => { cleared += 1; },
  });
  return {
    view, notices, cleared: () => cleared,
    click: () => { view.send(); return guard.pending(); },
    pending: () => guard.pending(),
  };
}

describe("against the live gate", () => {
  test("a subscribed recipient: checked, then sent once", async () => {
    const compose = protectedCompose({ to: [SUBSCRIBED[0]] }, settingsFor(gate.url));
    assert.deepEqual(await compose.click(), { allow: true });
    assert.deepEqual(compose.view.sent, [{ to: [SUBSCRIBED[0]], cc: [], bcc: [] }]);
    assert.deepEqual(compose.notices, []);
  });

  test("an unsubscribed recipient: not sent, and the rep sees the gate's reason", async () => {
    const compose = protectedCompose({ to: [UNSUBSCRIBED[0]] }, settingsFor(gate.url));
    await compose.click();
    assert.deepEqual(compose.view.sent, []);
    assert.equal(compose.notices.length, 1);
    assert.match(compose.notices[0], /jane@example\.com has unsubscribed/);
  });

  test("To, Cc and Bcc go to the gate in one request; one unsubscribed in Cc stops the send", async () => {
    const tap = await startTap(gate.url);
    try {
      const compose = protectedCompose({
        to: [SUBSCRIBED[0], SUBSCRIBED[1]], cc: [UNSUBSCRIBED[2]], bcc: ["new-prospect@example.org"], subject: "Intro",
      }, settingsFor(tap.url));
      await compose.click();
      assert.deepEqual(compose.view.sent, []);
      assert.match(compose.notices[0], /dup@example\.com/);
      assert.equal(tap.exchanges.length, 1);
      const [{ path, headers, body }] = tap.exchanges;
      assert.equal(path, "/v1/hooks/email-client");
      assert.equal(headers.authorization, `Bearer ${gmailKey}`);
      assert.deepEqual(JSON.parse(body), {
        client: "gmail", sender: "rep@acme.example", subject: "Intro",
        to: [{ emailAddress: SUBSCRIBED[0], displayName: "bob" }, { emailAddress: SUBSCRIBED[1], displayName: "alice" }],
        cc: [{ emailAddress: UNSUBSCRIBED[2], displayName: "dup" }],
        bcc: [{ emailAddress: "new-prospect@example.org", displayName: "new-prospect" }],
      });
    } finally {
      await tap.close();
    }
  });

  test("several subscribed recipients in To, Cc and Bcc: sent", async () => {
    const compose = protectedCompose({ to: [SUBSCRIBED[0]], cc: [SUBSCRIBED[1]], bcc: ["Someone <New@Example.org>"] }, settingsFor(gate.url));
    assert.deepEqual(await compose.click(), { allow: true });
    assert.equal(compose.view.sent.length, 1);
  });

  test("a second click while the check runs starts no second check, and the message goes out once", async () => {
    const tap = await startTap(gate.url);
    try {
      const compose = protectedCompose({ to: [SUBSCRIBED[0]] }, settingsFor(tap.url));
      const first = compose.click();
      compose.view.send(); // impatient rep
      await first;
      assert.equal(tap.exchanges.length, 1);
      assert.equal(compose.view.sent.length, 1);
    } finally {
      await tap.close();
    }
  });

  test("recipients changed while the check ran are checked again before anything goes out", async () => {
    const compose = protectedCompose({ to: [SUBSCRIBED[0]] }, settingsFor(gate.url));
    const first = compose.click();
    compose.view.to = [UNSUBSCRIBED[0]]; // the allow was for bob; jane is whom the guard's send would reach
    assert.deepEqual(await first, { allow: true });
    const recheck = compose.pending(); // started by the guard's own send, whose recipients are not the allowed ones
    assert.ok(recheck, "the changed recipients are checked");
    assert.equal((await recheck).allow, false);
    assert.deepEqual(compose.view.sent, []);
    assert.match(compose.notices[0], /jane@example\.com/);
  });

  test("a denied rep who fixes the recipients can send: the old reason goes away", async () => {
    const compose = protectedCompose({ to: [UNSUBSCRIBED[0], SUBSCRIBED[0]] }, settingsFor(gate.url));
    await compose.click();
    assert.equal(compose.notices.length, 1);
    compose.view.to = [SUBSCRIBED[0]];
    assert.deepEqual(await compose.click(), { allow: true });
    assert.equal(compose.view.sent.length, 1);
    assert.ok(compose.cleared() >= 2);
  });

  test("a key limited to Outlook is refused: not sent, with a message that the check could not be made", async () => {
    const compose = protectedCompose({ to: [SUBSCRIBED[0]] }, settingsFor(gate.url, { key: gate.keys["outlook-addin"] }));
    await compose.click();
    assert.deepEqual(compose.view.sent, []);
    assert.match(compose.notices[0], NOT_ASKED);
    assert.match(compose.notices[0], /403/);
  });
});

describe("when the gate cannot be asked", () => {
  test("gate down, failClosed: not sent, with a message that the check could not be made", async () => {
    const compose = protectedCompose({ to: [SUBSCRIBED[0]] }, settingsFor(`http://127.0.0.1:${await freePort()}`));
    await compose.click();
    assert.deepEqual(compose.view.sent, []);
    assert.match(compose.notices[0], NOT_ASKED);
    assert.match(compose.notices[0], /could not be reached/);
  });

  test("gate down, failClosed false: sent unchecked", async () => {
    const compose = protectedCompose({ to: [UNSUBSCRIBED[0]] }, settingsFor(`http://127.0.0.1:${await freePort()}`, { failClosed: false }));
    await compose.click();
    assert.equal(compose.view.sent.length, 1);
  });

  test("a gate slower than timeoutMs: the guard stops waiting, does not send, and hangs up", { timeout: 30_000 }, async () => {
    const silent = await startSilentGate();
    try {
      const compose = protectedCompose({ to: [SUBSCRIBED[0]] }, settingsFor(silent.url, { timeoutMs: 300 }));
      const verdict = await compose.click();
      assert.equal(verdict.allow, false);
      assert.match(compose.notices[0], /no answer within 0\.3 s/);
      await silent.abandoned;
      assert.deepEqual(compose.view.sent, []);
    } finally {
      await silent.close();
    }
  });

  test("no URL or key set up: not sent, and the message says so", async () => {
    const compose = protectedCompose({ to: [SUBSCRIBED[0]] }, { ...DEFAULTS });
    await compose.click();
    assert.deepEqual(compose.view.sent, []);
    assert.match(compose.notices[0], /no gate URL or key/);
  });

  test("an answer without a decision counts as the gate not asked", async () => {
    const odd = await startFixedGate(200, { ok: true });
    try {
      const compose = protectedCompose({ to: [SUBSCRIBED[0]] }, settingsFor(odd.url));
      await compose.click();
      assert.match(compose.notices[0], NOT_ASKED);
    } finally {
      await odd.close();
    }
  });
});

describe("settings", () => {
  const area = (values, fails = false) => ({ get: async () => { if (fails) throw new Error("no policy store"); return values; } });

  test("the admin's policy wins over the options page, field by field", async () => {
    const { settings, managed } = await loadSettings({
      managed: area({ url: "https://gate.acme.example", key: "policy-key" }),
      sync: area({ url: "https://old.example", key: "rep-key", timeoutMs: 2500 }),
    });
    assert.deepEqual(settings, { url: "https://gate.acme.example", key: "policy-key", timeoutMs: 2500, failClosed: true });
    assert.deepEqual(managed, ["url", "key"]);
  });

  test("without a policy store the options page's values are used", async () => {
    const { settings, managed } = await loadSettings({ managed: area({}, true), sync: area({ url: "https://gate.example", key: "k", failClosed: false }) });
    assert.deepEqual(settings, { url: "https://gate.example", key: "k", timeoutMs: 4000, failClosed: false });
    assert.deepEqual(managed, []);
  });
});
