// The README's examples are the files in examples/, shown verbatim (checked here), and each one
// runs here against a real Signalbox: what a reader copies is what was tested.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { signWebhook } from "../dist/server/index.js";
import { joinRoom } from "../examples/resilient.mjs";
import { webhookHandler } from "../examples/webhook-server.mjs";
import { TcpProxy } from "./support/proxy.mjs";
import { createApp, eventually, Signalbox, withDeadline } from "./support/signalbox.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const run = promisify(execFile);

const HISTORY = { history: { groups: ["room-*"] } };
let server;

before(async () => {
  server = await Signalbox.start();
});

after(async () => {
  await server?.dispose();
});

test("every example shown in the README is the file it names, verbatim", () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const shown = [...readme.matchAll(/<!-- example: (\S+) -->\n```js\n([\s\S]*?)```/g)];
  assert.deepEqual(
    shown.map((match) => match[1]).sort(),
    ["examples/backend.mjs", "examples/quickstart.mjs", "examples/resilient.mjs", "examples/webhook-server.mjs"],
  );
  for (const [, file, code] of shown) {
    assert.equal(code, readFileSync(join(ROOT, file), "utf8"), `${file} as shown in the README`);
  }
});

/** Runs an example as a program, against an app of its own. */
async function runExample(file) {
  const { app, key } = await createApp(server, HISTORY);
  const env = { ...process.env, SIGNALBOX_URL: server.url, SIGNALBOX_APP: app, SIGNALBOX_KEY: key.credential };
  const { stdout } = await withDeadline(run("node", [join(ROOT, file)], { env }), file);
  return stdout.trim().split("\n");
}

test("examples/quickstart.mjs: connect, join, publish, receive, a refused join", async () => {
  const lines = await runExample("examples/quickstart.mjs");
  assert.deepEqual(lines.slice(0, 2), ["state: connecting", "state: connected"]);
  assert.match(lines[2], /^connected as alice \(\S+\)$/);
  assert.deepEqual(lines.slice(3), [
    "chat in room-1: hello from the client",
    "chat in room-1: hello from the backend",
    "join refused: forbidden",
    "state: disconnected",
  ]);
});

test("examples/backend.mjs: tokens, idempotent publishes, membership, history, errors", async () => {
  const lines = await runExample("examples/backend.mjs");
  assert.match(lines[0], /^minted a token until \d+; signed one of \d+ characters$/);
  assert.match(lines[1], /^published \S+; the retry got the same id$/);
  assert.equal(lines[2], "room-1 history: hi");
  assert.equal(lines[3], "room-1: 0 online; bob is offline");
  assert.equal(lines[4], "error: 404 not_found");
});

test("examples/resilient.mjs: across a dropped network, every chat message once, and the user is told", async () => {
  const { appClient } = await createApp(server, HISTORY);
  const proxy = await TcpProxy.start(server.port);
  const chats = [];
  const statuses = [];
  const client = await joinRoom({
    url: proxy.wsUrl,
    room: "room-resilient",
    getToken: async () => (await appClient.mintToken({ userId: "reader", permissions: ["join:room-*"] })).token,
    onChat: (message) => chats.push(message.data),
    status: (text) => statuses.push(text),
  });
  try {
    await appClient.publishToGroup("room-resilient", "chat", "one");
    await eventually(() => chats.length === 1, "the first message");
    proxy.refuse(true);
    proxy.dropAll();
    await eventually(() => statuses.some((s) => s.startsWith("connection lost (1006")), "the drop reported");
    await appClient.publishToGroup("room-resilient", "chat", "two");
    proxy.refuse(false);
    await eventually(() => statuses.includes("nothing was missed"), "the recovery reported");
    await appClient.publishToGroup("room-resilient", "chat", "three");
    await eventually(() => chats.length === 3, "the third message");
    assert.deepEqual(chats, ["one", "two", "three"]);
    assert.equal(statuses[0], "connected");
    assert.ok(statuses.includes("reconnected"));
  } finally {
    client.close();
    await proxy.close();
  }
});

test("examples/webhook-server.mjs: signed requests are handled, others get 401 with the reason", async () => {
  const handled = [];
  const secrets = ["whsec_new", "whsec_old"];
  const http = createServer(webhookHandler({ secrets, handle: async (event) => (handled.push(event), { ok: true }) }));
  await new Promise((resolve) => http.listen(0, "127.0.0.1", resolve));
  const endpoint = `http://127.0.0.1:${http.address().port}/webhooks/signalbox`;
  const post = (body, signature) =>
    fetch(endpoint, { method: "POST", body, headers: signature ? { "signalbox-signature": signature } : {} });
  try {
    const body = JSON.stringify({ type: "signalbox.event", data: { event: "hello" } });
    const now = Math.floor(Date.now() / 1000);
    const good = await post(body, signWebhook(body, "whsec_old", now));
    assert.equal(good.status, 200);
    assert.deepEqual(await good.json(), { ok: true });
    assert.deepEqual(handled, [JSON.parse(body)]);

    const cases = [
      [body, undefined, "missing_signature"],
      [body.replace("hello", "HELLO"), signWebhook(body, "whsec_new", now), "signature_mismatch"],
      [body, signWebhook(body, "whsec_new", now - 3600), "timestamp_out_of_tolerance"],
      [body, signWebhook(body, "whsec_unknown", now), "signature_mismatch"],
    ];
    for (const [sent, signature, reason] of cases) {
      const refused = await post(sent, signature);
      assert.equal(refused.status, 401);
      assert.equal(await refused.text(), reason);
    }
    assert.equal(handled.length, 1, "no refused request reached the handler");
  } finally {
    await new Promise((resolve) => http.close(resolve));
  }
});
