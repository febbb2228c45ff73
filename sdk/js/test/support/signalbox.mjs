// Test support: a real `signalbox serve` process per test file, on a free port and a fresh
// data directory, and the tenant → app → key setup every test needs.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { AppClient, ManagementClient } from "../../dist/server/index.js";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");

/** Generous: only there so that a broken build fails instead of hanging. */
export const DEADLINE_MS = 20_000;

/** The signalbox binary: $SIGNALBOX_BIN, the repo's target dir, or $CARGO_TARGET_DIR's. */
export function signalboxBinary() {
  const candidates = [
    process.env.SIGNALBOX_BIN,
    join(REPO, "target/debug/signalbox"),
    process.env.CARGO_TARGET_DIR && join(process.env.CARGO_TARGET_DIR, "debug/signalbox"),
  ].filter(Boolean);
  const found = candidates.find((path) => existsSync(path));
  if (!found) {
    throw new Error(
      `no signalbox binary (tried ${candidates.join(", ")}): run \`cargo build -p signalbox\` or set SIGNALBOX_BIN`,
    );
  }
  return found;
}

/**
 * A running `signalbox serve`. `stop()` sends SIGTERM and waits for the exit; `start()` starts it
 * again on the same port with the same data dir (so the same apps and keys).
 */
export class Signalbox {
  #process;
  #exited;
  #ownsDataDir;

  constructor({ port = 0, dataDir, extraArgs = [] } = {}) {
    this.port = port;
    this.#ownsDataDir = !dataDir;
    this.dataDir = dataDir ?? mkdtempSync(join(tmpdir(), "signalbox-js-"));
    this.extraArgs = extraArgs;
  }

  static async start(options) {
    const server = new Signalbox(options);
    await server.start();
    return server;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/client`;
  }

  get adminToken() {
    return readFileSync(join(this.dataDir, "admin-token"), "utf8").trim();
  }

  /** Starts the process and waits for its banner (which names the port it listens on). */
  async start() {
    // Metrics on a port of their own: other servers may run on this machine.
    const args = ["serve", "--listen", `127.0.0.1:${this.port}`, "--metrics-listen", "127.0.0.1:0", "--data-dir", this.dataDir, ...this.extraArgs];
    const env = {
      ...process.env,
      SIGNALBOX_LOG: process.env.SIGNALBOX_LOG ?? "warn",
      // The tests' webhook receivers listen on 127.0.0.1, which `serve` refuses unless allowed.
      SIGNALBOX_WEBHOOK_ALLOW: process.env.SIGNALBOX_WEBHOOK_ALLOW ?? "loopback",
    };
    delete env.SIGNALBOX_ADMIN_TOKEN; // The token is generated into the data dir, read from there.
    const child = spawn(signalboxBinary(), args, {
      env,
      stdio: ["ignore", "pipe", "inherit"],
    });
    this.#process = child;
    this.#exited = new Promise((resolve) => child.once("exit", resolve));
    const banner = [];
    const lines = createInterface({ input: child.stdout });
    const ready = new Promise((resolve, reject) => {
      lines.on("line", (line) => {
        banner.push(line);
        if (line.startsWith("Press Ctrl-C")) resolve();
      });
      child.once("exit", (code) => reject(new Error(`signalbox exited (${code}) before its banner:\n${banner.join("\n")}`)));
    });
    await withDeadline(ready, "the signalbox banner");
    const rest = banner.map((line) => line.trim()).find((line) => line.startsWith("REST API"));
    const url = new URL(rest.replace(/^REST API\s+/, ""));
    this.port = Number(url.port);
  }

  /** Stops the process (SIGTERM: clients are closed with 1001) and waits until it has exited. */
  async stop(signal = "SIGTERM") {
    if (!this.#process || this.#process.exitCode !== null || this.#process.signalCode !== null) return;
    this.#process.kill(signal);
    await withDeadline(this.#exited, "signalbox to exit");
  }

  async dispose() {
    await this.stop("SIGKILL");
    if (this.#ownsDataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/**
 * A tenant, an app with `settings` and a key on `server`. Returns the management client of the
 * tenant, the app id and an `AppClient` with the key.
 */
export async function createApp(server, settings = {}) {
  const operator = new ManagementClient({ url: server.url, token: server.adminToken });
  const tenant = await operator.createTenant(`tenant-${Math.random().toString(36).slice(2, 8)}`);
  const management = new ManagementClient({ url: server.url, token: tenant.token });
  const app = await management.createApp("test", settings);
  const key = await management.createKey(app.id);
  const appClient = new AppClient({ url: server.url, app: app.id, key: key.credential });
  return { management, app: app.id, key, appClient };
}

/** Rejects when `promise` has not settled within the deadline. */
export function withDeadline(promise, what, ms = DEADLINE_MS) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** The next `name` event of a client that satisfies `predicate`. */
export function nextEvent(client, name, predicate = () => true, ms = DEADLINE_MS) {
  let unsubscribe;
  const event = new Promise((resolve) => {
    unsubscribe = client.on(name, (payload) => {
      if (predicate(payload)) resolve(payload);
    });
  });
  return withDeadline(event, `a "${name}" event`, ms).finally(() => unsubscribe());
}

/** Collects every event `name` of a client into an array (for asserting sequences). */
export function record(client, name) {
  const events = [];
  client.on(name, (payload) => events.push(payload));
  return events;
}

/** Waits until `condition()` is true, polling. */
export async function eventually(condition, what, ms = DEADLINE_MS) {
  const until = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
