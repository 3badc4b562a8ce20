/* Outlook Smart Alerts: ask the unsubscribe gate before every send.
 *
 * A plain script (no import/export), written to ECMAScript 2016 (no async/await, no `?.`), because classic
 * Outlook on Windows runs it in its JavaScript-only runtime, which loads one file and, in older builds, knows
 * no later JavaScript. `npm run build` puts src/config.js in front of it as dist/launchevent.js; commands.html
 * loads the two in the same order for Outlook on the web, on Mac and new Outlook on Windows.
 *
 * On Send: read To, Cc and Bcc (and the subject and sender), post them to {url}/v1/hooks/email-client, and
 * call event.completed exactly once: allow on allow, block with the gate's reason on deny, and when the gate
 * cannot be asked (no answer within timeoutMs, a network error, an error answer) as failClosed says.
 */
/* global Office, self */

var GATE_MESSAGE_LIMIT = 500; // Smart Alerts shows at most 500 characters
var GATE_NOT_ASKED = "The Marketo unsubscribe check could not be made";

function gateConfig() {
  var config = self.GATE_CONFIG || {};
  return {
    url: String(config.url || "").replace(/\/+$/, ""),
    key: config.key || "",
    timeoutMs: config.timeoutMs > 0 ? config.timeoutMs : 4000,
    failClosed: config.failClosed !== false, // anything but an explicit false blocks
  };
}

function shortened(text) {
  text = String(text);
  return text.length <= GATE_MESSAGE_LIMIT ? text : text.slice(0, GATE_MESSAGE_LIMIT - 1) + "\u2026";
}

// Office's getAsync as a promise: the value, or an Error carrying Office's message.
function officeValue(property) {
  return new Promise(function (resolve, reject) {
    property.getAsync(function (result) {
      if (result.status === Office.AsyncResultStatus.Failed) {
        reject(new Error(result.error && result.error.message ? result.error.message : "Outlook could not read the message"));
      } else {
        resolve(result.value);
      }
    });
  });
}

function senderAddress(item) {
  var profile = Office.context.mailbox.userProfile;
  var fallback = profile ? profile.emailAddress : null;
  if (!item.from || typeof item.from.getAsync !== "function") return Promise.resolve(fallback);
  return officeValue(item.from).then(
    function (from) { return from && from.emailAddress ? from.emailAddress : fallback; },
    function () { return fallback; } // the sender is for the gate's log; a draft without one is still checked
  );
}

// The body the gate takes: recipients exactly as Office gives them (EmailAddressDetails objects, including
// distribution lists and external users), so the gate sees what Outlook will send to.
function readDraft(item) {
  return Promise.all([
    officeValue(item.to), officeValue(item.cc), officeValue(item.bcc),
    item.subject ? officeValue(item.subject).catch(function () { return null; }) : Promise.resolve(null),
    senderAddress(item),
  ]).then(function (values) {
    return { client: "outlook", sender: values[4], to: values[0] || [], cc: values[1] || [], bcc: values[2] || [], subject: values[3] };
  });
}

function gateError(status, body) {
  var detail = body && body.error && body.error.message ? ": " + body.error.message : "";
  return new Error("the gate answered " + status + detail);
}

function askGate(config, draft, signal) {
  return fetch(config.url + "/v1/hooks/email-client", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + config.key },
    body: JSON.stringify(draft),
    signal: signal,
  }).catch(function () {
    throw new Error("the gate could not be reached"); // the runtime's own wording differs per platform
  }).then(function (response) {
    return response.json().catch(function () { return null; }).then(function (body) {
      if (!response.ok) throw gateError(response.status, body);
      if (!body || (body.decision !== "allow" && body.decision !== "deny")) throw new Error("the gate's answer had no decision");
      return body;
    });
  });
}

function whenNotAsked(config, why) {
  if (!config.failClosed) return { allowEvent: true };
  return {
    allowEvent: false,
    errorMessage: shortened(GATE_NOT_ASKED + " (" + why + "), so this message was not sent. Try again in a moment; if it keeps happening, tell your admin."),
  };
}

function fromAnswer(answer) {
  if (answer.decision === "allow") return { allowEvent: true };
  return { allowEvent: false, errorMessage: shortened(answer.reason || "The unsubscribe gate blocked this message.") };
}

function onMessageSendHandler(event) {
  var config = gateConfig();
  var finished = false;
  function complete(options) {
    if (finished) return; // exactly once: a late answer after the timeout changes nothing
    finished = true;
    clearTimeout(timer);
    event.completed(options);
  }
  var controller = typeof AbortController === "function" ? new AbortController() : null;
  var timer = setTimeout(function () {
    if (controller) controller.abort();
    complete(whenNotAsked(config, "no answer within " + (config.timeoutMs / 1000) + " s"));
  }, config.timeoutMs);

  return readDraft(Office.context.mailbox.item)
    .then(function (draft) {
      if (!draft.to.length && !draft.cc.length && !draft.bcc.length) return { allowEvent: true }; // nobody to check
      return askGate(config, draft, controller ? controller.signal : undefined).then(fromAnswer);
    })
    .then(complete, function (error) {
      complete(whenNotAsked(config, error && error.message ? error.message : "unknown error"));
    });
}

Office.actions.associate("onMessageSendHandler", onMessageSendHandler);
