// samples/*.json are the exact bodies the Apex sends; the gate's tests post each one signed. Here: that each
// is what JSON.serialize writes (compact, no trailing newline) and has the shape the gate reads.
import assert from "node:assert/strict";
import { basename } from "node:path";
import { describe, test } from "node:test";
import { SAMPLES, SOURCE, filesUnder, read, shortName } from "./kit.mjs";

const WORKFLOWS = ["plugin_send", "single_send", "campaign_send", "multi_select_send", "group_send"];
const ADDRESS_FIELDS = ["ToAddress", "CcAddress", "BccAddress"];
const ID_FIELDS = ["ToIds", "CcIds", "BccIds"];
// apex-*.json: bodies your own Apex builds for UnsubscribeGate.check (fields in the order it sets them), e.g.
// recipients as record ids, which the gate resolves through Salesforce.
const ownApex = (path) => basename(path).startsWith("apex-");
const samples = filesUnder(SAMPLES, ".json");

describe("samples", () => {
  test("there are samples from the trigger's Queueable and from the Flow action", () => {
    assert.ok(samples.length >= 4);
    assert.ok(samples.some((path) => read(path).includes('"url":"/services/data/')));
    assert.ok(samples.some((path) => read(path).includes('"CcAddress":null')));
  });

  for (const path of samples) {
    test(shortName(path), () => {
      const text = read(path);
      const body = JSON.parse(text);
      assert.equal(JSON.stringify(body), text, "compact as JSON.serialize writes it, no trailing newline");
      assert.deepEqual(Object.keys(body), ["workflow", "userId", "records"]);
      assert.ok(WORKFLOWS.includes(body.workflow));
      assert.match(body.userId, /^005[A-Za-z0-9]{15}$/);
      assert.ok(body.records.length >= 1);
      for (const record of body.records) {
        assert.equal(Object.keys(record)[0], "attributes");
        assert.equal(record.attributes.type, "EmailMessage");
        if ("Id" in record) {
          assert.match(record.Id, /^02s[A-Za-z0-9]{15}$/);
          assert.equal(record.attributes.url, `/services/data/v62.0/sobjects/EmailMessage/${record.Id}`);
        } else {
          assert.equal(record.attributes.url, undefined);
        }
        assert.ok(ADDRESS_FIELDS.some((field) => record[field]) || ID_FIELDS.some((field) => record[field]?.length),
          "at least one address or record id");
        for (const field of ID_FIELDS) {
          if (field in record) for (const id of record[field]) assert.match(id, /^(003|00Q|005)[A-Za-z0-9]{15}$/);
        }
      }
    });
  }
});

// The samples follow the Apex that makes the bodies: the Queueable's query (JSON.serialize writes a queried
// record's fields in query order, null ones left out) and the Flow action's constructor (fields in the order
// set, null ones as null).
describe("samples match the Apex that builds the bodies", () => {
  const queueable = read(`${SOURCE}/classes/UnsubscribeGateAfterSendCheck.cls`);
  const action = read(`${SOURCE}/classes/CheckMarketoUnsubscribes.cls`);
  const queried = queueable.match(/SELECT ([\w, ]+?)\s+FROM EmailMessage/)[1].split(/,\s*/);
  const constructed = [...action.match(/return new EmailMessage\(([^;]+)\);/)[1].matchAll(/(\w+) =/g)].map((m) => m[1]);

  test("the Queueable and the Flow action build what the samples hold", () => {
    assert.deepEqual(queried, ["Id", "ToAddress", "CcAddress", "BccAddress", "FromAddress", "Subject", "RelatedToId"]);
    assert.deepEqual(constructed, ["ToAddress", "CcAddress", "BccAddress", "FromAddress", "Subject", "RelatedToId"]);
  });

  for (const path of samples.filter((path) => !ownApex(path))) {
    test(shortName(path), () => {
      for (const record of JSON.parse(read(path)).records) {
        const fields = Object.keys(record).slice(1);
        if ("Id" in record) {
          assert.deepEqual(fields, queried.filter((name) => name in record), "query order");
          for (const name of fields) assert.notEqual(record[name], null, `a queried null ${name} is left out`);
        } else {
          assert.deepEqual(fields, constructed, "the Flow action sets all six, in this order");
        }
      }
    });
  }
});
