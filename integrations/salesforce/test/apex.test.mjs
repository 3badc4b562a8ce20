// No org is reachable from CI: every Apex class and trigger must at least parse as Apex.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { SOURCE, apexSyntaxErrors, filesUnder, read, shortName } from "./kit.mjs";

const classes = filesUnder(SOURCE, ".cls");
const triggers = filesUnder(SOURCE, ".trigger");

describe("Apex sources parse", () => {
  test("the kit has its classes and its trigger", () => {
    const names = [...classes, ...triggers].map(shortName).map((path) => path.split("/").pop());
    for (const expected of [
      "UnsubscribeGate.cls",
      "CheckMarketoUnsubscribes.cls",
      "EmailMessageUnsubscribeGuard.cls",
      "UnsubscribeGateAfterSendCheck.cls",
      "UnsubscribeGateMock.cls",
      "UnsubscribeGateTest.cls",
      "CheckMarketoUnsubscribesTest.cls",
      "EmailMessageUnsubscribeGuardTest.cls",
      "EmailMessageUnsubscribeGate.trigger",
    ]) {
      assert.ok(names.includes(expected), `${expected} is missing`);
    }
  });

  for (const path of classes) {
    test(shortName(path), () => {
      assert.deepEqual(apexSyntaxErrors(read(path), "class"), []);
    });
  }
  for (const path of triggers) {
    test(shortName(path), () => {
      assert.deepEqual(apexSyntaxErrors(read(path), "trigger"), []);
    });
  }

  test("a syntax error is reported, so the checks above can fail", () => {
    assert.notDeepEqual(apexSyntaxErrors("public class Broken { void run() { Integer x = ; } }", "class"), []);
    assert.notDeepEqual(apexSyntaxErrors("public class Broken { String s = 'bad \\q escape'; }", "class"), []);
    assert.notDeepEqual(apexSyntaxErrors("trigger T on EmailMessage (before insert) { if ( }", "trigger"), []);
  });
});

describe("Apex the gate and Salesforce rely on", () => {
  const gate = read(`${SOURCE}/classes/UnsubscribeGate.cls`);
  const action = read(`${SOURCE}/classes/CheckMarketoUnsubscribes.cls`);
  const afterSend = read(`${SOURCE}/classes/UnsubscribeGateAfterSendCheck.cls`);
  const trigger = read(`${SOURCE}/triggers/EmailMessageUnsubscribeGate.trigger`);

  test("the client posts to the Named Credential's callout path", () => {
    assert.match(gate, /'callout:Unsubscribe_Gate\/v1\/hooks\/salesforce'/);
  });

  test("the client signs the Standard Webhooks way and sends the String it signed", () => {
    assert.match(gate, /Crypto\.generateMac\('hmacSHA256'/);
    assert.match(gate, /webhookId \+ '\.' \+ timestamp \+ '\.' \+ body/);
    for (const header of ["webhook-id", "webhook-timestamp", "webhook-signature"]) {
      assert.match(gate, new RegExp(`setHeader\\('${header}'`));
    }
    assert.match(gate, /request\.setBody\(body\)/);
  });

  test("the Flow action is an invocable method that may call out", () => {
    assert.match(action, /@InvocableMethod\([^)]*label='Check Marketo unsubscribes'[^)]*callout=true/s);
  });

  test("the Queueable may call out, and the trigger runs before and after insert", () => {
    assert.match(afterSend, /implements Queueable, Database\.AllowsCallouts/);
    assert.match(trigger, /on EmailMessage \(before insert, after insert\)/);
  });
});
