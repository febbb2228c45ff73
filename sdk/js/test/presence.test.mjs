// Presence: who is in a group, asked by a client or by the backend, and the events members
// hear when others come and go.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { ServerError, SignalboxClient } from "../dist/index.js";
import { createApp, eventually, nextEvent, Signalbox, withDeadline } from "./support/signalbox.mjs";

let server;
const clients = [];

before(async () => {
  server = await Signalbox.start();
});

after(async () => {
  for (const each of clients) each.close();
  await server?.dispose();
});

async function connect(appClient, claims) {
  const { token } = await appClient.mintToken(claims);
  const client = new SignalboxClient({ url: server.wsUrl, token });
  clients.push(client);
  await withDeadline(client.connect(), "connect");
  return client;
}

test("members mode: joins and leaves are told to the group; a snapshot counts users and connections", async () => {
  const { appClient } = await createApp(server, { presence: { events: "members" } });
  const room = { permissions: ["join:room-*"] };
  const alice = await connect(appClient, { userId: "alice", info: { name: "Alice" }, ...room });
  await alice.join("room-p");

  const bobJoined = nextEvent(alice, "presence", (e) => e.joined?.some((j) => j.userId === "bob"));
  const bob = await connect(appClient, { userId: "bob", ...room });
  await bob.join("room-p");
  const joined = await bobJoined;
  assert.equal(joined.group, "room-p");
  assert.deepEqual(
    joined.joined.find((j) => j.userId === "bob"),
    { userId: "bob", connectionId: bob.connectionId },
  );

  const bobPhone = await connect(appClient, { userId: "bob", ...room });
  await bobPhone.join("room-p");
  const anonymous = await connect(appClient, room);
  await anonymous.join("room-p");

  const snapshot = await alice.presence("room-p");
  assert.equal(snapshot.count, 2, "two users");
  assert.equal(snapshot.connections, 4, "four connections, the anonymous one included");
  const members = [...snapshot.members].sort((a, b) => a.userId.localeCompare(b.userId));
  assert.deepEqual(members, [
    { userId: "alice", connections: 1, info: { name: "Alice" } },
    { userId: "bob", connections: 2 },
  ]);

  // The backend sees the same, paged.
  const rest = await appClient.groupPresence("room-p");
  assert.equal(rest.count, 2);
  assert.equal(rest.connections, 4);
  assert.deepEqual(
    rest.members.map((m) => [m.userId, m.connections]).sort(),
    [["alice", 1], ["bob", 2]],
  );
  assert.deepEqual(rest.members.find((m) => m.userId === "alice").info, { name: "Alice" });
  const firstPage = await appClient.groupPresence("room-p", { limit: 1 });
  assert.equal(firstPage.members.length, 1);
  assert.ok(firstPage.next !== undefined, "a next page");
  const secondPage = await appClient.groupPresence("room-p", { limit: 1, after: firstPage.next });
  assert.deepEqual(
    [...firstPage.members, ...secondPage.members].map((m) => m.userId).sort(),
    ["alice", "bob"],
  );
  assert.deepEqual(await appClient.userPresence("bob"), { online: true, connections: 2 });
  assert.deepEqual(await appClient.userPresence("nobody"), { online: false, connections: 0 });

  // Leaving is told too, and the snapshot follows.
  const bobConnection = bob.connectionId;
  const bobLeft = nextEvent(alice, "presence", (e) => e.left?.some((l) => l.connectionId === bobConnection));
  bob.close();
  const left = await bobLeft;
  assert.equal(left.group, "room-p");
  assert.deepEqual(left.left.find((l) => l.connectionId === bobConnection), { userId: "bob", connectionId: bobConnection });
  await eventually(async () => (await alice.presence("room-p")).connections === 3, "the snapshot without bob's first connection");
});

test("count mode: members hear the new count", async () => {
  const { appClient } = await createApp(server, { presence: { events: "count" } });
  const room = { permissions: ["join:room-*"] };
  const carol = await connect(appClient, { userId: "carol", ...room });
  await carol.join("room-c");
  const counted = nextEvent(carol, "presence", (e) => e.group === "room-c" && e.count === 2);
  const dan = await connect(appClient, { userId: "dan", ...room });
  await dan.join("room-c");
  const event = await counted;
  assert.equal(event.joined, undefined, "count mode sends no lists");
});

test("presence of a group the token may not join is refused", async () => {
  const { appClient } = await createApp(server);
  const erin = await connect(appClient, { userId: "erin", permissions: ["join:room-*"] });
  await assert.rejects(erin.presence("admins"), (e) => e instanceof ServerError && e.code === "forbidden");
  const allowed = await erin.presence("room-empty");
  assert.deepEqual(allowed, { count: 0, connections: 0, members: [] });
});
