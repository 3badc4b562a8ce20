// What the rep sees in Gmail when a send is stopped: a message at the top of the compose window, in its own
// shadow root so Gmail's styles neither break it nor are broken by it. Gone when dismissed or on the next try.
const STYLE = `
  :host { all: initial; display: block; }
  .notice { display: flex; gap: 12px; align-items: flex-start; margin: 8px; padding: 12px 14px; border-radius: 8px;
            background: #fce8e6; color: #3c0d0a; border: 1px solid #f4b4ae; font: 14px/1.45 Roboto, Arial, sans-serif; }
  .icon { flex: none; width: 20px; height: 20px; border-radius: 50%; background: #c5221f; color: #fff;
          font-weight: 700; text-align: center; line-height: 20px; }
  .text { flex: 1; }
  .title { font-weight: 600; margin-bottom: 2px; }
  button { flex: none; border: 0; background: transparent; color: #3c0d0a; font: inherit; cursor: pointer; padding: 0 4px; }
`;

export const NOTICE_TAG = "unsubscribe-gate-notice";

export function clearNotice(container) {
  container.querySelectorAll(NOTICE_TAG).forEach((element) => element.remove());
}

export function showNotice(container, message) {
  clearNotice(container);
  const host = document.createElement(NOTICE_TAG);
  const root = host.attachShadow({ mode: "open" });
  const style = document.createElement("style");
  style.textContent = STYLE;
  const box = document.createElement("div");
  box.className = "notice";
  box.setAttribute("role", "alert");
  const icon = document.createElement("div");
  icon.className = "icon";
  icon.textContent = "!";
  const text = document.createElement("div");
  text.className = "text";
  const title = document.createElement("div");
  title.className = "title";
  title.textContent = "Marketo unsubscribe check";
  const body = document.createElement("div");
  body.className = "message";
  body.textContent = message; // text, never HTML: the reason carries addresses typed by the rep
  const close = document.createElement("button");
  close.type = "button";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "\u2715";
  close.addEventListener("click", () => host.remove());
  text.append(title, body);
  box.append(icon, text, close);
  root.append(style, box);
  container.prepend(host);
  return host;
}
