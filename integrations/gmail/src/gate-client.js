// Ask the gate about one draft and turn its answer, or its silence, into a verdict for the rep:
// {allow: true} or {allow: false, message}. Used by the service worker (background.js) and by the tests.
export const NOT_ASKED = "The Marketo unsubscribe check could not be made";
export const MESSAGE_LIMIT = 500; // the gate's reasons fit; a message longer than that is cut

export function shortened(text) {
  text = String(text);
  return text.length <= MESSAGE_LIMIT ? text : `${text.slice(0, MESSAGE_LIMIT - 1)}\u2026`;
}

function notAsked(settings, why) {
  if (settings.failClosed === false) return { allow: true, unchecked: why };
  return { allow: false, message: shortened(`${NOT_ASKED} (${why}), so this message was not sent. Try again in a moment; if it keeps happening, tell your admin.`) };
}

async function post(settings, draft, signal) {
  let response;
  try {
    response = await fetch(`${settings.url.replace(/\/+$/, "")}/v1/hooks/email-client`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${settings.key}` },
      body: JSON.stringify({ client: "gmail", ...draft }),
      signal,
    });
  } catch (error) {
    if (signal.aborted) throw error;
    throw new Error("the gate could not be reached");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(`the gate answered ${response.status}${body?.error?.message ? `: ${body.error.message}` : ""}`);
  if (body?.decision !== "allow" && body?.decision !== "deny") throw new Error("the gate's answer had no decision");
  return body;
}

/** draft: {sender, to, cc, bcc, subject}. Never takes longer than settings.timeoutMs. */
export async function checkDraft(settings, draft) {
  if (!settings.url || !settings.key) return notAsked(settings, "the extension has no gate URL or key set up");
  const controller = new AbortController();
  const timeoutMs = settings.timeoutMs > 0 ? settings.timeoutMs : 4000;
  let timer;
  const timedOut = new Promise((resolve) => {
    timer = setTimeout(() => {
      controller.abort();
      resolve(notAsked(settings, `no answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
  });
  const asked = post(settings, draft, controller.signal).then(
    (answer) => (answer.decision === "allow"
      ? { allow: true }
      : { allow: false, message: shortened(answer.reason || "The unsubscribe gate blocked this message.") }),
    (error) => notAsked(settings, error.message),
  );
  try {
    return await Promise.race([asked, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}
