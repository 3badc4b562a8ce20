// The Smart Alerts handler against a live gate (`gateway demo` on free ports), and against a gate that is
// down, one that never answers and one that answers with an error.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { freePort, startGate, SUBSCRIBED, UNSUBSCRIBED } from "../../test-support/live-gate.mjs";
import { startFixedGate, startHeldGate, startSilentGate, startTap } from "../../test-support/servers.mjs";
import { ADDRESS, outlookWithDraft } from "./office.mjs";

const NOT_ASKED = /could not be made/;
let gate;
let outlookKey;

before(async () => {
  gate = await startGate({ keys: { "outlook-addin": ["outlook"], "gmail-addin": ["gmail"] } });
  outlookKey = gate.keys["outlook-addin"];
});
after(async () => { await gate?.stop(); });

const configFor = (url, overrides = {}) => ({ url, key: outlookKey, timeoutMs: 4000, failClosed: true, ...overrides });

describe("against the live gate", () => {
  test("a subscribed recipient: the send goes out", async () => {
    const outlook = outlookWithDraft({ to: [ADDRESS(SUBSCRIBED[0], "Bob")] }, configFor(gate.url));
    assert.deepEqual(await outlook.sendAndSettle(), [{ allowEvent: true }]);
  });

  test("an unsubscribed recipient: blocked with the gate's reason", async () => {
    const outlook = outlookWithDraft({ to: [ADDRESS(UNSUBSCRIBED[0], "Jane")] }, configFor(gate.url));
    const [completed, ...more] = await outlook.sendAndSettle();
    assert.equal(more.length, 0, "event.completed is called exactly once");
    assert.equal(completed.allowEvent, false);
    assert.match(completed.errorMessage, /jane@example\.com has unsubscribed/);
    assert.ok(completed.errorMessage.length <= 500);
  });

  test("recipients in To, Cc and Bcc go to the gate as Office gives them; one unsubscribed in Bcc blocks", async () => {
    const tap = await startTap(gate.url);
    try {
      const draft = {
        to: [ADDRESS("Bob@Example.com", "Bob"), ADDRESS(SUBSCRIBED[1], "Alice", "user")],
        cc: [ADDRESS("sales-team@acme.example", "Sales team", "distributionList")],
        bcc: [ADDRESS(UNSUBSCRIBED[1], "Unsub")],
        subject: "Quarterly update",
        from: "rep@acme.example",
      };
      const outlook = outlookWithDraft(draft, configFor(tap.url));
      const [completed] = await outlook.sendAndSettle();
      assert.equal(completed.allowEvent, false);
      assert.match(completed.errorMessage, /unsub@example\.com/);

      assert.equal(tap.exchanges.length, 1, "one round trip");
      const [{ path, headers, body, answer }] = tap.exchanges;
      assert.equal(path, "/v1/hooks/email-client");
      assert.equal(headers.authorization, `Bearer ${outlookKey}`);
      assert.equal(headers["content-type"], "application/json");
      assert.deepEqual(JSON.parse(body), {
        client: "outlook", sender: "rep@acme.example", subject: "Quarterly update",
        to: draft.to, cc: draft.cc, bcc: draft.bcc,
      });
      const checked = JSON.parse(answer).recipients.map(({ email, type, decision }) => [email, type, decision]);
      assert.deepEqual(checked, [
        ["bob@example.com", "to", "allow"], ["alice@example.com", "to", "allow"],
        ["sales-team@acme.example", "cc", "allow"], ["unsub@example.com", "bcc", "deny"],
      ]);
    } finally {
      await tap.close();
    }
  });

  test("several subscribed recipients in To, Cc and Bcc: the send goes out", async () => {
    const outlook = outlookWithDraft({
      to: [ADDRESS(SUBSCRIBED[0])], cc: [ADDRESS(SUBSCRIBED[1])], bcc: [ADDRESS("new-prospect@example.org")],
    }, configFor(gate.url));
    assert.deepEqual(await outlook.sendAndSettle(), [{ allowEvent: true }]);
  });

  test("a key refused by the gate (limited to Gmail) blocks with a message that the check could not be made", async () => {
    const outlook = outlookWithDraft({ to: [ADDRESS(SUBSCRIBED[0])] }, configFor(gate.url, { key: gate.keys["gmail-addin"] }));
    const [completed, ...more] = await outlook.sendAndSettle();
    assert.equal(more.length, 0);
    assert.equal(completed.allowEvent, false);
    assert.match(completed.errorMessage, NOT_ASKED);
    assert.match(completed.errorMessage, /403/);
  });

  test("an unknown key with failClosed false: the send goes out unchecked", async () => {
    const outlook = outlookWithDraft({ to: [ADDRESS(UNSUBSCRIBED[0])] }, configFor(gate.url, { key: "not-a-key", failClosed: false }));
    assert.deepEqual(await outlook.sendAndSettle(), [{ allowEvent: true }]);
  });
});

describe("when the gate cannot be asked", () => {
  test("gate down, failClosed: blocked with a message that the check could not be made", async () => {
    const nobody = `http://127.0.0.1:${await freePort()}`;
    const outlook = outlookWithDraft({ to: [ADDRESS(SUBSCRIBED[0])] }, configFor(nobody));
    const [completed, ...more] = await outlook.sendAndSettle();
    assert.equal(more.length, 0);
    assert.equal(completed.allowEvent, false);
    assert.match(completed.errorMessage, NOT_ASKED);
    assert.match(completed.errorMessage, /the gate could not be reached/);
  });

  test("gate down, failClosed false: the send goes out", async () => {
    const nobody = `http://127.0.0.1:${await freePort()}`;
    const outlook = outlookWithDraft({ to: [ADDRESS(UNSUBSCRIBED[0])] }, configFor(nobody, { failClosed: false }));
    assert.deepEqual(await outlook.sendAndSettle(), [{ allowEvent: true }]);
  });

  test("a gate slower than timeoutMs: the handler stops waiting, completes once, and hangs up", { timeout: 30_000 }, async () => {
    const silent = await startSilentGate();
    try {
      const outlook = outlookWithDraft({ to: [ADDRESS(SUBSCRIBED[0])] }, configFor(silent.url, { timeoutMs: 300 }));
      const completed = await outlook.send(); // the gate has not answered, and never will
      assert.equal(completed.allowEvent, false);
      assert.match(completed.errorMessage, NOT_ASKED);
      assert.match(completed.errorMessage, /no answer within 0\.3 s/);
      await silent.abandoned; // the request was aborted, not left open
      assert.equal(silent.requests(), 1);
      assert.equal(outlook.completions.length, 1, "event.completed is called exactly once");
    } finally {
      await silent.close();
    }
  });

  test("a slow gate with failClosed false: the send goes out when timeoutMs has passed", { timeout: 30_000 }, async () => {
    const silent = await startSilentGate();
    try {
      const outlook = outlookWithDraft({ to: [ADDRESS(UNSUBSCRIBED[0])] }, configFor(silent.url, { timeoutMs: 300, failClosed: false }));
      assert.deepEqual(await outlook.send(), { allowEvent: true });
      await silent.abandoned;
      assert.equal(outlook.completions.length, 1);
    } finally {
      await silent.close();
    }
  });

  test("without AbortController, an answer that comes after timeoutMs changes nothing: completed once", { timeout: 30_000 }, async () => {
    const late = await startHeldGate(200, { decision: "allow", reason: "too late" });
    try {
      const outlook = outlookWithDraft({ to: [ADDRESS(UNSUBSCRIBED[0])] }, configFor(late.url, { timeoutMs: 300 }), { withoutAbortController: true });
      const { completed, work } = outlook.sendKeepingWork();
      await late.firstArrived;
      const first = await completed; // the timeout, while the gate still holds the request
      assert.equal(first.allowEvent, false);
      assert.match(first.errorMessage, /no answer within 0\.3 s/);
      await late.release(); // now the gate says allow
      await work; // the handler has read that answer
      assert.equal(outlook.completions.length, 1, "event.completed is called exactly once");
    } finally {
      await late.close();
    }
  });

  test("an answer without a decision counts as the gate not asked", async () => {
    const odd = await startFixedGate(200, { status: "ok" });
    try {
      const outlook = outlookWithDraft({ to: [ADDRESS(SUBSCRIBED[0])] }, configFor(odd.url));
      const [completed] = await outlook.sendAndSettle();
      assert.equal(completed.allowEvent, false);
      assert.match(completed.errorMessage, NOT_ASKED);
    } finally {
      await odd.close();
    }
  });

  test("Outlook failing to read the recipients blocks (failClosed) rather than sending unchecked", async () => {
    const outlook = outlookWithDraft({ to: [ADDRESS(SUBSCRIBED[0])], failing: "bcc" }, configFor(gate.url));
    const [completed] = await outlook.sendAndSettle();
    assert.equal(completed.allowEvent, false);
    assert.match(completed.errorMessage, /could not read bcc/);
  });
});

describe("what the rep sees", () => {
  test("a reason longer than Smart Alerts' 500 characters is cut to 500", async () => {
    const wordy = await startFixedGate(200, { decision: "deny", reason_code: "unsubscribed", reason: `Not sent: ${"x".repeat(700)}` });
    try {
      const outlook = outlookWithDraft({ to: [ADDRESS(UNSUBSCRIBED[0])] }, configFor(wordy.url));
      const [completed] = await outlook.sendAndSettle();
      assert.equal(completed.errorMessage.length, 500);
      assert.ok(completed.errorMessage.startsWith("Not sent: xxx"));
      assert.ok(completed.errorMessage.endsWith("\u2026"));
    } finally {
      await wordy.close();
    }
  });

  test("a draft with no recipients is not sent to the gate", async () => {
    const counting = await startFixedGate(200, { decision: "deny", reason: "should not be asked" });
    try {
      const outlook = outlookWithDraft({}, configFor(counting.url));
      assert.deepEqual(await outlook.sendAndSettle(), [{ allowEvent: true }]);
      assert.equal(counting.requests(), 0);
    } finally {
      await counting.close();
    }
  });
});
