// The options page: the rep's (or a tester's) URL and key, in chrome.storage.sync. Fields the admin's policy
// sets (chrome.storage.managed) are shown and locked.
import { loadSettings } from "./config.js";

const form = document.getElementById("settings");
const status = document.getElementById("status");

async function show() {
  const { settings, managed } = await loadSettings();
  form.url.value = settings.url;
  form.key.value = settings.key;
  form.timeoutMs.value = settings.timeoutMs;
  form.failClosed.checked = settings.failClosed !== false;
  for (const name of managed) form.elements[name].disabled = true;
  document.getElementById("managed").hidden = managed.length === 0;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const { managed } = await loadSettings();
  const values = {
    url: form.url.value.trim().replace(/\/+$/, ""),
    key: form.key.value.trim(),
    timeoutMs: Number(form.timeoutMs.value) || 4000,
    failClosed: form.failClosed.checked,
  };
  for (const name of managed) delete values[name];
  await chrome.storage.sync.set(values);
  status.textContent = "Saved.";
});

show();
