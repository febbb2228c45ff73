// The server helper against a real Signalbox: publishing with idempotency, history, tokens,
// and the typed errors built from problem+json.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { ApiError, AppClient, ManagementClient, RequestFailedError } from "../dist/server/index.js";
import { createApp, Signalbox } from "./support/signalbox.mjs";

let server;
let app;
let appClient;

before(async () => {
  server = await Signalbox.start();
  ({ app, appClient } = await createApp(server, { history: { groups: ["log-*"] } }));
});

after(async () => {
  await server?.dispose();
});

test("a publish retried with the same Idempotency-Key is accepted once, with the same answer", async () => {
  const first = await appClient.publishToGroup("log-idem", "entry", { n: 1 }, { idempotencyKey: "order-42" });
  const again = await appClient.publishToGroup("log-idem", "entry", { n: 1 }, { idempotencyKey: "order-42" });
  assert.deepEqual(again, first);
  assert.equal(typeof first.position, "number", "a group with history gives the position");
  const history = await appClient.history("log-idem");
  assert.equal(history.items.length, 1, "stored once");
});

test("history pages through what a group kept, oldest first", async () => {
  const accepted = [];
  for (let n = 0; n < 5; n += 1) accepted.push(await appClient.publishToGroup("log-pages", "entry", { n }));
  const firstPage = await appClient.history("log-pages", { limit: 2 });
  assert.deepEqual(firstPage.items.map((item) => item.data), [{ n: 0 }, { n: 1 }]);
  assert.equal(firstPage.items[0].position, accepted[0].position);
  assert.equal(firstPage.items[0].id, accepted[0].id);
  assert.equal(firstPage.items[0].event, "entry");
  assert.ok(firstPage.items[0].publishedAt > 1_600_000_000_000_000, "microseconds since the epoch");
  assert.equal(typeof firstPage.next, "number");
  const rest = await appClient.history("log-pages", { after: firstPage.next, limit: 10 });
  assert.deepEqual(rest.items.map((item) => item.data.n), [2, 3, 4]);
  assert.equal(rest.next, undefined, "the last page");
});

test("a group without history has no position", async () => {
  const accepted = await appClient.publishToGroup("plain", "entry", 1);
  assert.match(accepted.id, /\S/);
  assert.equal(accepted.position, undefined);
});

test("minted tokens carry what was asked", async () => {
  const minted = await appClient.mintToken({ userId: "zoe", groups: ["g"], permissions: ["join:g*"], ttlSeconds: 120 });
  const claims = JSON.parse(Buffer.from(minted.token.split(".")[1], "base64url").toString());
  assert.equal(claims.sub, "zoe");
  assert.equal(claims.app, app);
  assert.deepEqual(claims.groups, ["g"]);
  assert.deepEqual(claims.permissions, ["join:g*"]);
  assert.equal(claims.exp, minted.expiresAt);
  const header = JSON.parse(Buffer.from(minted.token.split(".")[0], "base64url").toString());
  assert.equal(header.kid, minted.keyId);
  assert.equal(header.alg, "HS256");
});

test("errors are ApiErrors with the problem's status, code and detail", async () => {
  const missing = await appClient.connection("conn_missing").catch((e) => e);
  assert.ok(missing instanceof ApiError);
  assert.equal(missing.status, 404);
  assert.equal(missing.code, "not_found");
  assert.ok(missing.detail.length > 0);
  assert.equal(missing.retryable, false);

  const wrongKey = new AppClient({ url: server.url, app, key: "key_nope.secret" });
  const unauthorized = await wrongKey.broadcast("x", 1).catch((e) => e);
  assert.ok(unauthorized instanceof ApiError);
  assert.equal(unauthorized.status, 401);
  assert.equal(unauthorized.code, "unauthorized");

  const badName = await appClient.publishToGroup("bad\u0001name", "x", 1).catch((e) => e);
  assert.equal(badName.status, 422);
  assert.equal(badName.code, "invalid_name");

  const badSettings = await new ManagementClient({ url: server.url, token: server.adminToken })
    .createApp("no", {})
    .catch((e) => e);
  assert.ok(badSettings instanceof ApiError, "an operator token cannot create apps");
  assert.ok(badSettings.status === 401 || badSettings.status === 403);
});

test("an unreachable server is a RequestFailedError, not an ApiError", async () => {
  const nowhere = new AppClient({ url: "http://127.0.0.1:1", app, key: "key_x.y" });
  const error = await nowhere.broadcast("x", 1).catch((e) => e);
  assert.ok(error instanceof RequestFailedError);
  assert.equal(error.code, "request_failed");
});

test("names with slashes and spaces are encoded as one path segment", async () => {
  const accepted = await appClient.publishToGroup("log-a/b c", "entry", "odd");
  const history = await appClient.history("log-a/b c");
  assert.deepEqual(history.items.map((item) => item.id), [accepted.id]);
});
