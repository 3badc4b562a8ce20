// The send logic: intercept a compose view's send, ask, and send again only on allow.
//
// `composeView` is InboxSDK's ComposeView or anything with the same few members: on("presending", handler
// given {cancel()}), send(), getToRecipients()/getCcRecipients()/getBccRecipients() → [{emailAddress, name}],
// getSubject(), getFromContact() → {emailAddress}. `ask(draft)` resolves to {allow, message}; `showDenied(message)`
// shows the reason to the rep; `clearDenied()` takes it away again.
//
// The guard against re-entry: send() fires "presending" again; that second event is let through only once, and
// only for the very recipients that were allowed (a rep who changed them meanwhile is asked about again).

const addresses = (contacts) => (contacts || []).map(({ emailAddress, name }) => ({ emailAddress, displayName: name || "" }));

export function draftOf(composeView) {
  return {
    sender: composeView.getFromContact?.()?.emailAddress ?? null,
    to: addresses(composeView.getToRecipients()),
    cc: addresses(composeView.getCcRecipients()),
    bcc: addresses(composeView.getBccRecipients()),
    subject: composeView.getSubject?.() ?? null,
  };
}

const recipientsKey = ({ to, cc, bcc }) => JSON.stringify([to, cc, bcc].map((list) => list.map((r) => r.emailAddress.toLowerCase())));

export function guardSends(composeView, { ask, showDenied, clearDenied = () => {} }) {
  let approved = null; // the recipients allowed a moment ago, whose own send() is on its way
  let checking = null; // the check in flight, so a second click does not start another

  composeView.on("presending", (event) => {
    const draft = draftOf(composeView);
    if (approved !== null && approved === recipientsKey(draft)) {
      approved = null; // our own send again: through, once
      return;
    }
    approved = null;
    if (!draft.to.length && !draft.cc.length && !draft.bcc.length) return; // nobody to check: Gmail asks for one
    event.cancel();
    if (checking) return;
    clearDenied();
    checking = Promise.resolve()
      .then(() => ask(draft))
      .catch((error) => ({ allow: false, message: `The Marketo unsubscribe check could not be made (${error.message}), so this message was not sent.` }))
      .then((verdict) => {
        checking = null;
        if (verdict.allow) {
          approved = recipientsKey(draft);
          composeView.send();
        } else {
          showDenied(verdict.message);
        }
        return verdict;
      });
  });
  return { pending: () => checking };
}
