// A stand-in for InboxSDK's ComposeView, with the members the send guard uses. send() is the rep's click on
// Send (and the guard's own send again): it fires "presending", and the message goes out unless a handler cancels.
import { EventEmitter } from "node:events";

const contacts = (addresses) => addresses.map((emailAddress) => ({ emailAddress, name: emailAddress.split("@")[0] }));

export class StandInCompose extends EventEmitter {
  constructor({ to = [], cc = [], bcc = [], subject = "Hello", from = "rep@acme.example" } = {}) {
    super();
    Object.assign(this, { to, cc, bcc, subject, from });
    this.sent = []; // what went out: one entry per send that was not cancelled
  }

  getToRecipients() { return contacts(this.to); }
  getCcRecipients() { return contacts(this.cc); }
  getBccRecipients() { return contacts(this.bcc); }
  getSubject() { return this.subject; }
  getFromContact() { return { emailAddress: this.from, name: "Rep" }; }

  send() {
    let cancelled = false;
    this.emit("presending", { cancel() { cancelled = true; } });
    if (!cancelled) this.sent.push({ to: [...this.to], cc: [...this.cc], bcc: [...this.bcc] });
  }
}
