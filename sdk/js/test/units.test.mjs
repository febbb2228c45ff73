// Pure pieces of the client: what a close code means, backoff bounds, what a reconnect resumes.

import assert from "node:assert/strict";
import { test } from "node:test";

import { closeAction, tokenExpiry } from "../dist/index.js";
import { Backoff } from "../dist/backoff.js";
import { GroupTracker, MAX_RECOVER_GROUPS } from "../dist/groups.js";

test("close codes: the documented ones, and unknown codes by their range", () => {
  const expected = {
    give_up: [1000, 1002, 1003, 1007, 1009, 4000, 4001, 4002, 4003, 4099],
    retry: [1005, 1006, 1011, 1013, 4100, 4101, 4102, 4103, 4199, 4300, 4999],
    reconnect_now: [1001, 4200, 4250, 4299],
    reauthenticate: [4401, 4402, 4403, 4400, 4499],
  };
  for (const [action, codes] of Object.entries(expected)) {
    for (const code of codes) assert.equal(closeAction(code), action, `close code ${code}`);
  }
});

test("backoff: full jitter below a bound that doubles up to the maximum", () => {
  const highest = new Backoff({ minDelayMs: 100, maxDelayMs: 1000 }, () => 0.999999);
  assert.deepEqual([1, 2, 3, 4, 5, 40].map((n) => highest.delay(n)), [99, 199, 399, 799, 999, 999]);
  const lowest = new Backoff({ minDelayMs: 100, maxDelayMs: 1000 }, () => 0);
  assert.equal(lowest.delay(3), 0);
});

test("resume plan: positions go in recover, joined groups without one are joined again", () => {
  const tracker = new GroupTracker();
  tracker.joined("room-1");
  tracker.joined("room-2", 50);
  tracker.delivered("room-1", 10);
  tracker.delivered("room-1", 7); // A lower position never moves a group back.
  tracker.delivered("token-group", 3); // Joined by the token: recovered, not joined by the client.
  tracker.joined("no-history");
  tracker.delivered("no-history", undefined);
  assert.deepEqual(tracker.plan(), {
    recover: { "room-1": 10, "room-2": 50, "token-group": 3 },
    rejoin: [{ group: "no-history" }],
  });
  tracker.left("room-1");
  assert.deepEqual(Object.keys(tracker.plan().recover), ["room-2", "token-group"]);
});

test("resume plan: past the protocol's 100 recover groups, joined groups rejoin with since", () => {
  const tracker = new GroupTracker();
  for (let n = 0; n < MAX_RECOVER_GROUPS + 2; n += 1) {
    tracker.joined(`g${n}`);
    tracker.delivered(`g${n}`, n + 1);
  }
  const plan = tracker.plan();
  assert.equal(Object.keys(plan.recover).length, MAX_RECOVER_GROUPS);
  assert.deepEqual(plan.rejoin, [
    { group: "g100", since: 101 },
    { group: "g101", since: 102 },
  ]);
});

test("tokenExpiry reads exp without verifying, and nothing from what is not a JWT", () => {
  const payload = Buffer.from(JSON.stringify({ exp: 1234567890, sub: "ü" })).toString("base64url");
  assert.equal(tokenExpiry(`e30.${payload}.sig`), 1234567890);
  assert.equal(tokenExpiry("garbage"), undefined);
  assert.equal(tokenExpiry("a.%%%.c"), undefined);
  assert.equal(tokenExpiry(`e30.${Buffer.from("{}").toString("base64url")}.x`), undefined);
});
