// Webhooks from a real Signalbox: a client event goes to the app's webhook and its answer
// comes back as the reply; the requests verify with the secret, also through a rotation, and
// a replayed request is refused.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";

import { ServerError, SignalboxClient } from "../dist/index.js";
import { verifyWebhook } from "../dist/server/index.js";
import { createApp, Signalbox, withDeadline } from "./support/signalbox.mjs";

let server;
let receiver;
/** What the webhook receiver got, and how it answers. */
const received = [];
let answer = (body) => ({ status: 200, body: JSON.stringify({ echo: body.data }) });
const clients = [];

before(async () => {
  server = await Signalbox.start();
  receiver = createServer(async (request, response) => {
    const chunks = [];
    for await (const chunk of request) chunks.push(chunk);
    const raw = Buffer.concat(chunks);
    const body = JSON.parse(raw.toString("utf8"));
    received.push({ raw, body, signature: request.headers["signalbox-signature"] });
    const { status, body: out } = answer(body);
    response.writeHead(status, { "content-type": "application/json" }).end(out);
  });
  await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
});

after(async () => {
  for (const each of clients) each.close();
  await new Promise((resolve) => receiver?.close(resolve));
  await server?.dispose();
});

async function connect(appClient, userId) {
  const { token } = await appClient.mintToken({ userId });
  const client = new SignalboxClient({ url: server.wsUrl, token });
  clients.push(client);
  await withDeadline(client.connect(), "connect");
  return client;
}

test("a client event with no webhook for events is refused with no_upstream", async () => {
  const { appClient } = await createApp(server);
  const alice = await connect(appClient, "alice");
  await assert.rejects(alice.send("greet", { hi: 1 }), (e) => e instanceof ServerError && e.code === "no_upstream");
});

test("a client event reaches the webhook, signed; its answer is the reply; a failure is upstream_failed", async () => {
  const { app, management, appClient } = await createApp(server);
  const url = `http://127.0.0.1:${receiver.address().port}/hook`;
  const webhook = await management.createWebhook(app, { url, events: ["event"] });
  assert.ok(webhook.secret, "the secret is shown at creation");
  const bob = await connect(appClient, "bob");

  const before = received.length;
  assert.deepEqual(await bob.send("greet", { text: "hello" }), { echo: { text: "hello" } });
  const request = received[before];
  assert.equal(request.body.event, "greet");
  assert.equal(request.body.user_id, "bob");
  assert.equal(request.body.connection_id, bob.connectionId);
  assert.ok(verifyWebhook(request.raw, request.signature, { secrets: webhook.secret }).timestamp > 0);
  assert.throws(
    () => verifyWebhook(request.raw, request.signature, { secrets: webhook.secret, now: Math.floor(Date.now() / 1000) + 600 }),
    (e) => e.code === "timestamp_out_of_tolerance",
    "the same request replayed ten minutes later",
  );

  answer = () => ({ status: 500, body: "{}" });
  try {
    const error = await bob.send("greet", {}).catch((e) => e);
    assert.ok(error instanceof ServerError);
    assert.equal(error.code, "upstream_failed");
    assert.equal(error.retryable, true);
  } finally {
    answer = (body) => ({ status: 200, body: JSON.stringify({ echo: body.data }) });
  }
});

test("a secret rotation: both secrets sign until the old one is dropped", async () => {
  const { app, management, appClient } = await createApp(server);
  const url = `http://127.0.0.1:${receiver.address().port}/hook`;
  const created = await management.createWebhook(app, { url, events: ["event"] });
  const carol = await connect(appClient, "carol");
  const lastRequest = async () => {
    const before = received.length;
    await carol.send("ping", null);
    return received[before];
  };

  const rotated = await management.updateWebhook(app, created.id, { rotateSecret: true });
  assert.ok(rotated.secret && rotated.secret !== created.secret);
  assert.equal(rotated.rotating, true);
  const during = await lastRequest();
  assert.equal(during.signature.match(/v1=/g).length, 2, "one signature per live secret");
  for (const secrets of [created.secret, rotated.secret]) {
    assert.ok(verifyWebhook(during.raw, during.signature, { secrets }));
  }

  await management.updateWebhook(app, created.id, { dropPreviousSecret: true });
  const after = await lastRequest();
  assert.ok(verifyWebhook(after.raw, after.signature, { secrets: rotated.secret }));
  assert.throws(() => verifyWebhook(after.raw, after.signature, { secrets: created.secret }), (e) => e.code === "signature_mismatch");
});
