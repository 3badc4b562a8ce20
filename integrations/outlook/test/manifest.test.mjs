// The add-in only manifest has what Outlook requires of a Smart Alerts add-in, in the order its schema wants,
// and names files that exist; the build gives classic Outlook one plain script.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, cpSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import vm from "node:vm";
import { DOMParser } from "@xmldom/xmldom";
import { build, bundle, EXAMPLE_BASE_URL, KIT, manifestFor } from "../scripts/build.mjs";

const NS = {
  app: "http://schemas.microsoft.com/office/appforoffice/1.1",
  xsi: "http://www.w3.org/2001/XMLSchema-instance",
  bt: "http://schemas.microsoft.com/office/officeappbasictypes/1.0",
  vo10: "http://schemas.microsoft.com/office/mailappversionoverrides",
  vo11: "http://schemas.microsoft.com/office/mailappversionoverrides/1.1",
};

function parse(xml) {
  const errors = [];
  const doc = new DOMParser({ onError: (level, message) => errors.push(`${level}: ${message}`) })
    .parseFromString(xml, "application/xml");
  assert.deepEqual(errors, [], "the manifest is well-formed XML");
  return doc;
}

const children = (element, ns) => Array.from(element.childNodes).filter((node) => node.nodeType === 1 && (!ns || node.namespaceURI === ns));
const child = (element, name, ns) => {
  const found = children(element, ns).filter((node) => node.localName === name);
  assert.equal(found.length, 1, `one <${name}> in <${element.localName}>`);
  return found[0];
};
const xsiType = (element) => element.getAttributeNS(NS.xsi, "type");

const manifest = parse(readFileSync(join(KIT, "manifest.xml"), "utf8"));
const app = manifest.documentElement;

test("OfficeApp: a mail add-in with the base elements in the schema's order", () => {
  assert.equal(app.localName, "OfficeApp");
  assert.equal(app.namespaceURI, NS.app);
  assert.equal(xsiType(app), "MailApp");
  const order = ["Id", "Version", "ProviderName", "DefaultLocale", "DisplayName", "Description", "IconUrl",
    "HighResolutionIconUrl", "SupportUrl", "AppDomains", "Hosts", "Requirements", "FormSettings", "Permissions",
    "Rule", "DisableEntityHighlighting", "VersionOverrides"];
  const present = children(app).map((node) => node.localName);
  assert.deepEqual(present, order);
  assert.match(child(app, "Id").textContent, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.match(child(app, "Version").textContent, /^\d+\.\d+\.\d+\.\d+$/);
  assert.ok(child(app, "DisplayName").getAttribute("DefaultValue").length <= 125);
  assert.ok(child(app, "Description").getAttribute("DefaultValue").length <= 250);
  assert.equal(child(child(app, "Hosts"), "Host").getAttribute("Name"), "Mailbox");
  assert.ok(["ReadItem", "ReadWriteItem", "ReadWriteMailbox", "Restricted"].includes(child(app, "Permissions").textContent));
  for (const icon of ["IconUrl", "HighResolutionIconUrl"]) {
    const url = child(app, icon).getAttribute("DefaultValue");
    assert.match(url, /^https:\/\//);
    assert.ok(existsSync(join(KIT, url.slice(EXAMPLE_BASE_URL.length + 1))), `${icon} names a file in the kit`);
  }
});

test("VersionOverrides 1.1: Mailbox 1.12, the two runtimes, and the OnMessageSend Smart Alert", () => {
  const outer = child(app, "VersionOverrides", NS.vo10);
  assert.equal(xsiType(outer), "VersionOverridesV1_0");
  const inner = child(outer, "VersionOverrides", NS.vo11);
  assert.equal(xsiType(inner), "VersionOverridesV1_1");
  const sets = child(child(inner, "Requirements", NS.vo11), "Sets", NS.bt);
  assert.ok(Number(sets.getAttribute("DefaultMinVersion")) >= 1.12, "OnMessageSend needs Mailbox 1.12");
  assert.equal(child(sets, "Set", NS.bt).getAttribute("Name"), "Mailbox");

  const host = child(child(inner, "Hosts", NS.vo11), "Host", NS.vo11);
  assert.equal(xsiType(host), "MailHost");
  const runtime = child(child(host, "Runtimes", NS.vo11), "Runtime", NS.vo11);
  const override = child(runtime, "Override", NS.vo11);
  assert.equal(override.getAttribute("type"), "javascript");

  const desktop = child(host, "DesktopFormFactor", NS.vo11);
  const launch = children(desktop, NS.vo11).filter((node) => node.localName === "ExtensionPoint" && xsiType(node) === "LaunchEvent");
  assert.equal(launch.length, 1);
  const event = child(child(launch[0], "LaunchEvents", NS.vo11), "LaunchEvent", NS.vo11);
  assert.equal(event.getAttribute("Type"), "OnMessageSend");
  assert.equal(event.getAttribute("FunctionName"), "onMessageSendHandler");
  assert.equal(event.getAttribute("SendMode"), "SoftBlock");
  assert.equal(child(launch[0], "SourceLocation", NS.vo11).getAttribute("resid"), runtime.getAttribute("resid"),
    "the launch event runs in the declared runtime");

  const urls = Object.fromEntries(children(child(child(inner, "Resources", NS.vo11), "Urls", NS.bt), NS.bt)
    .map((url) => [url.getAttribute("id"), url.getAttribute("DefaultValue")]));
  for (const resid of [runtime.getAttribute("resid"), override.getAttribute("resid"), child(desktop, "FunctionFile", NS.vo11).getAttribute("resid")]) {
    assert.ok(resid && resid.length <= 32, `resid ${resid} is at most 32 characters`);
    assert.match(urls[resid] || "", /^https:\/\//, `resid ${resid} is an https URL in Resources`);
  }
  assert.equal(urls[runtime.getAttribute("resid")], `${EXAMPLE_BASE_URL}/src/commands.html`);
  assert.equal(urls[override.getAttribute("resid")], `${EXAMPLE_BASE_URL}/dist/launchevent.js`);
});

test("the handler registers the function the manifest names, and commands.html loads config.js then launchevent.js", () => {
  const source = readFileSync(join(KIT, "src", "launchevent.js"), "utf8");
  assert.match(source, /Office\.actions\.associate\("onMessageSendHandler", onMessageSendHandler\)/);
  const page = new DOMParser().parseFromString(readFileSync(join(KIT, "src", "commands.html"), "utf8"), "text/html");
  const scripts = Array.from(page.getElementsByTagName("script")).map((script) => script.getAttribute("src"));
  assert.deepEqual(scripts, ["https://appsforoffice.microsoft.com/lib/1/hosted/office.js", "config.js", "launchevent.js"]);
});

test("dist/launchevent.js is config.js then launchevent.js, one plain script with no import or export", () => {
  const built = bundle();
  const config = readFileSync(join(KIT, "src", "config.js"), "utf8").trim();
  const handler = readFileSync(join(KIT, "src", "launchevent.js"), "utf8").trim();
  assert.ok(built.indexOf(config) >= 0 && built.indexOf(config) < built.indexOf(handler));
  assert.doesNotThrow(() => new vm.Script(built), "compiles as a classic script (import/export would not)");
  assert.doesNotMatch(built, /^\s*(import|export)\s/m);
  assert.equal(readFileSync(join(KIT, "dist", "launchevent.js"), "utf8"), built, "npm run build wrote it");
});

test("the build moves every URL of the manifest to the admin's host", () => {
  const moved = manifestFor("https://addins.acme.example/gate/");
  assert.doesNotMatch(moved, /addin\.example\.com/);
  assert.match(moved, /<bt:Url id="JSRuntime\.Url" DefaultValue="https:\/\/addins\.acme\.example\/gate\/dist\/launchevent\.js"\/>/);
  assert.match(moved, /<AppDomain>https:\/\/addins\.acme\.example<\/AppDomain>/);
  parse(moved);
  assert.throws(() => manifestFor("http://addins.acme.example/gate"), /https only/);

  const kit = mkdtempSync(join(tmpdir(), "outlook-kit-"));
  try {
    cpSync(join(KIT, "src"), join(kit, "src"), { recursive: true });
    cpSync(join(KIT, "manifest.xml"), join(kit, "manifest.xml"));
    build({ baseUrl: "https://addins.acme.example/gate", kit });
    assert.match(readFileSync(join(kit, "dist", "manifest.xml"), "utf8"), /https:\/\/addins\.acme\.example\/gate\/src\/commands\.html/);
  } finally {
    rmSync(kit, { recursive: true, force: true });
  }
});
