// Webhook signatures: `Signalbox-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.body")>`.
// Signatures here are computed with node:crypto directly, not with the SDK's own signer, so a
// mistake in the SDK cannot hide itself.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { test } from "node:test";

import { signWebhook, verifyWebhook, WebhookVerificationError } from "../dist/server/index.js";

const SECRET = "whsec_current";
const OLD_SECRET = "whsec_previous";
const BODY = '{"type":"signalbox.connected","data":{"connectionId":"c1","userId":"alice"}}';
const NOW = 1_800_000_000;

function sign(secret, timestamp, body) {
  return createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex");
}

function failure(fn) {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof WebhookVerificationError, `a WebhookVerificationError, got ${error}`);
    return error.code;
  }
  assert.fail("verification passed");
}

test("a genuine, fresh request verifies", () => {
  const header = `t=${NOW},v1=${sign(SECRET, NOW, BODY)}`;
  assert.deepEqual(verifyWebhook(BODY, header, { secrets: SECRET, now: NOW }), { timestamp: NOW });
  assert.deepEqual(verifyWebhook(Buffer.from(BODY), header, { secrets: [SECRET], now: NOW + 299 }), { timestamp: NOW });
});

test("a tampered body is refused", () => {
  const header = `t=${NOW},v1=${sign(SECRET, NOW, BODY)}`;
  const tampered = BODY.replace("alice", "mallory");
  assert.equal(failure(() => verifyWebhook(tampered, header, { secrets: SECRET, now: NOW })), "signature_mismatch");
});

test("a changed timestamp breaks the signature", () => {
  const header = `t=${NOW + 1},v1=${sign(SECRET, NOW, BODY)}`;
  assert.equal(failure(() => verifyWebhook(BODY, header, { secrets: SECRET, now: NOW })), "signature_mismatch");
});

test("a wrong secret is refused", () => {
  const header = `t=${NOW},v1=${sign("whsec_other", NOW, BODY)}`;
  assert.equal(failure(() => verifyWebhook(BODY, header, { secrets: SECRET, now: NOW })), "signature_mismatch");
});

test("an old (replayed) or future timestamp is refused even with a valid signature", () => {
  const old = NOW - 301;
  const header = `t=${old},v1=${sign(SECRET, old, BODY)}`;
  assert.equal(failure(() => verifyWebhook(BODY, header, { secrets: SECRET, now: NOW })), "timestamp_out_of_tolerance");
  const future = NOW + 301;
  const ahead = `t=${future},v1=${sign(SECRET, future, BODY)}`;
  assert.equal(failure(() => verifyWebhook(BODY, ahead, { secrets: SECRET, now: NOW })), "timestamp_out_of_tolerance");
  // The tolerance is the caller's to choose.
  assert.deepEqual(verifyWebhook(BODY, header, { secrets: SECRET, now: NOW, toleranceSeconds: 600 }), { timestamp: old });
});

test("during a rotation: any v1 entry matching any secret held verifies", () => {
  const rotating = `t=${NOW},v1=${sign(SECRET, NOW, BODY)},v1=${sign(OLD_SECRET, NOW, BODY)}`;
  // A backend that has the new secret only, the old one only, or both.
  for (const secrets of [SECRET, OLD_SECRET, [OLD_SECRET, SECRET]]) {
    assert.deepEqual(verifyWebhook(BODY, rotating, { secrets, now: NOW }), { timestamp: NOW });
  }
  // A backend that holds both secrets accepts a sender that signs with either.
  const oldOnly = `t=${NOW},v1=${sign(OLD_SECRET, NOW, BODY)}`;
  assert.deepEqual(verifyWebhook(BODY, oldOnly, { secrets: [SECRET, OLD_SECRET], now: NOW }), { timestamp: NOW });
  // A retired secret no longer verifies.
  assert.equal(failure(() => verifyWebhook(BODY, oldOnly, { secrets: SECRET, now: NOW })), "signature_mismatch");
});

test("missing or malformed headers are refused with their own code", () => {
  assert.equal(failure(() => verifyWebhook(BODY, undefined, { secrets: SECRET, now: NOW })), "missing_signature");
  assert.equal(failure(() => verifyWebhook(BODY, "", { secrets: SECRET, now: NOW })), "missing_signature");
  const v1 = sign(SECRET, NOW, BODY);
  assert.equal(failure(() => verifyWebhook(BODY, `v1=${v1}`, { secrets: SECRET, now: NOW })), "malformed_signature");
  assert.equal(failure(() => verifyWebhook(BODY, `t=${NOW}`, { secrets: SECRET, now: NOW })), "malformed_signature");
  assert.equal(failure(() => verifyWebhook(BODY, `t=${NOW},v1=abc`, { secrets: SECRET, now: NOW })), "malformed_signature");
  assert.equal(failure(() => verifyWebhook(BODY, `t=soon,v1=${v1}`, { secrets: SECRET, now: NOW })), "malformed_signature");
});

test("unknown schemes are skipped, spaces tolerated", () => {
  const header = ` t=${NOW} , v2=${"0".repeat(64)} , v1=${sign(SECRET, NOW, BODY)} `;
  assert.deepEqual(verifyWebhook(BODY, header, { secrets: SECRET, now: NOW }), { timestamp: NOW });
});

test("signWebhook writes what verifyWebhook and an independent HMAC agree on", () => {
  const header = signWebhook(BODY, [SECRET, OLD_SECRET], NOW);
  assert.equal(header, `t=${NOW},v1=${sign(SECRET, NOW, BODY)},v1=${sign(OLD_SECRET, NOW, BODY)}`);
});
