// Service worker: InboxSDK's page-world loader, and the one place that calls the gate.
import "@inboxsdk/core/background.js";
import { loadSettings } from "./config.js";
import { checkDraft } from "./gate-client.js";
import { CHECK_MESSAGE } from "./protect-compose.js";

chrome.runtime.onMessage.addListener((message, sender, sendResponse) => {
  if (message?.type !== CHECK_MESSAGE || sender.id !== chrome.runtime.id) return false;
  loadSettings()
    .then(({ settings }) => checkDraft(settings, message.draft))
    .then(sendResponse, (error) => sendResponse({ allow: false, message: `The Marketo unsubscribe check could not be made (${error.message}).` }));
  return true; // the answer comes asynchronously
});
