// Tokens: refused ones (a typed close, not an exception), providers called on every connect
// and before expiry, new tokens after a refusal or a revoked key, and locally signed tokens.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { ConnectionClosedError, SignalboxClient, TokenProviderError, tokenExpiry } from "../dist/index.js";
import { AppClient, signClientToken } from "../dist/server/index.js";
import { TcpProxy } from "./support/proxy.mjs";
import { createApp, eventually, nextEvent, record, Signalbox, withDeadline } from "./support/signalbox.mjs";

let server;
let app;
let appClient;
let management;
const clients = [];

function client(options) {
  const created = new SignalboxClient({ url: server.wsUrl, reconnect: { minDelayMs: 20, maxDelayMs: 100 }, ...options });
  clients.push(created);
  return created;
}

before(async () => {
  server = await Signalbox.start();
  ({ app, appClient, management } = await createApp(server));
});

after(async () => {
  for (const each of clients) each.close();
  await server?.dispose();
});

test("an invalid fixed token: connect() rejects with close code 4401 and the client is disconnected", async () => {
  const bad = client({ token: "not.a.token" });
  const disconnected = nextEvent(bad, "disconnected");
  const error = await bad.connect().then(
    () => assert.fail("connected with a bad token"),
    (e) => e,
  );
  assert.ok(error instanceof ConnectionClosedError);
  assert.equal(error.closeCode, 4401);
  assert.equal(error.action, "reauthenticate");
  assert.equal((await disconnected).code, 4401);
  assert.equal(bad.state, "disconnected");
});

test("a token signed with the wrong secret is refused the same way", async () => {
  const forged = signClientToken({ app, keyId: "key_forged", secret: "guess" }, { userId: "mallory" });
  const error = await client({ token: forged }).connect().catch((e) => e);
  assert.equal(error.closeCode, 4401);
});

test("a provider whose token is refused is asked again, and the client connects", async () => {
  const handed = [];
  const recovering = client({
    tokenProvider: async () => {
      const token = handed.length === 0 ? "garbage" : (await appClient.mintToken({ userId: "second-try" })).token;
      handed.push(token);
      return token;
    },
  });
  const reconnecting = record(recovering, "reconnecting");
  const welcome = await withDeadline(recovering.connect(), "connect with the second token");
  assert.equal(welcome.userId, "second-try");
  assert.equal(reconnecting[0].code, 4401);
  assert.equal(handed.length, 2);
});

test("a revoked key closes its clients with 4403; the provider's token from a new key lets them back", async () => {
  const first = await management.createKey(app);
  const second = await management.createKey(app);
  let signingKey = first.credential;
  const rotating = client({
    tokenProvider: () => new AppClient({ url: server.url, app, key: signingKey }).signToken({ userId: "rotator" }),
  });
  const firstConnection = await withDeadline(rotating.connect(), "connect");
  const dropped = nextEvent(rotating, "reconnecting");
  const back = nextEvent(rotating, "connected");
  signingKey = second.credential;
  await management.revokeKey(app, first.id);
  const closed = await dropped;
  assert.equal(closed.code, 4403);
  assert.equal(closed.delayMs, 0, "a new token, then at once");
  const reconnected = await back;
  assert.notEqual(reconnected.connectionId, firstConnection.connectionId);
  assert.equal(reconnected.userId, "rotator");
});

test("the provider is called again before the token expires, without dropping the connection", async () => {
  const issued = [];
  const refreshing = client({
    tokenProvider: async () => {
      const minted = await appClient.mintToken({ userId: "long-lived", ttlSeconds: 3 });
      issued.push(minted);
      return minted.token;
    },
  });
  const connected = record(refreshing, "connected");
  await withDeadline(refreshing.connect(), "connect");
  await eventually(() => issued.length >= 2, "a refresh before exp");
  assert.equal(tokenExpiry(issued[0].token), issued[0].expiresAt, "exp read from the JWT payload");
  assert.equal(connected.length, 1, "the connection stayed up");
  assert.equal(refreshing.state, "connected");
});

test("when the provider fails at a reconnect, the unexpired token held lets the client back in", async () => {
  const proxy = await TcpProxy.start(server.port);
  let providerUp = true;
  const resilient = client({
    url: proxy.wsUrl,
    tokenProvider: async () => {
      if (!providerUp) throw new Error("the backend is unreachable too");
      return (await appClient.mintToken({ userId: "resilient" })).token;
    },
  });
  try {
    await withDeadline(resilient.connect(), "connect");
    const providerError = nextEvent(resilient, "error", (e) => e instanceof TokenProviderError);
    const back = nextEvent(resilient, "connected");
    providerUp = false;
    proxy.dropAll();
    const error = await providerError;
    assert.equal(error.code, "token_provider_failed");
    assert.match(error.message, /unreachable/);
    assert.equal((await back).reconnected, true);
  } finally {
    resilient.close();
    await proxy.close();
  }
});

test("a token signed locally connects like a minted one, with its groups and permissions", async () => {
  const token = appClient.signToken({
    userId: "local",
    groups: ["room-local"],
    permissions: ["publish:room-*"],
    info: { name: "Local" },
    ttlSeconds: 60,
  });
  const local = client({ token });
  const welcome = await withDeadline(local.connect(), "connect");
  assert.equal(welcome.userId, "local");
  assert.deepEqual((await appClient.connection(welcome.connectionId)).groups, ["room-local"]);
  const echo = nextEvent(local, "message", (m) => m.data === "signed here");
  await local.publish("room-local", "chat", "signed here");
  assert.equal((await echo).group, "room-local");
  const exp = tokenExpiry(token);
  assert.ok(exp > Date.now() / 1000 && exp <= Date.now() / 1000 + 61);
});
