// Test support: a real Signalbox cluster — a nats-server with JetStream, a fresh Postgres
// database, `signalbox migrate`, one `signalbox api` and N `signalbox edge` processes — for
// tests that need more than one edge. It needs what the project's test command provides:
// SIGNALBOX_NATS_SERVER (the nats-server binary) and SIGNALBOX_TEST_POSTGRES_URL.

import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { DEADLINE_MS, eventually, signalboxBinary } from "../../../sdk/js/test/support/signalbox.mjs";

const ADMIN_TOKEN = "sba_cluster_test_operator_token_0123456789";
const MASTER_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/** Why a cluster cannot be started here, or null. */
export function clusterUnavailable() {
  if (!process.env.SIGNALBOX_NATS_SERVER || !existsSync(process.env.SIGNALBOX_NATS_SERVER)) {
    return "SIGNALBOX_NATS_SERVER is not set (scripts/test.sh sets it)";
  }
  if (!process.env.SIGNALBOX_TEST_POSTGRES_URL) return "SIGNALBOX_TEST_POSTGRES_URL is not set (scripts/test.sh sets it)";
  if (!psql()) return "psql is not installed";
  return null;
}

function psql() {
  const candidates = ["/usr/bin/psql"];
  if (existsSync("/usr/lib/postgresql")) {
    for (const version of readdirSync("/usr/lib/postgresql")) candidates.push(`/usr/lib/postgresql/${version}/bin/psql`);
  }
  return candidates.find((path) => existsSync(path));
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** A child process whose output is watched for a line; stopped with SIGTERM. */
class Child {
  constructor(name, command, args, env = {}) {
    this.name = name;
    this.lines = [];
    this.waiters = [];
    this.process = spawn(command, args, {
      env: { ...process.env, SIGNALBOX_LOG: process.env.SIGNALBOX_TEST_NODE_LOG ?? "warn", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.exited = new Promise((resolve) => this.process.on("exit", (code, signal) => resolve({ code, signal })));
    for (const stream of [this.process.stdout, this.process.stderr]) {
      createInterface({ input: stream }).on("line", (line) => {
        this.lines.push(line);
        if (process.env.SIGNALBOX_TEST_NODE_LOG) console.error(`[${name}] ${line}`);
        for (const waiter of [...this.waiters]) waiter(line);
      });
    }
  }

  /** The rest of the first line that starts with `prefix` (seen already, or to come). */
  waitForLine(prefix) {
    const seen = this.lines.find((line) => line.includes(prefix));
    if (seen) return Promise.resolve(seen.slice(seen.indexOf(prefix) + prefix.length));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no line "${prefix}"\n${this.lines.join("\n")}`)), DEADLINE_MS);
      const waiter = (line) => {
        if (!line.includes(prefix)) return;
        clearTimeout(timer);
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        resolve(line.slice(line.indexOf(prefix) + prefix.length));
      };
      this.waiters.push(waiter);
    });
  }

  async stop(signal = "SIGTERM") {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill(signal);
    return this.exited;
  }
}

/** A `signalbox` node: its role's process and where it serves. */
async function startNode(role, name, args) {
  const child = new Child(name, signalboxBinary(), [role, ...args, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]);
  const rest = await child.waitForLine(`signalbox ${role} listening on http://`);
  const address = rest.trim();
  return { child, url: `http://${address}`, port: Number(address.split(":").pop()) };
}

/**
 * Starts a cluster of one api and `edges` edges (extra edge flags in `edgeArgs`); `dispose()`
 * stops every process and drops the database.
 */
export async function startCluster({ edges = 2, edgeArgs = [] } = {}) {
  const natsPort = await freePort();
  const monitorPort = await freePort();
  const store = mkdtempSync(join(tmpdir(), "signalbox-js-nats-"));
  const nats = new Child("nats", process.env.SIGNALBOX_NATS_SERVER, [
    "-a", "127.0.0.1", "-p", String(natsPort), "-m", String(monitorPort), "-js", "-sd", store,
  ]);
  await eventually(async () => {
    const response = await fetch(`http://127.0.0.1:${monitorPort}/healthz?js-enabled-only=true`).catch(() => null);
    return response?.ok === true;
  }, "nats-server to be healthy");
  const natsUrl = `nats://127.0.0.1:${natsPort}`;

  const database = `signalr_js_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const adminUrl = process.env.SIGNALBOX_TEST_POSTGRES_URL;
  execFileSync(psql(), [adminUrl, "-q", "-c", `CREATE DATABASE ${database}`]);
  const databaseUrl = adminUrl.replace(/\/[^/]*$/, `/${database}`);
  execFileSync(signalboxBinary(), ["migrate", "--database-url", databaseUrl], { env: { ...process.env, SIGNALBOX_LOG: "warn" } });

  const api = await startNode("api", "api", [
    "--database-url", databaseUrl, "--nats-url", natsUrl, "--admin-token", ADMIN_TOKEN, "--master-key", MASTER_KEY,
  ]);
  const nodes = [];
  for (let i = 0; i < edges; i++) {
    nodes.push(
      await startNode("edge", `edge ${i}`, ["--nats-url", natsUrl, "--node-id", `edge${i}`, "--heartbeat-seconds", "5", ...edgeArgs]),
    );
  }
  for (const node of [api, ...nodes]) {
    await eventually(async () => (await fetch(`${node.url}/readyz`).catch(() => null))?.ok === true, `${node.url} to be ready`);
  }
  return {
    api: { url: api.url, adminToken: ADMIN_TOKEN },
    edges: nodes,
    async dispose() {
      for (const node of [...nodes, api]) await node.child.stop("SIGKILL");
      await nats.stop("SIGKILL");
      rmSync(store, { recursive: true, force: true });
      try {
        execFileSync(psql(), [adminUrl, "-q", "-c", `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`]);
      } catch {
        // The test Postgres is stopped with its data directory at the end of the run anyway.
      }
    },
  };
}
