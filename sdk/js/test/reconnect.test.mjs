// Staying connected: a server that is not there yet, a server restart, a network that drops,
// a server that goes silent — and recovering what was missed meanwhile.

import assert from "node:assert/strict";
import net from "node:net";
import { after, test } from "node:test";

import { SignalboxClient } from "../dist/index.js";
import { TcpProxy } from "./support/proxy.mjs";
import { createApp, eventually, nextEvent, record, Signalbox, withDeadline } from "./support/signalbox.mjs";

const cleanups = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

function track(client) {
  cleanups.push(() => client.close());
  return client;
}

async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test("a server that is down at start: reconnecting events, no unhandled rejection, then connected", async () => {
  // Create the app first, then stop the server: its data dir keeps the key, so a token signed
  // now is valid once it is back.
  const server = await Signalbox.start({ port: await freePort() });
  cleanups.push(() => server.dispose());
  const { appClient } = await createApp(server);
  await server.stop();

  const unhandled = [];
  const onUnhandled = (reason) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  try {
    const client = track(
      new SignalboxClient({
        url: server.wsUrl,
        tokenProvider: () => appClient.signToken({ userId: "early-bird" }),
        reconnect: { minDelayMs: 50, maxDelayMs: 200 },
      }),
    );
    const states = record(client, "state");
    const reconnecting = record(client, "reconnecting");
    const connected = client.connect();
    await eventually(() => reconnecting.length >= 3, "three failed attempts");
    assert.equal(client.state === "reconnecting" || client.state === "connecting", true);
    for (const event of reconnecting) {
      assert.equal(event.code, 1006, "no server: no close frame");
      assert.ok(event.delayMs >= 0 && event.delayMs <= 200, `delay ${event.delayMs} within the backoff bound`);
    }
    assert.deepEqual(
      reconnecting.map((e) => e.failures),
      reconnecting.map((_, i) => i + 1),
      "each failed attempt counts",
    );

    await server.start();
    const welcome = await withDeadline(connected, "connect once the server is up");
    assert.equal(welcome.userId, "early-bird");
    assert.equal(client.state, "connected");
    assert.deepEqual(states.slice(0, 3).map((s) => s.state), ["connecting", "reconnecting", "connecting"]);
    assert.equal(states.at(-1).state, "connected");
    assert.deepEqual(unhandled, []);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});

test("a restart: reconnect at once on 1001, back off while it is down, rejoin groups, new token, history recovered", async () => {
  const server = await Signalbox.start({ port: await freePort() });
  cleanups.push(() => server.dispose());
  const { appClient } = await createApp(server, { history: { groups: ["room-*"] } });
  let tokensIssued = 0;
  const client = track(
    new SignalboxClient({
      url: server.wsUrl,
      tokenProvider: async () => {
        tokensIssued += 1;
        return (await appClient.mintToken({ userId: "restarter", permissions: ["join:*"] })).token;
      },
      reconnect: { minDelayMs: 50, maxDelayMs: 200 },
    }),
  );
  await withDeadline(client.connect(), "connect");
  await client.join("room-h"); // history
  await client.join("plain"); // no history
  const before = nextEvent(client, "message", (m) => m.data === "before");
  await appClient.publishToGroup("room-h", "chat", "before");
  const seq = (await before).seq;
  assert.equal(typeof seq, "number");
  assert.deepEqual(client.positions(), { "room-h": seq });

  const reconnecting = record(client, "reconnecting");
  const recovery = nextEvent(client, "recovery");
  const reconnected = nextEvent(client, "connected");
  await server.stop();
  // While it shuts down the server may still take (and close) an attempt; once it is gone,
  // attempts fail with no close frame at all.
  await eventually(() => reconnecting.slice(1).some((e) => e.code === 1006), "an attempt while the server is down");
  assert.equal(reconnecting[0].code, 1001, "the server said it is going away");
  assert.equal(reconnecting[0].delayMs, 0, "1001 means reconnect at once");

  await server.start();
  assert.equal((await reconnected).reconnected, true);
  // The embedded server keeps history on disk: the restart cost the client nothing.
  const outcome = await recovery;
  assert.deepEqual(outcome, { recovered: true, groups: [{ group: "room-h", recovered: true }] });
  assert.ok(tokensIssued >= 2, "a new token for the new connection");

  // Both groups are joined again: the one with history through `recover`, the other by a join.
  await eventually(async () => (await appClient.connection(client.connectionId)).groups.length === 2, "both groups rejoined");
  assert.deepEqual((await appClient.connection(client.connectionId)).groups.sort(), ["plain", "room-h"]);
  const plain = nextEvent(client, "message", (m) => m.data === "plain again");
  await appClient.publishToGroup("plain", "chat", "plain again");
  assert.equal((await plain).group, "plain");
});

test("a dropped network: the client recovers exactly the messages it missed, in order, once", async () => {
  const server = await Signalbox.start();
  cleanups.push(() => server.dispose());
  const proxy = await TcpProxy.start(server.port);
  cleanups.push(() => proxy.close());
  const { appClient } = await createApp(server, { history: { groups: ["room-*"] } });
  const { token } = await appClient.mintToken({ userId: "commuter", permissions: ["join:room-*"] });
  const client = track(new SignalboxClient({ url: proxy.wsUrl, token, reconnect: { minDelayMs: 20, maxDelayMs: 100 } }));
  const messages = record(client, "message");
  await withDeadline(client.connect(), "connect");
  await client.join("room-r");
  const first = nextEvent(client, "message", (m) => m.data === 1);
  await appClient.publishToGroup("room-r", "n", 1);
  await first;

  // The network goes away and stays away while the backend publishes two messages.
  const reconnecting = record(client, "reconnecting");
  proxy.refuse(true);
  proxy.dropAll();
  await eventually(() => reconnecting.length >= 2, "failed attempts while the network is down");
  assert.equal(reconnecting[0].code, 1006);
  await appClient.publishToGroup("room-r", "n", 2);
  await appClient.publishToGroup("room-r", "n", 3);

  const recovery = nextEvent(client, "recovery");
  proxy.refuse(false);
  assert.deepEqual(await recovery, { recovered: true, groups: [{ group: "room-r", recovered: true }] });
  const last = nextEvent(client, "message", (m) => m.data === 4);
  await appClient.publishToGroup("room-r", "n", 4);
  await last;

  assert.deepEqual(messages.map((m) => m.data), [1, 2, 3, 4]);
  const seqs = messages.map((m) => m.seq);
  assert.deepEqual([...seqs].sort((a, b) => a - b), seqs, "in position order");
  assert.equal(new Set(seqs).size, 4, "none twice");
});

test("a silent server is taken for dead after two heartbeat intervals, and the client reconnects", async () => {
  const server = await Signalbox.start({ extraArgs: ["--heartbeat-seconds", "1"] });
  cleanups.push(() => server.dispose());
  const proxy = await TcpProxy.start(server.port);
  cleanups.push(() => proxy.close());
  const { appClient } = await createApp(server);
  const { token } = await appClient.mintToken({ userId: "listener" });
  const client = track(new SignalboxClient({ url: proxy.wsUrl, token, reconnect: { minDelayMs: 20, maxDelayMs: 100 } }));
  const first = await withDeadline(client.connect(), "connect");

  const reconnecting = nextEvent(client, "reconnecting");
  const reconnected = nextEvent(client, "connected");
  proxy.freeze(); // The socket stays open; nothing passes any more.
  const dropped = await reconnecting;
  assert.equal(dropped.code, 1006);
  assert.match(dropped.reason, /nothing heard from the server/);
  const second = await reconnected;
  assert.notEqual(second.connectionId, first.connectionId);
});
