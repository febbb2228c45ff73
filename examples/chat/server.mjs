#!/usr/bin/env node
// The chat demo's backend: what a tenant's backend does for a realtime app, in ~100 lines.
// It sets up a tenant, an app (rooms keep history; members hear who comes and goes) and a key,
// serves the page and the SDK, and mints a client token for each visitor. Browsers never see
// the key, only tokens.
//
//   cargo run --release -p signalbox -- serve      # in one terminal
//   node examples/chat/server.mjs                  # in another; open the URL it prints
//
// Settings (environment): SIGNALBOX_URL (http://127.0.0.1:8080), SIGNALBOX_ADMIN_TOKEN or
// SIGNALBOX_ADMIN_TOKEN_FILE (./signalbox-data/admin-token), HOST (127.0.0.1), PORT (3000; 0 = any).

import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, extname, join, normalize } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const SDK = join(HERE, "../../sdk/js");
const PUBLIC = join(HERE, "public");

const signalboxUrl = (process.env.SIGNALBOX_URL ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
const adminToken =
  process.env.SIGNALBOX_ADMIN_TOKEN ||
  readFileSync(process.env.SIGNALBOX_ADMIN_TOKEN_FILE ?? "signalbox-data/admin-token", "utf8").trim();

// The page imports the built SDK; build it once if this checkout has not yet.
if (!existsSync(join(SDK, "dist/index.js"))) {
  console.log("building the SDK (sdk/js) once…");
  const npm = (...args) => spawnSync("npm", args, { cwd: SDK, stdio: "inherit" }).status === 0;
  if (!(existsSync(join(SDK, "node_modules")) || npm("ci")) || !npm("run", "build")) process.exit(1);
}
const { AppClient, ManagementClient } = await import(pathToFileURL(join(SDK, "dist/server/index.js")).href);

// One tenant, app and key per start of the demo.
const operator = new ManagementClient({ url: signalboxUrl, token: adminToken });
const tenant = await operator.createTenant("chat-demo");
const management = new ManagementClient({ url: signalboxUrl, token: tenant.token });
const app = await management.createApp("chat", {
  history: { groups: ["room-*"], max_age_seconds: 3600 },
  presence: { events: "members" },
});
const key = await management.createKey(app.id, { name: "chat demo backend" });
const signalbox = new AppClient({ url: signalboxUrl, app: app.id, key: key.credential });

const USER = /^[\p{L}\p{N}_.-]{1,32}$/u;
const ROOM = /^[a-z0-9-]{1,32}$/;

/** A token for one user in one room: join, publish and presence there, nothing else. */
async function token(user, room) {
  const group = `room-${room}`;
  const minted = await signalbox.mintToken({
    userId: user,
    permissions: [`join:${group}`, `publish:${group}`],
    info: { name: user },
    ttlSeconds: 3600,
  });
  return { token: minted.token, group };
}

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".map": "application/json" };

function sendFile(response, root, path) {
  const file = normalize(join(root, path));
  if (!file.startsWith(root + "/") || !existsSync(file)) return send(response, 404, "text/plain", "not found");
  send(response, 200, TYPES[extname(file)] ?? "application/octet-stream", readFileSync(file));
}

function send(response, status, type, body) {
  response.writeHead(status, { "content-type": `${type}; charset=utf-8`, "cache-control": "no-store" }).end(body);
}

const server = createServer(async (request, response) => {
  const url = new URL(request.url, "http://localhost");
  try {
    if (url.pathname === "/config") {
      const ws = signalboxUrl.replace(/^http/, "ws") + "/client";
      return send(response, 200, "application/json", JSON.stringify({ signalboxUrl: ws }));
    }
    if (url.pathname === "/token") {
      const user = url.searchParams.get("user") ?? "";
      const room = url.searchParams.get("room") ?? "";
      if (!USER.test(user) || !ROOM.test(room)) {
        return send(response, 400, "text/plain", "user: 1-32 letters, digits, _ . -; room: 1-32 of a-z 0-9 -");
      }
      return send(response, 200, "application/json", JSON.stringify(await token(user, room)));
    }
    if (url.pathname.startsWith("/sdk/")) return sendFile(response, join(SDK, "dist"), url.pathname.slice(5));
    return sendFile(response, PUBLIC, url.pathname === "/" ? "index.html" : url.pathname);
  } catch (error) {
    // Signalbox unreachable or refusing (a restart, say): the page's client retries by itself.
    console.error(`${url.pathname}: ${error.message}`);
    send(response, 502, "text/plain", `Signalbox: ${error.message}`);
  }
});

server.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? "127.0.0.1", () => {
  const { address, port } = server.address();
  console.log(`Chat demo: http://${address}:${port}/  (Signalbox ${signalboxUrl}, app ${app.id})`);
});
