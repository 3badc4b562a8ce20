// A live gate for the kits' tests: `gateway demo` (the gate and its seeded Marketo simulator) on free ports,
// with its own SQLite file, and caller keys made with `gateway keys create` as an admin would make them.
//
// The Python environment is the one on VIRTUAL_ENV, else the `gateway` on PATH, else the repository's .venv.
// No dependencies: node's own child_process, net and fetch.
import { spawn, execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const STARTUP_DEADLINE_MS = 90_000; // demo start on a busy 2-core CI machine: migrations, simulator, gunicorn
const STOP_DEADLINE_MS = 30_000; // the demo waits up to 10 s for its sync thread, then 10 s for gunicorn

function killGroup(pid) {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // nothing left in the group
  }
}

// What the demo seeds (README "Two commands"): these have unsubscribed in the simulator, those have not.
export const UNSUBSCRIBED = ["jane@example.com", "unsub@example.com", "dup@example.com"];
export const SUBSCRIBED = ["bob@example.com", "alice@example.com"];
export const DEMO_CALLER_KEY = "demo-caller-key";

export function gatewayCommand() {
  const candidates = [];
  if (process.env.VIRTUAL_ENV) candidates.push(join(process.env.VIRTUAL_ENV, "bin", "gateway"));
  for (const dir of (process.env.PATH || "").split(delimiter).filter(Boolean)) candidates.push(join(dir, "gateway"));
  candidates.push(join(REPO, ".venv", "bin", "gateway"));
  const found = candidates.find((path) => existsSync(path));
  if (!found) {
    throw new Error("no `gateway` command: activate the project's venv or create it at the repository root "
      + "(python3.11 -m venv .venv && .venv/bin/pip install -e .)");
  }
  return found;
}

/** A port nothing listens on right now (the OS picks it; it is closed again before it is returned). */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

async function waitUntilHealthy(url, child, output, deadlineMs) {
  const deadline = Date.now() + deadlineMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`gateway demo exited (${child.exitCode ?? child.signalCode}):\n${output.join("")}`);
    try {
      const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolveWait) => setTimeout(resolveWait, 100)); // one poll interval, bounded by the deadline
  }
  throw new Error(`the gate at ${url} was not healthy within ${deadlineMs} ms:\n${output.join("")}`);
}

/**
 * Start a gate. `keys` names caller keys to create, each limited to its sources: {name: ["outlook"], …}.
 * Resolves to {url, callerKey, keys: {name: key}, stop()}.
 */
export async function startGate({ keys = {}, env: extraEnv = {} } = {}) {
  const gateway = gatewayCommand();
  const dir = mkdtempSync(join(tmpdir(), "kit-gate-"));
  const [port, marketoPort] = [await freePort(), await freePort()];
  const env = {
    ...process.env,
    DATABASE_URL: `sqlite:///${join(dir, "gate.sqlite3")}`,
    GATEWAY_RATE_LIMIT: "off",
    ...extraEnv,
  };
  delete env.REDIS_URL; // the kits' gate counts nothing it would share

  await run(gateway, ["migrate"], { env, cwd: dir });
  const made = {};
  for (const [name, sources] of Object.entries(keys)) {
    const args = ["keys", "create", name, "--role", "caller", ...sources.flatMap((source) => ["--source", source])];
    const { stdout } = await run(gateway, args, { env, cwd: dir });
    made[name] = stdout.trim().split("\n").pop().trim(); // the key is printed alone on the last line
  }

  const output = [];
  // Its own process group, so stopping it reaches gunicorn and the simulator too.
  const child = spawn(gateway, ["demo", "--port", String(port), "--marketo-port", String(marketoPort)], {
    env, cwd: dir, detached: true, stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.on("data", (chunk) => output.push(chunk.toString()));
  child.stderr.on("data", (chunk) => output.push(chunk.toString()));
  const exited = new Promise((resolveExit) => child.once("exit", resolveExit));
  const url = `http://127.0.0.1:${port}`;

  async function stop() {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, "SIGINT"); // the demo's Ctrl-C: it stops gunicorn and the simulator itself
      } catch {
        // already gone
      }
      const timer = setTimeout(() => killGroup(child.pid), STOP_DEADLINE_MS);
      await exited;
      clearTimeout(timer);
    }
    // Whatever the demo left behind in its process group (a gunicorn worker that outlived its master) goes too:
    // an open connection to it would keep the test process from ever ending.
    killGroup(child.pid);
    rmSync(dir, { recursive: true, force: true });
  }

  try {
    await waitUntilHealthy(url, child, output, STARTUP_DEADLINE_MS);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, callerKey: DEMO_CALLER_KEY, keys: made, stop, output };
}
