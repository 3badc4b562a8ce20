// The handler as Outlook runs it: dist/launchevent.js evaluated as a plain script in a fresh global, with
// office-addin-mock's Office object for the mailbox and node's own fetch and AbortController.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import vm from "node:vm";
import { OfficeMockObject } from "office-addin-mock";
import { KIT } from "../scripts/build.mjs";

const ADDRESS = (emailAddress, displayName = "", recipientType = "externalUser") => ({ emailAddress, displayName, recipientType });
export { ADDRESS };

function asyncProperty(value) {
  return { getAsync(callback) { callback({ status: "succeeded", value }); } };
}

function failingProperty(message) {
  return { getAsync(callback) { callback({ status: "failed", error: { message } }); } };
}

/**
 * Load dist/launchevent.js with a draft in the mailbox. `draft`: {to, cc, bcc, subject, from, failing: "to"|…}.
 * `config` replaces GATE_CONFIG (what an admin writes in src/config.js).
 * Returns {send(): Promise<completed options>, completions, registered, global}.
 */
export function outlookWithDraft(draft, config, { withoutAbortController = false } = {}) {
  const item = {};
  for (const field of ["to", "cc", "bcc"]) {
    item[field] = draft.failing === field ? failingProperty(`Outlook could not read ${field}`) : asyncProperty(draft[field] || []);
  }
  item.subject = asyncProperty(draft.subject ?? "Hello");
  item.from = asyncProperty(ADDRESS(draft.from || "rep@acme.example", "Rep", "user"));
  const registered = {};
  const office = new OfficeMockObject({
    context: { mailbox: { item, userProfile: { emailAddress: draft.from || "rep@acme.example" } } },
    AsyncResultStatus: { Succeeded: "succeeded", Failed: "failed" },
    actions: { associate(name, handler) { registered[name] = handler; } },
  }, "outlook");

  // Older JavaScript-only runtimes may have no AbortController: the handler must not rely on it.
  const globals = { Office: office, fetch, setTimeout, clearTimeout, console };
  if (!withoutAbortController) globals.AbortController = AbortController;
  const global = vm.createContext(globals);
  global.self = global;
  const script = new vm.Script(readFileSync(join(KIT, "dist", "launchevent.js"), "utf8"), { filename: "dist/launchevent.js" });
  script.runInContext(global);
  if (config) global.GATE_CONFIG = config;

  const completions = [];
  function send() {
    return new Promise((resolve) => {
      const event = { completed(options) { const copy = JSON.parse(JSON.stringify(options)); completions.push(copy); resolve(copy); } };
      registered.onMessageSendHandler(event);
    });
  }
  // Settles once the handler's own work has (a completion may come first, from its timeout).
  function sendAndSettle() {
    return new Promise((resolve) => {
      const event = { completed(options) { completions.push(JSON.parse(JSON.stringify(options))); } };
      Promise.resolve(registered.onMessageSendHandler(event)).then(() => resolve(completions));
    });
  }
  // The rep's Send, and the handler's own promise (which settles only when all its work is done).
  function sendKeepingWork() {
    let work;
    const completed = new Promise((resolve) => {
      const event = { completed(options) { const copy = JSON.parse(JSON.stringify(options)); completions.push(copy); resolve(copy); } };
      work = registered.onMessageSendHandler(event);
    });
    return { completed, work };
  }
  return { send, sendAndSettle, sendKeepingWork, completions, registered, global };
}
