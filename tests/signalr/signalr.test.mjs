// The unmodified @microsoft/signalr client (from the npm registry) and Azure SignalR Service's
// REST API against a real `signalbox serve`: each transport, both REST dialects, groups via
// REST, a hub method answered by an upstream webhook, the Azure-shaped negotiate redirect,
// automatic reconnection after a restart, and the bad inputs the SignalR spec defines answers for.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";

import signalr from "@microsoft/signalr";
import msgpack from "@microsoft/signalr-protocol-msgpack";
import WebSocket from "ws";

import { Signalbox, createApp, eventually, withDeadline } from "../../sdk/js/test/support/signalbox.mjs";

const { HubConnectionBuilder, HttpTransportType, LogLevel, HubConnectionState } = signalr;
const RS = "\x1e";

const base64url = (data) => Buffer.from(data).toString("base64url");

/** An HS256 JWT. */
function jwt(claims, key, kid) {
  const head = base64url(JSON.stringify({ alg: "HS256", typ: "JWT", kid }));
  const body = base64url(JSON.stringify(claims));
  const signature = createHmac("sha256", key).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${signature}`;
}

/** A token as Azure's server SDKs make it: signed with the access key, `aud` = the URL. */
function azureToken(url, accessKey, claims = {}, ttlSeconds = 600) {
  const exp = Math.floor(Date.now() / 1000) + ttlSeconds;
  return jwt({ aud: url, exp, iat: exp - ttlSeconds, ...claims }, accessKey, accessKey.split(".")[0]);
}

let server;
let appClient;
let accessKey;
let upstream;
const upstreamCalls = [];

/** A stand-in for the Azure Functions SignalR trigger: checks the signature, answers a Completion. */
function startUpstream() {
  const http = createServer((request, response) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      const connectionId = request.headers["x-asrs-connection-id"];
      const expected = `sha256=${createHmac("sha256", accessKey).update(connectionId).digest("hex")}`;
      const signed = (request.headers["x-asrs-signature"] ?? "").split(",").includes(expected);
      const message = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      upstreamCalls.push({ url: request.url, headers: request.headers, message, signed });
      if (!signed) {
        response.writeHead(401).end();
      } else if (message.target === "fail") {
        response.writeHead(500).end();
      } else {
        const result = { echoed: message.arguments, user: request.headers["x-asrs-user-id"] ?? null };
        response.writeHead(200, { "content-type": "application/json" });
        response.end(JSON.stringify({ type: 3, invocationId: message.invocationId, result }) + RS);
      }
    });
  });
  return new Promise((resolve) => http.listen(0, "127.0.0.1", () => resolve(http)));
}

before(async () => {
  server = await Signalbox.start();
  const created = await createApp(server);
  appClient = created.appClient;
  accessKey = created.key.credential;
  upstream = await startUpstream();
  const url = `http://127.0.0.1:${upstream.address().port}/runtime/webhooks/signalr?hub={hub}`;
  await created.management.createWebhook(created.app, { url, events: ["event"] });
});

after(async () => {
  upstream?.close();
  await server?.dispose();
});

function hubConnection(transport, accessTokenFactory, { hub = "chat", reconnect } = {}) {
  let builder = new HubConnectionBuilder()
    .withUrl(`${server.url}/client/?hub=${hub}`, { transport, accessTokenFactory })
    .configureLogging(LogLevel.None);
  if (reconnect) builder = builder.withAutomaticReconnect(reconnect);
  return builder.build();
}

/** The next `target` invocation a connection receives. */
function nextInvocation(connection, target) {
  return withDeadline(
    new Promise((resolve) => {
      const handler = (...args) => {
        connection.off(target, handler);
        resolve(args);
      };
      connection.on(target, handler);
    }),
    `an invocation of ${target}`,
  );
}

/** A REST call to the Azure SignalR data plane, authenticated as Azure's SDKs do. */
function azureRest(method, path, body, { token } = {}) {
  const url = `${server.url}${path}`;
  const headers = { authorization: `Bearer ${token ?? azureToken(url, accessKey)}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  return fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

const transports = [
  ["WebSockets", HttpTransportType.WebSockets],
  ["Server-Sent Events", HttpTransportType.ServerSentEvents],
  ["long polling", HttpTransportType.LongPolling],
];

describe("presence", () => {
  // In an app with presence events, a change reaches a SignalR client as an invocation of its
  // `presence` method (the native frame's object as the argument) — never a native frame,
  // which made the client fail with "Message is incomplete".
  for (const [name, transport] of transports) {
    test(`${name}: a join is a presence invocation, and the connection stays up`, async () => {
      const { appClient: client, key } = await createApp(server, { presence: { events: "members" } });
      const room = `room-${transport}`;
      const connect = (userId) =>
        new HubConnectionBuilder()
          .withUrl(`${server.url}/client/?hub=chat`, { transport, accessTokenFactory: () => client.signToken({ userId, groups: [room] }) })
          .configureLogging(LogLevel.None)
          .build();
      const alice = connect("alice");
      const bob = connect("bob");
      await alice.start();
      try {
        const joined = withDeadline(
          new Promise((resolve) => alice.on("presence", (change) => change.joined?.some((j) => j.userId === "bob") && resolve(change))),
          "bob's join",
        );
        await bob.start();
        const change = await joined;
        assert.equal(change.group, room);
        assert.equal(change.type, "presence");
        // Still connected, and still receiving.
        const received = nextInvocation(alice, "after");
        const url = `${server.url}/api/hubs/chat/users/alice/:send`;
        const response = await fetch(url, {
          method: "POST",
          headers: { authorization: `Bearer ${azureToken(url, key.credential)}`, "content-type": "application/json" },
          body: JSON.stringify({ target: "after", arguments: ["presence"] }),
        });
        assert.equal(response.status, 202);
        assert.deepEqual(await received, ["presence"]);
        assert.equal(alice.state, HubConnectionState.Connected);
      } finally {
        await bob.stop();
        await alice.stop();
      }
    });
  }
});

describe("the URL without the slash", () => {
  // `…/client?hub=chat` is how many apps write the URL: it must reach SignalR, not the native
  // endpoint (whose welcome a SignalR client cannot read), on every transport.
  for (const [name, transport] of transports) {
    test(`${name}: /client?hub=chat connects and receives`, async () => {
      const user = `slashless-${transport}`;
      const connection = new HubConnectionBuilder()
        .withUrl(`${server.url}/client?hub=chat`, { transport, accessTokenFactory: () => appClient.signToken({ userId: user }) })
        .configureLogging(LogLevel.None)
        .build();
      await connection.start();
      try {
        const received = nextInvocation(connection, "hello");
        const response = await azureRest("POST", `/api/hubs/chat/users/${user}/:send?api-version=2022-06-01`, {
          target: "hello",
          arguments: ["no slash"],
        });
        assert.equal(response.status, 202);
        assert.deepEqual(await received, ["no slash"]);
      } finally {
        await connection.stop();
      }
    });
  }
});

describe("each transport", () => {
  for (const [name, transport] of transports) {
    test(`${name}: REST sends in both dialects, groups via REST, and a hub method answered upstream`, async () => {
      const user = `user-${transport}`;
      const connection = hubConnection(transport, () => appClient.signToken({ userId: user }));
      await connection.start();
      try {
        assert.equal(connection.state, HubConnectionState.Connected);
        assert.ok(connection.connectionId, "negotiate gave a connection id");

        // The newer dialect: broadcast to the hub.
        let received = nextInvocation(connection, "newMessage");
        let response = await azureRest("POST", "/api/hubs/chat/:send?api-version=2022-06-01", {
          target: "newMessage",
          arguments: ["hello", { n: 1 }],
        });
        assert.equal(response.status, 202);
        assert.deepEqual(await received, ["hello", { n: 1 }]);

        // The v1 dialect: to the user.
        received = nextInvocation(connection, "direct");
        response = await azureRest("POST", `/api/v1/hubs/chat/users/${user}`, { target: "direct", arguments: [42] });
        assert.equal(response.status, 202);
        assert.deepEqual(await received, [42]);

        // Into a group by connection id, then a group send; the existence checks see it.
        const group = `room-${transport}`;
        const id = connection.connectionId;
        response = await azureRest("PUT", `/api/v1/hubs/chat/groups/${group}/connections/${id}`);
        assert.equal(response.status, 200);
        assert.equal((await azureRest("HEAD", `/api/hubs/chat/groups/${group}`)).status, 200);
        assert.equal((await azureRest("HEAD", `/api/hubs/chat/connections/${id}`)).status, 200);
        received = nextInvocation(connection, "inGroup");
        response = await azureRest("POST", `/api/hubs/chat/groups/${group}/:send?api-version=2022-06-01`, {
          target: "inGroup",
          arguments: ["for the room"],
        });
        assert.equal(response.status, 202);
        assert.deepEqual(await received, ["for the room"]);

        // To the connection itself.
        received = nextInvocation(connection, "justYou");
        response = await azureRest("POST", `/api/hubs/chat/connections/${id}/:send?api-version=2022-06-01`, {
          target: "justYou",
          arguments: [],
        });
        assert.equal(response.status, 202);
        assert.deepEqual(await received, []);

        // A hub method: the upstream answers, the answer is the result.
        const result = await connection.invoke("echo", "ping", 7);
        assert.deepEqual(result, { echoed: ["ping", 7], user });
        const call = upstreamCalls.findLast((c) => c.message.target === "echo");
        assert.equal(call.signed, true, "X-ASRS-Signature verifies with the access key");
        assert.equal(call.headers["x-asrs-hub"], "chat");
        assert.equal(call.headers["x-asrs-category"], "messages");
        assert.equal(call.headers["x-asrs-event"], "echo");
        assert.equal(call.headers["x-asrs-connection-id"], id);
        assert.equal(call.url, "/runtime/webhooks/signalr?hub=chat", "the {hub} placeholder is filled");

        // A failing upstream is a Completion error.
        await assert.rejects(connection.invoke("fail"), /upstream answered 500/);
      } finally {
        await connection.stop();
      }
      // After a stop, the connection is gone.
      await eventually(
        async () => (await azureRest("HEAD", `/api/hubs/chat/connections/${connection.connectionId ?? "x"}`)).status === 404,
        "the connection to be gone",
      ).catch(() => {});
    });
  }
});

describe("MessagePack", () => {
  for (const [name, transport] of [transports[0], transports[2]]) {
    test(`${name}: REST messages arrive and hub methods are answered`, async () => {
      const connection = new HubConnectionBuilder()
        .withUrl(`${server.url}/client/?hub=chat`, {
          transport,
          accessTokenFactory: () => appClient.signToken({ userId: `packed-${transport}` }),
        })
        .withHubProtocol(new msgpack.MessagePackHubProtocol())
        .configureLogging(LogLevel.None)
        .build();
      await connection.start();
      try {
        const received = nextInvocation(connection, "packed");
        const response = await azureRest("POST", `/api/hubs/chat/users/packed-${transport}/:send`, {
          target: "packed",
          arguments: ["text", 3, 2.5, true, null, [1, 2], { nested: { deep: "yes" } }],
        });
        assert.equal(response.status, 202);
        assert.deepEqual(await received, ["text", 3, 2.5, true, null, [1, 2], { nested: { deep: "yes" } }]);
        const result = await connection.invoke("echo", "binary?", new Uint8Array([1, 2, 3]));
        assert.deepEqual(result, { echoed: ["binary?", "AQID"], user: `packed-${transport}` });
        await assert.rejects(connection.invoke("fail"), /upstream answered 500/);
      } finally {
        await connection.stop();
      }
    });
  }
});

test("a user added to a group through REST (with a ttl) gets the group's messages, and leaves", async () => {
  const connection = hubConnection(HttpTransportType.WebSockets, () => appClient.signToken({ userId: "carol" }));
  await connection.start();
  try {
    let response = await azureRest("PUT", "/api/hubs/chat/users/carol/groups/vip?ttl=60&api-version=2022-06-01");
    assert.equal(response.status, 200);
    assert.equal((await azureRest("HEAD", "/api/hubs/chat/users/carol/groups/vip")).status, 200);
    assert.equal((await azureRest("HEAD", "/api/hubs/chat/users/carol")).status, 200);
    await eventually(async () => {
      const received = nextInvocation(connection, "vip").then(() => true);
      await azureRest("POST", "/api/hubs/chat/groups/vip/:send", { target: "vip", arguments: [1] });
      return Promise.race([received, new Promise((r) => setTimeout(() => r(false), 500))]);
    }, "carol's connection to join vip");
    response = await azureRest("DELETE", "/api/v1/hubs/chat/users/carol/groups/vip");
    assert.equal(response.status, 200);
    assert.equal((await azureRest("HEAD", "/api/hubs/chat/users/carol/groups/vip")).status, 404);
  } finally {
    await connection.stop();
  }
});

test("the Azure-shaped negotiate: the tenant's function answers {url, accessToken} and the client follows", async () => {
  // The tenant's negotiate function, as Azure Functions' SignalRConnectionInfo binding answers.
  const tenant = createServer((request, response) => {
    const url = `${server.url}/client/?hub=chat`;
    const accessToken = azureToken(url, accessKey, { nameid: "dave" });
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ url, accessToken }));
  });
  await new Promise((resolve) => tenant.listen(0, "127.0.0.1", resolve));
  const connection = new HubConnectionBuilder()
    .withUrl(`http://127.0.0.1:${tenant.address().port}/api`)
    .configureLogging(LogLevel.None)
    .build();
  try {
    await connection.start();
    const received = nextInvocation(connection, "hi");
    await azureRest("POST", "/api/hubs/chat/users/dave/:send", { target: "hi", arguments: ["dave"] });
    assert.deepEqual(await received, ["dave"]);
    assert.deepEqual(await connection.invoke("echo"), { echoed: [], user: "dave" });
  } finally {
    await connection.stop();
    tenant.close();
  }
});

test("the client reconnects by itself after the node it was on restarts", async () => {
  const connection = hubConnection(HttpTransportType.WebSockets, () => appClient.signToken({ userId: "erin" }), {
    reconnect: [0, 200, 500, 1000, 1000, 1000, 2000, 2000, 2000],
  });
  await connection.start();
  const firstId = connection.connectionId;
  const reconnected = withDeadline(new Promise((resolve) => connection.onreconnected(resolve)), "a reconnect");
  await server.stop();
  await server.start();
  try {
    await reconnected;
    assert.equal(connection.state, HubConnectionState.Connected);
    assert.notEqual(connection.connectionId, firstId, "a new connection");
    const received = nextInvocation(connection, "back");
    await eventually(async () => {
      const response = await azureRest("POST", "/api/hubs/chat/users/erin/:send", { target: "back", arguments: [] });
      return response.status === 202;
    }, "the REST API after the restart");
    await received;
  } finally {
    await connection.stop();
  }
});

test("a connect webhook that renames the user: the long-polling client keeps working with its own token", async () => {
  const renamer = createServer((request, response) => {
    request.resume();
    request.on("end", () => {
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify({ user_id: "renamed" }));
    });
  });
  await new Promise((resolve) => renamer.listen(0, "127.0.0.1", resolve));
  const created = await createApp(server);
  await created.management.createWebhook(created.app, {
    url: `http://127.0.0.1:${renamer.address().port}/connect`,
    events: ["connect"],
  });
  const otherKey = created.key.credential;
  const connection = hubConnection(HttpTransportType.LongPolling, () => created.appClient.signToken({ userId: "original" }));
  try {
    await connection.start();
    const received = nextInvocation(connection, "toRenamed");
    const url = `${server.url}/api/hubs/chat/users/renamed/:send`;
    const response = await fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${azureToken(url, otherKey)}`, "content-type": "application/json" },
      body: JSON.stringify({ target: "toRenamed", arguments: ["hi"] }),
    });
    assert.equal(response.status, 202);
    assert.deepEqual(await received, ["hi"], "the connection is the renamed user's, and its polls still work");
  } finally {
    await connection.stop();
    renamer.close();
  }
});

test("pings: none before the handshake's answer, then Ping messages on their own", async () => {
  const fast = await Signalbox.start({ extraArgs: ["--heartbeat-seconds", "2"] });
  try {
    const { appClient: client } = await createApp(fast);
    const token = client.signToken({ userId: "pinged" });
    const negotiated = await fetch(`${fast.url}/client/negotiate?hub=chat&negotiateVersion=1`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
    }).then((r) => r.json());
    const url = `${fast.url.replace("http", "ws")}/client/?hub=chat&id=${encodeURIComponent(negotiated.connectionToken)}&access_token=${token}`;
    const socket = new WebSocket(url);
    const messages = [];
    socket.on("message", (data) => messages.push(data.toString()));
    await withDeadline(new Promise((resolve) => socket.on("open", resolve)), "the socket to open");
    // Several ping periods pass before the handshake: nothing may be sent meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    assert.deepEqual(messages, []);
    socket.send(`{"protocol":"json","version":1}${RS}`);
    await eventually(() => messages.some((m) => m.includes('"type":6')), "a Ping message");
    assert.equal(messages[0], `{}${RS}`, "the handshake's answer comes first");
    socket.close();
  } finally {
    await fast.dispose();
  }
});

describe("bad input", () => {
  /** Negotiates by hand; returns the connection token. */
  async function negotiate(token, hub = "chat") {
    const response = await fetch(`${server.url}/client/negotiate?hub=${hub}&negotiateVersion=1`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.equal(body.negotiateVersion, 1);
    assert.deepEqual(
      body.availableTransports.map((t) => [t.transport, t.transferFormats]),
      [
        ["WebSockets", ["Text", "Binary"]],
        ["ServerSentEvents", ["Text"]],
        ["LongPolling", ["Text", "Binary"]],
      ],
    );
    return body;
  }

  /** A raw WebSocket on the SignalR endpoint; resolves with every text message and the close. */
  function rawSocket(connectionToken, token, frames) {
    const url = `${server.url.replace("http", "ws")}/client/?hub=chat&id=${encodeURIComponent(connectionToken)}&access_token=${token}`;
    const socket = new WebSocket(url);
    const messages = [];
    return withDeadline(
      new Promise((resolve, reject) => {
        socket.on("open", () => frames.forEach((frame) => socket.send(frame)));
        socket.on("message", (data) => messages.push(data.toString()));
        socket.on("close", (code) => resolve({ messages, code }));
        socket.on("error", reject);
      }),
      "the server to close the socket",
    );
  }

  test("a wrong protocol or version gets a handshake error and the connection ends", async () => {
    const token = appClient.signToken({ userId: "mallory" });
    for (const [handshake, error] of [
      [{ protocol: "blobpack", version: 1 }, /protocol 'blobpack' is not supported/],
      [{ protocol: "json", version: 9 }, /version 9 is not supported/],
    ]) {
      const { connectionToken } = await negotiate(token);
      const { messages } = await rawSocket(connectionToken, token, [JSON.stringify(handshake) + RS]);
      const answer = JSON.parse(messages[0].split(RS)[0]);
      assert.match(answer.error, error);
    }
  });

  test("a record split across frames is reassembled; malformed records and bad invocations close with an error", async () => {
    const token = appClient.signToken({ userId: "mallory" });
    let { connectionToken } = await negotiate(token);
    // The handshake arrives in two frames (no separator in the first): it waits for the rest.
    let { messages, code } = await rawSocket(connectionToken, token, [
      '{"protocol":"json",',
      `"version":1}${RS}`,
      `{"type":42}${RS}{"type":7}${RS}`,
    ]);
    assert.equal(messages[0], `{}${RS}`, "handshake accepted");
    assert.equal(code, 1000, "an unknown type is ignored; the client's Close ends it normally");

    ({ connectionToken } = await negotiate(token));
    ({ messages } = await rawSocket(connectionToken, token, [`{"protocol":"json","version":1}${RS}`, `not json${RS}`]));
    const close = JSON.parse(messages.at(-1).split(RS)[0]);
    assert.equal(close.type, 7);
    assert.match(close.error, /not a JSON object/);
    assert.notEqual(close.allowReconnect, true);

    ({ connectionToken } = await negotiate(token));
    ({ messages } = await rawSocket(connectionToken, token, [
      `{"protocol":"json","version":1}${RS}`,
      `{"type":1,"target":"x","arguments":5}${RS}`,
    ]));
    assert.match(JSON.parse(messages.at(-1).split(RS)[0]).error, /'target' string and an 'arguments' array/);
  });

  test("a hub method with no upstream gets a Completion error", async () => {
    const { app: otherApp, appClient: other } = await createApp(server);
    assert.ok(otherApp);
    const connection = hubConnection(HttpTransportType.LongPolling, () => other.signToken({ userId: "u" }));
    await connection.start();
    try {
      await assert.rejects(connection.invoke("anything"), /no upstream handles event 'anything'/);
    } finally {
      await connection.stop();
    }
  });

  test("long polling: an expired token gets 401; a POST to a closed connection 404; a second poll ends the first with 204", async () => {
    const token = appClient.signToken({ userId: "pat" });
    const { connectionToken } = await negotiate(token);
    const url = `${server.url}/client/?hub=chat&id=${encodeURIComponent(connectionToken)}`;
    const auth = { authorization: `Bearer ${token}` };
    assert.equal((await fetch(url, { headers: auth })).status, 200, "the first poll opens the connection");
    const send = await fetch(url, { method: "POST", headers: auth, body: `{"protocol":"json","version":1}${RS}` });
    assert.equal(send.status, 200);
    const handshake = await fetch(url, { headers: auth });
    assert.equal(await handshake.text(), `{}${RS}`);

    const [kid, secret] = accessKey.split(".");
    const expired = jwt({ app: appClient.app, sub: "pat", exp: Math.floor(Date.now() / 1000) - 120 }, secret, kid);
    const refused = await fetch(url, { headers: { authorization: `Bearer ${expired}` } });
    assert.equal(refused.status, 401);

    const waiting = fetch(url, { headers: auth });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const newer = fetch(url, { headers: auth });
    assert.equal((await waiting).status, 204, "the older poll is ended by the newer one");

    assert.equal((await fetch(url, { method: "DELETE", headers: auth })).status, 202);
    assert.equal((await newer).status, 204, "the poll in flight ends when the connection does");
    const late = await fetch(url, { method: "POST", headers: auth, body: `{"type":6}${RS}` });
    assert.equal(late.status, 404);
    const reopen = await fetch(url, { headers: auth });
    assert.equal(reopen.status, 404, "the ended connection is not opened again by its token");
    // Another user's token cannot use the connection token.
    const other = appClient.signToken({ userId: "eve" });
    assert.equal((await fetch(url, { headers: { authorization: `Bearer ${other}` } })).status, 403);
  });

  test("negotiateVersion 0: the connection id is the connection token, bound to the user", async () => {
    const token = appClient.signToken({ userId: "vera" });
    const negotiated = await fetch(`${server.url}/client/negotiate?hub=chat`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
    }).then((r) => r.json());
    assert.equal(negotiated.negotiateVersion, 0);
    assert.equal(negotiated.connectionToken, undefined);
    assert.equal(negotiated.connectionId.split(".").length, 3, "the id a v0 client sends back is a signed token");
    const url = `${server.url}/client/?hub=chat&id=${encodeURIComponent(negotiated.connectionId)}`;
    const auth = { authorization: `Bearer ${token}` };
    assert.equal((await fetch(url, { headers: auth })).status, 200);
    await fetch(url, { method: "POST", headers: auth, body: `{"protocol":"json","version":1}${RS}` });
    assert.equal(await (await fetch(url, { headers: auth })).text(), `{}${RS}`);
    const other = appClient.signToken({ userId: "walt" });
    const stolen = await fetch(url, { method: "POST", headers: { authorization: `Bearer ${other}` }, body: "x" });
    assert.equal(stolen.status, 403, "another user cannot use the connection");
    assert.equal((await fetch(url, { method: "DELETE", headers: auth })).status, 202);
  });

  test("negotiate without a hub or a token, and an unknown route, are refused", async () => {
    const token = appClient.signToken({ userId: "x" });
    const noHub = await fetch(`${server.url}/client/negotiate`, { method: "POST", headers: { authorization: `Bearer ${token}` } });
    assert.equal(noHub.status, 400);
    const badHub = await fetch(`${server.url}/client/negotiate?hub=_`, { method: "POST", headers: { authorization: `Bearer ${token}` } });
    assert.equal(badHub.status, 400);
    assert.equal((await fetch(`${server.url}/client/negotiate?hub=chat`, { method: "POST" })).status, 401);
    const garbage = await fetch(`${server.url}/client/negotiate?hub=chat`, { method: "POST", headers: { authorization: "Bearer a.b.c" } });
    assert.equal(garbage.status, 401);
    const noId = await fetch(`${server.url}/client/?hub=chat`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(noId.status, 400);
    const forged = await fetch(`${server.url}/client/?hub=chat&id=${"a".repeat(22)}.x.y`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(forged.status, 404);
  });

  test("REST: a wrong key, a wrong audience, an expired token and a non-array arguments are refused", async () => {
    const path = "/api/hubs/chat/:send";
    const url = `${server.url}${path}`;
    const wrongKey = azureToken(url, `${accessKey.split(".")[0]}.not-the-secret`);
    assert.equal((await azureRest("POST", path, { target: "x", arguments: [] }, { token: wrongKey })).status, 401);
    const wrongAudience = azureToken(`${server.url}/api/hubs/other/:send`, accessKey);
    assert.equal((await azureRest("POST", path, { target: "x", arguments: [] }, { token: wrongAudience })).status, 401);
    const expired = azureToken(url, accessKey, {}, -600);
    assert.equal((await azureRest("POST", path, { target: "x", arguments: [] }, { token: expired })).status, 401);
    assert.equal((await azureRest("POST", path, { target: "x", arguments: 5 })).status, 422);
    assert.equal((await azureRest("POST", path, "not an object")).status, 422);
    assert.equal((await azureRest("POST", "/api/hubs/chat/:unknownAction", { target: "x" })).status, 404);
    assert.equal((await azureRest("HEAD", "/api/hubs/chat/connections/nosuchconnection")).status, 404);
  });
});
