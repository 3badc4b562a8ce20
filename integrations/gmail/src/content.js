// Content script on https://mail.google.com/*: InboxSDK finds every compose window; each is protected.
import * as InboxSDK from "@inboxsdk/core";
import { INBOXSDK_APP_ID } from "./config.js";
import { protectCompose } from "./protect-compose.js";

// No error reports or usage events to InboxSDK's servers: the extension talks to Gmail and the gate only.
InboxSDK.load(2, INBOXSDK_APP_ID, { globalErrorLogging: false, eventTracking: false }).then((sdk) => {
  sdk.Compose.registerComposeViewHandler(protectCompose);
});
