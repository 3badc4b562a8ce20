// The test build's content script for the stand-in compose page: the page's form as a ComposeView, protected
// by the extension's own protectCompose (the same code content.js gives each Gmail compose window).
import { protectCompose } from "../../src/protect-compose.js";

const element = document.getElementById("compose");
if (element) {
  const handlers = [];
  const field = (id) => document.getElementById(id);
  const contacts = (id) => field(id).value.split(",").map((part) => part.trim()).filter(Boolean)
    .map((emailAddress) => ({ emailAddress, name: "" }));
  const view = {
    on(name, handler) { if (name === "presending") handlers.push(handler); },
    send() {
      let cancelled = false;
      handlers.forEach((handler) => handler({ cancel() { cancelled = true; } }));
      if (!cancelled) field("outbox").textContent = `Sent to ${[...contacts("to"), ...contacts("cc"), ...contacts("bcc")].map((c) => c.emailAddress).join(", ")}`;
    },
    getToRecipients: () => contacts("to"),
    getCcRecipients: () => contacts("cc"),
    getBccRecipients: () => contacts("bcc"),
    getSubject: () => field("subject").value,
    getFromContact: () => ({ emailAddress: "rep@acme.example", name: "Rep" }),
    getElement: () => element,
  };
  field("send").addEventListener("click", () => view.send());
  protectCompose(view);
}
