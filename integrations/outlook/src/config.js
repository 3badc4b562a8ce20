// The one file an admin edits before deploying the add-in (then `npm run build`, see the README).
//   url        the gate's address, https, no trailing slash
//   key        a caller key limited to Outlook: `gateway keys create outlook-addin --role caller --source outlook`
//   timeoutMs  how long the rep's Send may wait for the gate; past it the add-in stops waiting
//   failClosed true: when the gate cannot be asked, the send is blocked; false: it goes out unchecked
self.GATE_CONFIG = { url: "https://gate.example.com", key: "replace-with-your-outlook-caller-key", timeoutMs: 4000, failClosed: true };
