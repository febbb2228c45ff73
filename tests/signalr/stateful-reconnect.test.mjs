// SignalR stateful reconnect with the unmodified @microsoft/signalr client
// (`withStatefulReconnect()`): a WebSocket that drops — cut under the client by a TCP proxy,
// no close frame — is resumed on a new socket with every message the client missed, in order,
// once, and the client never notices; what the server ends on purpose is not resumed.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { createServer, connect } from "node:net";
import { after, before, describe, test } from "node:test";

import signalr from "@microsoft/signalr";
import msgpack from "@microsoft/signalr-protocol-msgpack";

import { Signalbox, createApp, eventually, withDeadline } from "../../sdk/js/test/support/signalbox.mjs";
import { clusterUnavailable, startCluster } from "./support/cluster.mjs";

const { HubConnectionBuilder, HttpTransportType, LogLevel, HubConnectionState } = signalr;

let server;
let appClient;
let accessKey;

before(async () => {
  server = await Signalbox.start();
  const created = await createApp(server);
  appClient = created.appClient;
  accessKey = created.key.credential;
});

const base64url = (data) => Buffer.from(data).toString("base64url");

/**
 * A REST call to the Azure SignalR data plane (of `target`, by default the single server),
 * with a token as Azure's server SDKs make it.
 */
function azureRest(method, path, body, target = { url: server.url, accessKey }) {
  const url = `${target.url}${path}`;
  const key = target.accessKey;
  const exp = Math.floor(Date.now() / 1000) + 600;
  const head = base64url(JSON.stringify({ alg: "HS256", typ: "JWT", kid: key.split(".")[0] }));
  const claims = base64url(JSON.stringify({ aud: url, exp, iat: exp - 600 }));
  const signature = createHmac("sha256", key).update(`${head}.${claims}`).digest("base64url");
  const headers = { authorization: `Bearer ${head}.${claims}.${signature}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  return fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
}

after(async () => {
  await server?.dispose();
});

/**
 * A TCP proxy to `target()`: `cut()` destroys every proxied socket on both sides at once, as a
 * network failure does (the client sees its WebSocket end without a close frame).
 */
export async function startProxy(target) {
  const pairs = new Set();
  const proxy = createServer((client) => {
    const { host, port } = target();
    const upstream = connect(port, host);
    const pair = { client, upstream };
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${proxy.address().port}`,
    /** Cuts every connection; returns how many there were. */
    cut() {
      const count = pairs.size;
      for (const { client, upstream } of [...pairs]) {
        client.resetAndDestroy();
        upstream.resetAndDestroy();
      }
      pairs.clear();
      return count;
    },
    close: () => new Promise((resolve) => proxy.close(resolve)),
  };
}

function statefulConnection(baseUrl, user, { messagepack = false, reconnect, signer = appClient } = {}) {
  let builder = new HubConnectionBuilder()
    .withUrl(`${baseUrl}/client/?hub=chat`, {
      transport: HttpTransportType.WebSockets,
      accessTokenFactory: () => signer.signToken({ userId: user }),
    })
    .withStatefulReconnect()
    .configureLogging(LogLevel.None);
  if (messagepack) builder = builder.withHubProtocol(new msgpack.MessagePackHubProtocol());
  if (reconnect) builder = builder.withAutomaticReconnect(reconnect);
  return builder.build();
}

/** The client kept its connection: connected, the same id, never closed. */
function assertResumed(connection, id, closed) {
  assert.equal(connection.state, HubConnectionState.Connected);
  assert.equal(connection.connectionId, id, "the same connection");
  assert.equal(closed, false);
}

/** Sends `tick(n)` to a user through the REST API. */
function tick(user, n, target) {
  return azureRest("POST", `/api/hubs/chat/users/${user}/:send`, { target: "tick", arguments: [n] }, target);
}

describe("stateful reconnect", () => {
  test("negotiate agrees to it only when the client asks", async () => {
    const token = await appClient.signToken({ userId: "nego" });
    const ask = async (query) => {
      const response = await fetch(`${server.url}/client/negotiate?hub=chat&negotiateVersion=1${query}`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(response.status, 200);
      return response.json();
    };
    assert.equal((await ask("&useStatefulReconnect=true")).useStatefulReconnect, true);
    assert.equal((await ask("")).useStatefulReconnect, undefined, "a client that did not ask refuses a yes");
  });

  for (const messagepack of [false, true]) {
    const name = messagepack ? "MessagePack" : "JSON";
    test(`${name}: a cut WebSocket resumes with every message it missed, in order, once`, async () => {
      const proxy = await startProxy(() => ({ host: "127.0.0.1", port: server.port }));
      const user = `resumer-${name}`;
      const connection = statefulConnection(proxy.url, user, { messagepack });
      const got = [];
      connection.on("tick", (n) => got.push(n));
      let closed = false;
      connection.onclose(() => (closed = true));
      connection.onreconnecting(() => assert.fail("a resume is not a reconnect"));
      await connection.start();
      const id = connection.connectionId;
      try {
        for (let n = 1; n <= 5; n++) assert.equal((await tick(user, n)).status, 202);
        await eventually(async () => got.length === 5, "the first five");

        // Cut: messages sent now reach a connection with no socket, or a dying one.
        assert.ok(proxy.cut() >= 1, "the client's WebSocket went through the proxy");
        for (let n = 6; n <= 30; n++) assert.equal((await tick(user, n)).status, 202);
        await eventually(async () => got.length >= 30, "every message after the resume");
        assert.deepEqual(got, Array.from({ length: 30 }, (_, i) => i + 1), "in order, each once");

        // Cut again while a hub method call is answered: the call still completes, once.
        const echoed = connection.invoke("missing").catch((error) => error.message);
        proxy.cut();
        assert.match(await withDeadline(echoed, "the call's completion"), /no upstream handles event 'missing'/);
        for (let n = 31; n <= 35; n++) assert.equal((await tick(user, n)).status, 202);
        await eventually(async () => got.length >= 35, "the messages after the second resume");
        assert.deepEqual(got, Array.from({ length: 35 }, (_, i) => i + 1));
        assertResumed(connection, id, closed);
      } finally {
        await connection.stop();
        await proxy.close();
      }
    });
  }

  test("a connection the server ends is not resumed: the client is told it is gone", async () => {
    const proxy = await startProxy(() => ({ host: "127.0.0.1", port: server.port }));
    const connection = statefulConnection(proxy.url, "ended");
    const closed = withDeadline(new Promise((resolve) => connection.onclose(resolve)), "the close");
    await connection.start();
    try {
      const response = await azureRest("DELETE", `/api/hubs/chat/connections/${connection.connectionId}`);
      assert.ok(response.ok, `closed: ${response.status}`);
      await closed;
      assert.equal(connection.state, HubConnectionState.Disconnected);
    } finally {
      await connection.stop();
      await proxy.close();
    }
  });
});

describe("stateful reconnect across edges", { skip: clusterUnavailable() ?? false }, () => {
  let cluster;
  let rest;
  let signer;

  before(async () => {
    cluster = await startCluster({ edges: 3, edgeArgs: ["--drain-seconds", "1"] });
    const created = await createApp(cluster.api);
    rest = { url: cluster.api.url, accessKey: created.key.credential };
    signer = created.appClient;
  });

  after(async () => {
    await cluster?.dispose();
  });

  // Each test drains the edge its client is on, and the client moves to the next one.
  for (const [index, messagepack] of [[0, false], [1, true]]) {
    const name = messagepack ? "MessagePack" : "JSON";
    test(`${name}: an edge restarts under a client: it resumes on the next edge with every message, in order, once`, async () => {
      let target = cluster.edges[index];
      const proxy = await startProxy(() => ({ host: "127.0.0.1", port: target.port }));
      const user = `traveller-${name}`;
      const connection = statefulConnection(proxy.url, user, { signer, messagepack });
      const got = [];
      connection.on("tick", (n) => got.push(n));
      let closed = false;
      connection.onclose(() => (closed = true));
      await connection.start();
      const id = connection.connectionId;
      try {
        for (let n = 1; n <= 5; n++) assert.equal((await tick(user, n, rest)).status, 202);
        await eventually(async () => got.length === 5, "the first five");

        // The edge drains (a rolling restart): its socket goes, the client's new one reaches
        // the next edge, which takes the connection over. Messages keep coming all along.
        target = cluster.edges[index + 1];
        const stopped = cluster.edges[index].child.stop("SIGTERM");
        for (let n = 6; n <= 40; n++) {
          assert.equal((await tick(user, n, rest)).status, 202);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        await eventually(async () => got.length >= 40, "every message after the move");
        assert.deepEqual(got, Array.from({ length: 40 }, (_, i) => i + 1), "in order, each once");
        assert.equal((await stopped).code, 0, "the drained edge exited cleanly");

        // The connection lives on the next edge now: the backend still finds it.
        assert.equal((await azureRest("HEAD", `/api/hubs/chat/connections/${id}`, undefined, rest)).status, 200);
        assertResumed(connection, id, closed);
      } finally {
        await connection.stop();
        await proxy.close();
      }
    });
  }
});
