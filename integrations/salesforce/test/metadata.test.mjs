// The metadata must be well-formed XML, and its names must match each other and the Apex that uses them:
// a wrong name here is only found at deploy time otherwise.
import assert from "node:assert/strict";
import { basename } from "node:path";
import { describe, test } from "node:test";
import { XMLParser, XMLValidator } from "fast-xml-parser";
import { KIT, SOURCE, filesUnder, read, shortName } from "./kit.mjs";

const xmlFiles = filesUnder(SOURCE, ".xml");
const parser = new XMLParser({ ignoreAttributes: false, isArray: (name) => name.endsWith("Parameters") || name === "values" || name.endsWith("Accesses") });
const parse = (relativePath) => parser.parse(read(`${SOURCE}/${relativePath}`));
const apex = filesUnder(SOURCE, ".cls").concat(filesUnder(SOURCE, ".trigger")).map(read).join("\n");

describe("metadata XML is well-formed", () => {
  for (const path of xmlFiles) {
    test(shortName(path), () => {
      assert.equal(XMLValidator.validate(read(path)), true);
    });
  }

  test("malformed XML is reported, so the checks above can fail", () => {
    assert.notEqual(XMLValidator.validate("<ApexClass><status>Active</ApexClass>"), true);
  });

  test("sfdx-project.json is JSON with a package directory", () => {
    const project = JSON.parse(read(`${KIT}/sfdx-project.json`));
    assert.equal(project.packageDirectories[0].path, "force-app");
  });
});

describe("metadata names agree", () => {
  test("every class and trigger has its -meta.xml with the project's API version", () => {
    const version = JSON.parse(read(`${KIT}/sfdx-project.json`)).sourceApiVersion;
    for (const path of [...filesUnder(SOURCE, ".cls"), ...filesUnder(SOURCE, ".trigger")]) {
      const meta = parser.parse(read(`${path}-meta.xml`));
      const root = meta.ApexClass ?? meta.ApexTrigger;
      assert.equal(String(root.apiVersion.toFixed ? root.apiVersion.toFixed(1) : root.apiVersion), version, shortName(path));
      assert.equal(root.status, "Active", shortName(path));
    }
  });

  test("the Named Credential is the one the Apex calls and uses the External Credential", () => {
    const named = parse("namedCredentials/Unsubscribe_Gate.namedCredential-meta.xml").NamedCredential;
    assert.ok(apex.includes("'callout:Unsubscribe_Gate/"));
    assert.equal(named.namedCredentialType, "SecuredEndpoint");
    const parameters = named.namedCredentialParameters;
    assert.ok(parameters.some((p) => p.parameterType === "Url" && p.parameterValue.startsWith("https://")));
    const link = parameters.find((p) => p.parameterType === "Authentication");
    assert.equal(link.externalCredential, "Unsubscribe_Gate");
  });

  test("the External Credential adds the bearer key as a custom header from its principal", () => {
    const external = parse("externalCredentials/Unsubscribe_Gate.externalCredential-meta.xml").ExternalCredential;
    assert.equal(external.authenticationProtocol, "Custom");
    const header = external.externalCredentialParameters.find((p) => p.parameterType === "AuthHeader");
    assert.equal(header.parameterName, "Authorization");
    assert.equal(header.parameterValue, "{!'Bearer ' & $Credential.Unsubscribe_Gate.Key}");
    const principal = external.externalCredentialParameters.find((p) => p.parameterType === "NamedPrincipal");
    assert.equal(principal.parameterName, "Gate_Key");
  });

  test("the permission set grants that principal and the Flow action's class", () => {
    const set = parse("permissionsets/Unsubscribe_Gate_Sender.permissionset-meta.xml").PermissionSet;
    const principals = set.externalCredentialPrincipalAccesses.map((a) => a.externalCredentialPrincipal);
    assert.deepEqual(principals, ["Unsubscribe_Gate-Gate_Key"]);
    const classes = set.classAccesses.map((a) => a.apexClass);
    assert.ok(classes.includes("CheckMarketoUnsubscribes"));
    for (const name of classes) {
      assert.ok(filesUnder(SOURCE, `${name}.cls`).length === 1, `${name}.cls exists`);
    }
  });

  test("the custom metadata type is protected, and its fields are the ones the Apex reads", () => {
    const type = parse("objects/Unsubscribe_Gate__mdt/Unsubscribe_Gate__mdt.object-meta.xml").CustomObject;
    assert.equal(type.visibility, "Protected");
    const fields = filesUnder(`${SOURCE}/objects/Unsubscribe_Gate__mdt/fields`, ".field-meta.xml").map((path) =>
      basename(path, ".field-meta.xml"),
    );
    const used = new Set(apex.match(/\b[A-Z][A-Za-z_]*__c\b/g));
    assert.deepEqual([...used].sort(), fields.sort());
  });

  test("the settings record is protected, sets only existing fields and holds no secret", () => {
    const record = parse("customMetadata/Unsubscribe_Gate.Default.md-meta.xml").CustomMetadata;
    assert.equal(record.protected, true);
    const fields = new Set(
      filesUnder(`${SOURCE}/objects/Unsubscribe_Gate__mdt/fields`, ".field-meta.xml").map((path) => basename(path, ".field-meta.xml")),
    );
    for (const value of record.values) assert.ok(fields.has(value.field), value.field);
    const secret = record.values.find((value) => value.field === "Signing_Secret__c");
    assert.equal(secret.value["@_xsi:nil"], "true");
    assert.ok(!/whsec_/.test(read(`${SOURCE}/customMetadata/Unsubscribe_Gate.Default.md-meta.xml`)));
  });
});
