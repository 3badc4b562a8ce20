// Small HTTP servers the kits' tests put between an add-in and the gate: a tap that records what the add-in
// sent and what the gate answered, a gate that never answers, and a gate with a fixed answer.
import { createServer } from "node:http";

function listen(server) {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${server.address().port}`)));
}

function readBody(request) {
  return new Promise((resolve) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
  });
}

function closer(server) {
  return () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); });
}

/** Forwards every request to `target` and keeps [{method, path, headers, body, status, answer}]. */
export async function startTap(target) {
  const exchanges = [];
  const server = createServer(async (request, response) => {
    const body = await readBody(request);
    const forwarded = await fetch(target + request.url, {
      method: request.method,
      headers: { "content-type": request.headers["content-type"] || "", authorization: request.headers.authorization || "" },
      body: request.method === "POST" ? body : undefined,
    });
    const answer = await forwarded.text();
    exchanges.push({ method: request.method, path: request.url, headers: request.headers, body, status: forwarded.status, answer });
    response.writeHead(forwarded.status, { "content-type": forwarded.headers.get("content-type") || "application/json" });
    response.end(answer);
  });
  return { url: await listen(server), exchanges, close: closer(server) };
}

/**
 * A gate that takes the request and never answers. `abandoned` resolves when the caller hangs up (its
 * connection closes while the answer is still owed), which is how a caller that stops waiting shows itself.
 */
export async function startSilentGate() {
  let hungUp;
  const abandoned = new Promise((resolve) => { hungUp = resolve; });
  let requests = 0;
  const server = createServer((request, response) => {
    requests += 1;
    response.on("close", () => { if (!response.writableEnded) hungUp(); });
  });
  return { url: await listen(server), abandoned, requests: () => requests, close: closer(server) };
}

/** A gate that answers every request with `status` and `body` (a JSON value). */
export async function startFixedGate(status, body) {
  let requests = 0;
  const server = createServer(async (request, response) => {
    requests += 1;
    await readBody(request);
    response.writeHead(status, { "content-type": "application/json" });
    response.end(JSON.stringify(body));
  });
  return { url: await listen(server), requests: () => requests, close: closer(server) };
}

/** A gate that holds every request until release(), then answers it with `status` and `body`. */
export async function startHeldGate(status, body) {
  const held = [];
  let arrived;
  const firstArrived = new Promise((resolve) => { arrived = resolve; });
  const server = createServer(async (request, response) => {
    await readBody(request);
    held.push(response);
    arrived();
  });
  function release() {
    const answered = held.splice(0).map((response) => new Promise((resolve) => {
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify(body), resolve);
    }));
    return Promise.all(answered);
  }
  return { url: await listen(server), firstArrived, release, close: closer(server) };
}
