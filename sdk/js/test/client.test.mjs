// The realtime client against a real Signalbox: connect, join, receive, publish, replies and
// errors, and what the backend can do to a connection.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  ConnectionClosedError,
  NotConnectedError,
  ServerError,
  SignalboxClient,
} from "../dist/index.js";
import { ApiError } from "../dist/server/index.js";
import { createApp, nextEvent, record, Signalbox, withDeadline } from "./support/signalbox.mjs";

let server;
let appClient;
const clients = [];

function client(options) {
  const created = new SignalboxClient({ url: server.wsUrl, ...options });
  clients.push(created);
  return created;
}

async function connectedClient(claims) {
  const { token } = await appClient.mintToken(claims);
  const created = client({ token });
  await withDeadline(created.connect(), "connect");
  return created;
}

before(async () => {
  server = await Signalbox.start();
  ({ appClient } = await createApp(server, { limits: { max_message_bytes: 1024 } }));
});

after(async () => {
  for (const each of clients) each.close();
  await server?.dispose();
});

describe("connecting", () => {
  test("resolves with the welcome and reports the states it went through", async () => {
    const { token } = await appClient.mintToken({ userId: "alice" });
    const alice = client({ token });
    const states = record(alice, "state");
    const connected = await withDeadline(alice.connect(), "connect");
    assert.equal(connected.userId, "alice");
    assert.equal(connected.reconnected, false);
    assert.match(connected.connectionId, /^[A-Za-z0-9_-]+$/);
    assert.equal(alice.state, "connected");
    assert.equal(alice.connectionId, connected.connectionId);
    assert.deepEqual(
      states.map((s) => s.state),
      ["connecting", "connected"],
    );
    const info = await appClient.connection(connected.connectionId);
    assert.equal(info.userId, "alice");
    assert.equal(info.protocol, "signalbox.json.v1");
  });

  test("requests before connecting fail with NotConnectedError", async () => {
    const { token } = await appClient.mintToken({ userId: "early", permissions: ["join:*"] });
    const early = client({ token });
    await assert.rejects(early.join("room-1"), (error) => error instanceof NotConnectedError && error.code === "not_connected");
  });
});

describe("groups and messages", () => {
  test("a joined group's messages arrive, from the backend and from clients", async () => {
    const alice = await connectedClient({ userId: "alice", permissions: ["join:room-*", "publish:room-*"] });
    const bob = await connectedClient({ userId: "bob", permissions: ["join:room-*", "publish:room-*"] });
    await alice.join("room-a");
    await bob.join("room-a");

    const chats = [];
    alice.onMessage("chat", (message) => chats.push(message));
    const fromBackend = nextEvent(alice, "message", (m) => m.data?.text === "from the backend");
    await appClient.publishToGroup("room-a", "chat", { text: "from the backend" });
    assert.deepEqual(await fromBackend, { event: "chat", data: { text: "from the backend" }, group: "room-a" });

    const fromBob = nextEvent(alice, "message", (m) => m.data?.text === "from bob");
    const echo = nextEvent(bob, "message", (m) => m.data?.text === "from bob");
    assert.deepEqual(await bob.publish("room-a", "chat", { text: "from bob" }), {});
    assert.equal((await fromBob).group, "room-a");
    assert.equal((await echo).event, "chat", "the publisher gets its own message too");
    assert.deepEqual(
      chats.map((m) => m.data.text),
      ["from the backend", "from bob"],
      "onMessage sees the chat events, in order",
    );
  });

  test("noEcho publishes to everyone but the sender", async () => {
    const alice = await connectedClient({ userId: "alice", groups: ["room-e"], permissions: ["publish:room-*"] });
    const bob = await connectedClient({ userId: "bob", groups: ["room-e"] });
    const bobMessages = record(bob, "message");
    const aliceMessages = record(alice, "message");
    await alice.publish("room-e", "chat", "quiet", { noEcho: true });
    // A message published after the noEcho one reaches both, in order: so if alice had got the
    // first one back, it would be in her list before this one.
    const marker = nextEvent(alice, "message", (m) => m.data === "marker");
    await appClient.publishToGroup("room-e", "chat", "marker");
    await marker;
    await nextEvent(bob, "message", (m) => m.data === "marker").catch(() => {});
    assert.deepEqual(aliceMessages.map((m) => m.data), ["marker"]);
    assert.deepEqual(bobMessages.map((m) => m.data), ["quiet", "marker"]);
  });

  test("leave stops the messages of a group", async () => {
    const alice = await connectedClient({ userId: "alice", permissions: ["join:room-*"] });
    await alice.join("room-l");
    await alice.join("room-m");
    await alice.leave("room-l");
    const received = record(alice, "message");
    await appClient.publishToGroup("room-l", "chat", "after leaving");
    const marker = nextEvent(alice, "message", (m) => m.data === "marker");
    await appClient.publishToGroup("room-m", "chat", "marker");
    await marker;
    assert.deepEqual(received.map((m) => m.data), ["marker"]);
  });

  test("messages to a user, a connection and everyone carry no group", async () => {
    const carol = await connectedClient({ userId: "carol" });
    const toUser = nextEvent(carol, "message", (m) => m.event === "to-user");
    await appClient.publishToUser("carol", "to-user", 1);
    assert.deepEqual(await toUser, { event: "to-user", data: 1 });
    const toConnection = nextEvent(carol, "message", (m) => m.event === "to-connection");
    await appClient.publishToConnection(carol.connectionId, "to-connection", [1, 2]);
    assert.deepEqual((await toConnection).data, [1, 2]);
    const toAll = nextEvent(carol, "message", (m) => m.event === "to-all");
    await appClient.broadcast("to-all", null);
    assert.deepEqual(await toAll, { event: "to-all", data: null });
  });

  test("the backend can add a connection or a user to a group, and take them out again", async () => {
    const dave = await connectedClient({ userId: "dave" });
    await appClient.addConnectionToGroup("room-rest", dave.connectionId);
    const first = nextEvent(dave, "message", (m) => m.data === "one");
    await appClient.publishToGroup("room-rest", "chat", "one");
    assert.equal((await first).group, "room-rest");
    await appClient.removeConnectionFromGroup("room-rest", dave.connectionId);
    assert.deepEqual((await appClient.connection(dave.connectionId)).groups, []);

    await appClient.addUserToGroup("room-user", "dave");
    assert.deepEqual((await appClient.connection(dave.connectionId)).groups, ["room-user"]);
    await appClient.removeUserFromGroup("room-user", "dave");
    assert.deepEqual((await appClient.connection(dave.connectionId)).groups, []);
  });
});

describe("errors", () => {
  test("a join the token does not permit is refused with forbidden", async () => {
    const eve = await connectedClient({ userId: "eve", permissions: ["join:room-*"] });
    const error = await eve.join("admins").then(
      () => assert.fail("the join succeeded"),
      (e) => e,
    );
    assert.ok(error instanceof ServerError);
    assert.equal(error.code, "forbidden");
    assert.equal(error.retryable, false);
    assert.match(error.message, /admins/);
    assert.deepEqual((await appClient.connection(eve.connectionId)).groups, []);
  });

  test("a publish over the app's max_message_bytes is refused with message_too_large", async () => {
    const frank = await connectedClient({ userId: "frank", permissions: ["publish:room-*"] });
    const big = "x".repeat(2048);
    await assert.rejects(frank.publish("room-1", "chat", big), (e) => e instanceof ServerError && e.code === "message_too_large");
    // The connection is still usable.
    assert.deepEqual(await frank.publish("room-1", "chat", "small"), {});
    // The REST API says the same, as a problem.
    const error = await appClient.publishToGroup("room-1", "chat", big).then(
      () => assert.fail("the publish succeeded"),
      (e) => e,
    );
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 413);
    // REST carries the same code as the socket (docs/protocol.md).
    assert.equal(error.code, "message_too_large");
    assert.ok(error.detail.length > 0);
  });

  test("a name that breaks the naming rule is refused with invalid_name", async () => {
    const grace = await connectedClient({ userId: "grace", permissions: ["join:*"] });
    await assert.rejects(grace.join("a\u0001b"), (e) => e instanceof ServerError && e.code === "invalid_name");
  });

  test("closed by the backend: 4000, no reconnect, pending requests fail", async () => {
    const henry = await connectedClient({ userId: "henry", permissions: ["join:*"] });
    const reconnecting = record(henry, "reconnecting");
    const disconnected = nextEvent(henry, "disconnected");
    await appClient.closeConnection(henry.connectionId, { reason: "bye henry" });
    assert.deepEqual(await disconnected, { code: 4000, reason: "bye henry" });
    assert.equal(henry.state, "disconnected");
    assert.deepEqual(reconnecting, [], "4000 means give up");
    await assert.rejects(henry.join("room-1"), NotConnectedError);
    await assert.rejects(henry.connect(), (e) => e instanceof ConnectionClosedError);
  });

  test("close() ends the client: requests in flight and later fail, nothing reconnects", async () => {
    const ivy = await connectedClient({ userId: "ivy" });
    const disconnected = nextEvent(ivy, "disconnected");
    const ping = ivy.ping();
    ivy.close();
    await assert.rejects(ping, (e) => e instanceof ConnectionClosedError && e.code === "closed");
    assert.equal((await disconnected).code, 1000);
    await assert.rejects(ivy.ping(), NotConnectedError);
  });
});
