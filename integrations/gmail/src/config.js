// The extension's settings: what is built in, and where the gate's URL and key come from.
//
// Built in (edit before `npm run build`):
//   INBOXSDK_APP_ID  your organization's InboxSDK app id (free, from https://www.inboxsdk.com/register);
//                    without a registered id InboxSDK shows a developer warning in Gmail.
//   DEFAULTS         used where the admin's policy and the options page say nothing.
//
// At run time: url, key, timeoutMs and failClosed from chrome.storage.managed (the Google Workspace admin's
// policy, declared by managed_schema.json), else from chrome.storage.sync (the options page), else DEFAULTS.
export const INBOXSDK_APP_ID = "sdk_replace-me_0000000000";

export const DEFAULTS = Object.freeze({ url: "", key: "", timeoutMs: 4000, failClosed: true });
export const SETTINGS = Object.freeze(Object.keys(DEFAULTS));

function read(area) {
  // chrome.storage.managed rejects where no policy store exists (e.g. some unmanaged profiles): nothing set.
  return area.get(SETTINGS).catch(() => ({}));
}

/** {settings, managed: [names set by policy]}: policy wins over the options page, field by field. */
export async function loadSettings(storage = chrome.storage) {
  const [managed, synced] = await Promise.all([read(storage.managed), read(storage.sync)]);
  const settings = { ...DEFAULTS };
  const fromPolicy = [];
  for (const name of SETTINGS) {
    if (managed[name] !== undefined && managed[name] !== "") {
      settings[name] = managed[name];
      fromPolicy.push(name);
    } else if (synced[name] !== undefined) {
      settings[name] = synced[name];
    }
  }
  return { settings, managed: fromPolicy };
}
