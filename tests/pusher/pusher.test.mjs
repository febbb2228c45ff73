// Pusher Channels compatibility: the unmodified pusher-js client (npm) and the pusher server
// library (npm) against a real `signalbox serve` — public, private and encrypted channels,
// client events, triggers (with socket exclusion), batches and channel info through Pusher's
// signed HTTP API, and the refusals Pusher documents.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";

import Echo from "laravel-echo";
import PusherClient from "pusher-js";
import PusherServer from "pusher";

import { SignalboxClient } from "../../sdk/js/dist/index.js";
import { Signalbox, createApp, eventually, withDeadline } from "../../sdk/js/test/support/signalbox.mjs";
import { clusterUnavailable, startCluster } from "../signalr/support/cluster.mjs";

let server;
let credentials;
let backend;
let appClient;
let auth;
const authorizations = [];

/** The tenant's auth endpoint, as a Pusher app has one: it signs with the server library. */
function startAuthEndpoint(sign) {
  const http = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => (body += chunk));
    request.on("end", () => {
      const form = new URLSearchParams(body);
      // pusher-js's user authentication (sign-in) posts here too, without a channel.
      if (request.url.startsWith("/pusher/user-auth")) {
        const user = form.get("user");
        const answer = backend.authenticateUser(form.get("socket_id"), { id: user, user_info: { name: user } });
        response.writeHead(200, { "content-type": "application/json" });
        return response.end(JSON.stringify(answer));
      }
      authorizations.push(form.get("channel_name"));
      const answer = sign(form.get("socket_id"), form.get("channel_name"), form);
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify(answer));
    });
  });
  return new Promise((resolve) => http.listen(0, "127.0.0.1", () => resolve(http)));
}

before(async () => {
  server = await Signalbox.start();
  const created = await createApp(server, { pusher: { enabled: true } });
  appClient = created.appClient;
  credentials = created.key.pusher;
  backend = new PusherServer({
    appId: credentials.app_id,
    key: credentials.key,
    secret: credentials.secret,
    host: "127.0.0.1",
    port: server.port,
    useTLS: false,
    encryptionMasterKeyBase64: Buffer.alloc(32, 7).toString("base64"),
  });
  auth = await startAuthEndpoint((socketId, channel, form) => {
    if (channel === "private-forged") return { auth: `${credentials.key}:${"0".repeat(64)}` };
    // Presence: the user this client says it is (a real backend knows it from its session).
    const user = form.get("user");
    if (channel.startsWith("presence-") && user) {
      return backend.authorizeChannel(socketId, channel, { user_id: user, user_info: { name: user.toUpperCase() } });
    }
    return backend.authorizeChannel(socketId, channel);
  });
});

after(async () => {
  auth?.close();
  await server?.dispose();
});

/** What pusher-js (and Echo) need to reach `port` only, with the auth endpoint. */
function pusherOptions(port = server.port) {
  return {
    cluster: "mt1",
    wsHost: "127.0.0.1",
    wsPort: port,
    wssPort: port,
    forceTLS: false,
    enabledTransports: ["ws"],
    channelAuthorization: { endpoint: `http://127.0.0.1:${auth.address().port}/pusher/auth`, transport: "ajax" },
  };
}

/** A pusher-js client of the app (or of `key`), connected to this server (or `port`) only. */
function client(key = credentials.key, port = server.port) {
  return new PusherClient(key, pusherOptions(port));
}

/** A pusher-js client whose auth endpoint knows it as `user` (presence channels, sign-in). */
function clientOf(user, port = server.port) {
  const options = pusherOptions(port);
  return new PusherClient(credentials.key, {
    ...options,
    channelAuthorization: { ...options.channelAuthorization, params: { user } },
    userAuthentication: {
      endpoint: `http://127.0.0.1:${auth.address().port}/pusher/user-auth`,
      transport: "ajax",
      params: { user },
    },
  });
}

function connected(pusher) {
  return withDeadline(
    new Promise((resolve) => {
      if (pusher.connection.state === "connected") return resolve(pusher.connection.socket_id);
      pusher.connection.bind("connected", () => resolve(pusher.connection.socket_id));
    }),
    "the connection",
  );
}

function subscribed(pusher, name) {
  const channel = pusher.subscribe(name);
  return withDeadline(
    new Promise((resolve, reject) => {
      channel.bind("pusher:subscription_succeeded", () => resolve(channel));
      channel.bind("pusher:subscription_error", (error) => reject(new Error(`refused: ${JSON.stringify(error)}`)));
    }),
    `the subscription to ${name}`,
  );
}

function next(channel, event) {
  return withDeadline(
    new Promise((resolve) => {
      const handler = (data) => {
        channel.unbind(event, handler);
        resolve(data);
      };
      channel.bind(event, handler);
    }),
    `the event ${event}`,
  );
}

describe("pusher-js", () => {
  test("a public channel gets what the Pusher library and Signalbox's REST API publish", async () => {
    const pusher = client();
    try {
      const socketId = await connected(pusher);
      assert.match(socketId, /^\d+\.\d+$/, "a socket id Pusher's libraries accept");
      const news = await subscribed(pusher, "news");

      let arrived = next(news, "update");
      await backend.trigger("news", "update", { n: 1, text: "héllo" });
      assert.deepEqual(await arrived, { n: 1, text: "héllo" });

      // A Pusher channel is the app's group of the same name.
      arrived = next(news, "native");
      await appClient.publishToGroup("news", "native", { from: "signalbox" });
      assert.deepEqual(await arrived, { from: "signalbox" });

      // A string stays a string.
      arrived = next(news, "plain");
      await backend.trigger("news", "plain", "just text");
      assert.equal(await arrived, "just text");
    } finally {
      pusher.disconnect();
    }
  });

  test("private channels: signed subscriptions, client events to the others only, forged signatures refused", async () => {
    const [alice, bob] = [client(), client()];
    try {
      await Promise.all([connected(alice), connected(bob)]);
      const [room, bobsRoom] = await Promise.all([subscribed(alice, "private-room"), subscribed(bob, "private-room")]);
      const aliceGot = [];
      room.bind("client-typing", (data) => aliceGot.push(data));

      const arrived = next(bobsRoom, "client-typing");
      assert.equal(room.trigger("client-typing", { who: "alice" }), true);
      assert.deepEqual(await arrived, { who: "alice" });
      // Bob answers; once Alice has his, she would have had her own before it (same order).
      const answer = next(room, "client-typing");
      bobsRoom.trigger("client-typing", { who: "bob" });
      assert.deepEqual(await answer, { who: "bob" });
      assert.deepEqual(aliceGot, [{ who: "bob" }], "the sender does not get its own client event");

      const forged = bob.subscribe("private-forged");
      const error = await withDeadline(
        new Promise((resolve) => forged.bind("pusher:subscription_error", resolve)),
        "the subscription error",
      );
      assert.equal(error.status, 401, JSON.stringify(error));
      assert.match(error.error, /invalid signature/);
    } finally {
      alice.disconnect();
      bob.disconnect();
    }
  });

  test("client events on a public channel, or a channel not subscribed, are refused", async () => {
    const pusher = client();
    try {
      await connected(pusher);
      const errors = [];
      pusher.connection.bind("error", (error) => errors.push(error));
      pusher.send_event("client-sneak", { x: 1 }, "private-not-mine");
      await eventually(async () => errors.length > 0, "a pusher:error");
      assert.match(JSON.stringify(errors[0]), /not in group/);
      pusher.send_event("client-sneak", { x: 1 }, "news");
      await eventually(async () => errors.length > 1, "another pusher:error");
      assert.match(JSON.stringify(errors[1]), /private or presence channels only/);
      assert.equal(pusher.connection.state, "connected", "an error, not a disconnect");
    } finally {
      pusher.disconnect();
    }
  });

  test("encrypted channels: the library encrypts, pusher-js decrypts, Signalbox carries it as it is", async () => {
    const pusher = client();
    try {
      await connected(pusher);
      const secrets = await subscribed(pusher, "private-encrypted-vault");
      const arrived = next(secrets, "opened");
      await backend.trigger("private-encrypted-vault", "opened", { code: 1234 });
      assert.deepEqual(await arrived, { code: 1234 });
    } finally {
      pusher.disconnect();
    }
  });

  test("a trigger's socket_id leaves that socket out", async () => {
    const [alice, bob] = [client(), client()];
    try {
      const [aliceSocket] = await Promise.all([connected(alice), connected(bob)]);
      const [a, b] = await Promise.all([subscribed(alice, "scores"), subscribed(bob, "scores")]);
      const aliceGot = [];
      a.bind("goal", (data) => aliceGot.push(data));
      let arrived = next(b, "goal");
      await backend.trigger("scores", "goal", { n: 1 }, { socket_id: aliceSocket });
      assert.deepEqual(await arrived, { n: 1 });
      arrived = next(a, "goal");
      await backend.trigger("scores", "goal", { n: 2 });
      assert.deepEqual(await arrived, { n: 2 });
      assert.deepEqual(aliceGot, [{ n: 2 }], "the first goal left Alice out");
    } finally {
      alice.disconnect();
      bob.disconnect();
    }
  });

  test("an unknown key is refused with 4001, an app without Pusher with 4003: pusher-js does not retry", async () => {
    for (const [key, code] of [["key_doesnotexist", 4001], [await keyOfAppWithoutPusher(), 4003]]) {
      const pusher = client(key);
      try {
        const error = await withDeadline(
          new Promise((resolve) => pusher.connection.bind("error", resolve)),
          `the refusal ${code}`,
        );
        // pusher-js wraps the close: {type: "WebSocketError", error: {type: "PusherError", data}}.
        assert.equal((error.error ?? error).data?.code, code, JSON.stringify(error));
        await eventually(async () => pusher.connection.state === "disconnected", "pusher-js to give up");
      } finally {
        pusher.disconnect();
      }
    }
  });
});

async function keyOfAppWithoutPusher() {
  const created = await createApp(server);
  return created.key.pusher.key;
}

describe("presence channels", () => {
  test("members are users: added with their first connection, removed with their last, never told of themselves", async () => {
    const [ann, bob1, bob2] = [clientOf("ann"), clientOf("bob"), clientOf("bob")];
    try {
      await Promise.all([connected(ann), connected(bob1), connected(bob2)]);
      const room = await subscribed(ann, "presence-room");
      assert.deepEqual(room.members.me, { id: "ann", info: { name: "ANN" } });
      assert.equal(room.members.count, 1);
      const annSaw = [];
      room.bind("pusher:member_added", (member) => annSaw.push(["added", member.id, member.info]));
      room.bind("pusher:member_removed", (member) => annSaw.push(["removed", member.id]));

      const bobsRoom = await subscribed(bob1, "presence-room");
      const bobSaw = [];
      bobsRoom.bind("pusher:member_added", (member) => bobSaw.push(member.id));
      assert.equal(bobsRoom.members.count, 2, "bob's answer lists ann and bob");
      assert.deepEqual(bobsRoom.members.get("ann"), { id: "ann", info: { name: "ANN" } });
      await eventually(async () => annSaw.length === 1, "ann to hear of bob");
      assert.deepEqual(annSaw, [["added", "bob", { name: "BOB" }]]);

      // A client event on a presence channel says who sent it.
      const waved = withDeadline(
        new Promise((resolve) => bobsRoom.bind("client-wave", (data, metadata) => resolve([data, metadata]))),
        "the wave",
      );
      room.trigger("client-wave", { hi: true });
      assert.deepEqual(await waved, [{ hi: true }, { user_id: "ann" }]);

      // Bob's second connection: he is there already; nobody is told.
      const second = await subscribed(bob2, "presence-room");
      assert.equal(second.members.count, 2);
      const info = await backend.get({ path: "/channels/presence-room", params: { info: "user_count" } });
      assert.deepEqual(await info.json(), { occupied: true, user_count: 2 });
      const users = await backend.get({ path: "/channels/presence-room/users" });
      assert.deepEqual(await users.json(), { users: [{ id: "ann" }, { id: "bob" }] });
      const listed = await backend.get({ path: "/channels", params: { filter_by_prefix: "presence-", info: "user_count" } });
      assert.deepEqual((await listed.json()).channels["presence-room"], { user_count: 2 });

      // His first leaves: he is still there. His second leaves: he is gone.
      bob1.unsubscribe("presence-room");
      bob2.unsubscribe("presence-room");
      await eventually(async () => annSaw.length === 2, "ann to hear bob left");
      assert.deepEqual(annSaw, [["added", "bob", { name: "BOB" }], ["removed", "bob"]], "once each");
      assert.deepEqual(bobSaw, [], "bob was never told of himself");
    } finally {
      for (const pusher of [ann, bob1, bob2]) pusher.disconnect();
    }
  });
});

describe("user authentication", () => {
  test("a signed-in user gets what is sent to them, and only they get it; terminating ends them for good", async () => {
    const [eve, mallory] = [clientOf("eve"), clientOf("mallory")];
    try {
      await Promise.all([connected(eve), connected(mallory)]);
      eve.signin();
      mallory.signin();
      const got = withDeadline(new Promise((resolve) => eve.user.bind("secret", resolve)), "eve's message");
      const malloryGot = [];
      mallory.user.bind("secret", (data) => malloryGot.push(data));
      // Signed in once the server-to-user channel is subscribed.
      await eventually(async () => eve.user.serverToUserChannel?.subscribed === true, "eve signed in");
      await eventually(async () => mallory.user.serverToUserChannel?.subscribed === true, "mallory signed in");
      await backend.sendToUser("eve", "secret", { for: "eve" });
      assert.deepEqual(await got, { for: "eve" });
      assert.deepEqual(malloryGot, [], "only eve");

      // (That mallory cannot subscribe to eve's own channel is tried by hand in
      // tests/pusher-python: pusher-js will not even ask.)
      // Signalbox's own API reaches a signed-in user too.
      const again = withDeadline(new Promise((resolve) => eve.user.bind("native", resolve)), "the native send");
      await appClient.publishToUser("eve", "native", { via: "signalbox" });
      assert.deepEqual(await again, { via: "signalbox" });

      const errors = [];
      eve.connection.bind("error", (error) => errors.push(error));
      const response = await backend.terminateUserConnections("eve");
      assert.equal(response.status, 200);
      await eventually(async () => eve.connection.state === "disconnected", "eve to be disconnected, not retrying");
      assert.equal((errors[0]?.error ?? errors[0])?.data?.code, 4009, JSON.stringify(errors));
      assert.equal(mallory.connection.state, "connected");
    } finally {
      eve.disconnect();
      mallory.disconnect();
    }
  });
});

describe("the Pusher HTTP API", () => {
  test("a batch reaches its channels; channel info counts the subscriptions", async () => {
    const pusher = client();
    try {
      await connected(pusher);
      const [one, two] = await Promise.all([subscribed(pusher, "batch-1"), subscribed(pusher, "batch-2")]);
      const arrived = Promise.all([next(one, "e"), next(two, "e")]);
      await backend.triggerBatch([
        { channel: "batch-1", name: "e", data: JSON.stringify({ n: 1 }) },
        { channel: "batch-2", name: "e", data: JSON.stringify({ n: 2 }) },
      ]);
      assert.deepEqual(await arrived, [{ n: 1 }, { n: 2 }]);

      const info = await backend.get({ path: "/channels/batch-1", params: { info: "subscription_count" } });
      assert.equal(info.status, 200);
      assert.deepEqual(await info.json(), { occupied: true, subscription_count: 1 });
      const empty = await backend.get({ path: "/channels/nobody-here", params: {} });
      assert.deepEqual(await empty.json(), { occupied: false });
    } finally {
      pusher.disconnect();
    }
  });

  test("a wrong secret, a wrong app id and too many channels are refused as Pusher refuses them", async () => {
    const options = { appId: credentials.app_id, key: credentials.key, host: "127.0.0.1", port: server.port, useTLS: false };
    const wrong = new PusherServer({ ...options, secret: "not-the-secret" });
    await assert.rejects(wrong.trigger("news", "e", {}), (error) => error.status === 401 && /Invalid signature/.test(error.body));

    const elsewhere = new PusherServer({ ...options, appId: "1", secret: credentials.secret });
    await assert.rejects(elsewhere.trigger("news", "e", {}), (error) => error.status === 404);

    const response = await backend.post({ path: "/events", body: { name: "e", data: "{}", channels: Array.from({ length: 101 }, (_, i) => `c${i}`) } }).catch((error) => error);
    assert.equal(response.status, 400, String(response.body));
  });

  test("a user's connections are terminated, whatever protocol they speak", async () => {
    const native = new SignalboxClient({ url: server.wsUrl, token: await appClient.signToken({ userId: "ann" }) });
    await native.connect();
    const ended = withDeadline(new Promise((resolve) => native.on("disconnected", resolve)), "the close");
    const response = await backend.terminateUserConnections("ann");
    assert.equal(response.status, 200);
    assert.equal((await ended).code, 4000, "closed by the backend: the client does not reconnect by itself");
    native.close();
  });
});

describe("Laravel Echo (its Pusher connector)", () => {
  test("private channels: Laravel's event names, and whispers to the others", async () => {
    const options = {
      broadcaster: "pusher",
      Pusher: PusherClient,
      key: credentials.key,
      ...pusherOptions(),
      authEndpoint: pusherOptions().channelAuthorization.endpoint,
      csrfToken: "test",
      withoutInterceptors: true,
    };
    const [alice, bob] = [new Echo(options), new Echo(options)];
    try {
      const shipped = withDeadline(
        new Promise((resolve) => alice.private("orders").listen("OrderShipped", resolve)),
        "OrderShipped",
      );
      const whispered = withDeadline(
        new Promise((resolve) => alice.private("orders").listenForWhisper("typing", resolve)),
        "the whisper",
      );
      const bobs = bob.private("orders");
      await Promise.all(
        [alice, bob].map((echo) =>
          withDeadline(
            new Promise((resolve) => echo.private("orders").subscribed(resolve)),
            "Echo's subscription",
          ),
        ),
      );
      // As Laravel broadcasts: the event's class name, on `private-orders`.
      await backend.trigger("private-orders", "App\\Events\\OrderShipped", { order: { id: 7 } });
      assert.deepEqual(await shipped, { order: { id: 7 } });
      bobs.whisper("typing", { name: "bob" });
      assert.deepEqual(await whispered, { name: "bob" });
      assert.ok(authorizations.includes("private-orders"), "Echo asked the auth endpoint");
    } finally {
      alice.disconnect();
      bob.disconnect();
    }
  });
});

describe("Laravel Echo presence", () => {
  test("join: here, joining and leaving", async () => {
    const echoOf = (user) =>
      new Echo({
        broadcaster: "pusher",
        Pusher: PusherClient,
        key: credentials.key,
        ...pusherOptions(),
        authEndpoint: pusherOptions().channelAuthorization.endpoint,
        // pusher-js takes channelAuthorization over Echo's auth: the user goes there.
        channelAuthorization: { ...pusherOptions().channelAuthorization, params: { user } },
        csrfToken: "test",
        withoutInterceptors: true,
      });
    const [cleo, dan] = [echoOf("cleo"), echoOf("dan")];
    try {
      const joined = [];
      const left = [];
      const here = withDeadline(
        new Promise((resolve) =>
          cleo
            .join("lobby")
            .here(resolve)
            .joining((user) => joined.push(user))
            .leaving((user) => left.push(user)),
        ),
        "here",
      );
      assert.deepEqual(await here, [{ name: "CLEO" }]);
      const dansHere = withDeadline(new Promise((resolve) => dan.join("lobby").here(resolve)), "dan's here");
      assert.equal((await dansHere).length, 2);
      await eventually(async () => joined.length === 1, "joining");
      assert.deepEqual(joined, [{ name: "DAN" }]);
      dan.leave("lobby");
      await eventually(async () => left.length === 1, "leaving");
      assert.deepEqual(left, [{ name: "DAN" }]);
    } finally {
      cleo.disconnect();
      dan.disconnect();
    }
  });
});

describe("across a 2-edge cluster", { skip: clusterUnavailable() ?? false }, () => {
  let cluster;
  let clusterBackend;
  let clusterKey;

  before(async () => {
    cluster = await startCluster({ edges: 2 });
    const created = await createApp(cluster.api, { pusher: { enabled: true } });
    const { app_id: appId, key, secret } = created.key.pusher;
    const apiPort = Number(new URL(cluster.api.url).port);
    clusterBackend = new PusherServer({ appId, key, secret, host: "127.0.0.1", port: apiPort, useTLS: false });
    clusterKey = key;
  });

  after(async () => {
    await cluster?.dispose();
  });

  test("client events and triggers reach members on either edge; exclusions hold across edges", async () => {
    // The auth endpoint signs with this cluster's key.
    const signer = await startAuthEndpoint((socketId, channel) => clusterBackend.authorizeChannel(socketId, channel));
    const endpoint = `http://127.0.0.1:${signer.address().port}/pusher/auth`;
    const onEdge = (index) =>
      new PusherClient(clusterKey, {
        ...pusherOptions(cluster.edges[index].port),
        channelAuthorization: { endpoint, transport: "ajax" },
      });
    const [alice, bob] = [onEdge(0), onEdge(1)];
    try {
      const [, bobSocket] = await Promise.all([connected(alice), connected(bob)]);
      const [a, b] = await Promise.all([subscribed(alice, "private-match"), subscribed(bob, "private-match")]);
      const aliceGot = [];
      a.bind("client-move", (data) => aliceGot.push(data));

      let arrived = next(b, "client-move");
      a.trigger("client-move", { from: "edge0" });
      assert.deepEqual(await arrived, { from: "edge0" }, "a client event crosses to the other edge");

      // A trigger through the api, leaving Bob (on the other edge) out; then one for both.
      const aliceNext = next(a, "score");
      await clusterBackend.trigger("private-match", "score", { n: 1 }, { socket_id: bobSocket });
      assert.deepEqual(await aliceNext, { n: 1 });
      const bobGot = [];
      b.bind("score", (data) => bobGot.push(data));
      arrived = next(b, "final");
      await clusterBackend.trigger("private-match", "final", { n: 2 });
      assert.deepEqual(await arrived, { n: 2 });
      assert.deepEqual(bobGot, [], "the first score left Bob out, on his edge");
      assert.deepEqual(aliceGot, [], "Alice never got her own client event");

      const info = await clusterBackend.get({ path: "/channels/private-match", params: { info: "subscription_count" } });
      assert.deepEqual(await info.json(), { occupied: true, subscription_count: 2 }, "counted on every edge");
    } finally {
      alice.disconnect();
      bob.disconnect();
      signer.close();
    }
  });

  test("presence across edges: a user is one member wherever their connections are", async () => {
    const signer = await startAuthEndpoint((socketId, channel, form) =>
      clusterBackend.authorizeChannel(socketId, channel, { user_id: form.get("user"), user_info: { on: form.get("user") } }),
    );
    const endpoint = `http://127.0.0.1:${signer.address().port}/pusher/auth`;
    const as = (user, index) =>
      new PusherClient(clusterKey, {
        ...pusherOptions(cluster.edges[index].port),
        channelAuthorization: { endpoint, transport: "ajax", params: { user } },
      });
    const [ann, bobThere, bobHere] = [as("ann", 0), as("bob", 1), as("bob", 0)];
    try {
      await Promise.all([connected(ann), connected(bobThere), connected(bobHere)]);
      const annRoom = await subscribed(ann, "presence-cross");
      const annSaw = [];
      annRoom.bind("pusher:member_added", (member) => annSaw.push(["added", member.id]));
      annRoom.bind("pusher:member_removed", (member) => annSaw.push(["removed", member.id]));

      // Bob on the other edge: that edge's first member asks this one who it holds.
      const bobRoom = await subscribed(bobThere, "presence-cross");
      assert.equal(bobRoom.members.count, 2);
      const bobSaw = [];
      bobRoom.bind("pusher:member_removed", (member) => bobSaw.push(member.id));
      await eventually(async () => annSaw.length === 1, "ann to hear of bob");

      // Bob's second connection, on ann's edge: no news. Then his first leaves: still no news.
      await subscribed(bobHere, "presence-cross");
      bobThere.unsubscribe("presence-cross");
      const info = await clusterBackend.get({ path: "/channels/presence-cross", params: { info: "user_count" } });
      assert.deepEqual(await info.json(), { occupied: true, user_count: 2 });
      bobHere.unsubscribe("presence-cross");
      await eventually(async () => annSaw.length === 2, "ann to hear bob left");
      assert.deepEqual(annSaw, [["added", "bob"], ["removed", "bob"]], "once each, across edges");

      // The other edge knew of ann from the first answer: her leaving reaches a member there.
      const back = await subscribed(bobThere, "presence-cross");
      assert.deepEqual(back.members.get("ann"), { id: "ann", info: { on: "ann" } });
      const gone = withDeadline(new Promise((resolve) => back.bind("pusher:member_removed", resolve)), "ann leaving");
      ann.unsubscribe("presence-cross");
      assert.equal((await gone).id, "ann");
      assert.deepEqual(bobSaw, [], "bob's first connection left before anyone did");
    } finally {
      for (const pusher of [ann, bobThere, bobHere]) pusher.disconnect();
      signer.close();
    }
  });
});
