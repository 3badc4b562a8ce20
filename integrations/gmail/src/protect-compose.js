// One compose window, protected: its sends go through the guard, the check goes to the service worker (which
// holds the URL and key and is not bound by Gmail's page), and a stopped send shows its reason in the window.
import { clearNotice, showNotice } from "./notice.js";
import { guardSends } from "./send-guard.js";

export const CHECK_MESSAGE = "unsubscribe-gate/check";

export async function askServiceWorker(draft) {
  const verdict = await chrome.runtime.sendMessage({ type: CHECK_MESSAGE, draft });
  if (typeof verdict?.allow !== "boolean") throw new Error("the extension's service worker did not answer");
  return verdict;
}

export function protectCompose(composeView) {
  const element = composeView.getElement();
  return guardSends(composeView, {
    ask: askServiceWorker,
    showDenied: (message) => showNotice(element, message),
    clearDenied: () => clearNotice(element),
  });
}
