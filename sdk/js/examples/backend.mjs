// What a backend does with the server helper: publish to every kind of target, manage group
// membership, read history, and hand out client tokens.
// Run: SIGNALBOX_URL=… SIGNALBOX_APP=… SIGNALBOX_KEY=… node backend.mjs
import { ApiError, AppClient } from "@signalbox/client/server";

const signalbox = new AppClient({
  url: process.env.SIGNALBOX_URL ?? "http://127.0.0.1:8080",
  app: process.env.SIGNALBOX_APP,
  key: process.env.SIGNALBOX_KEY, // "{key_id}.{secret}", as POST /v1/apps/{app}/keys returned it
});

// Client tokens: minted by Signalbox (one request) or signed right here (no request).
const minted = await signalbox.mintToken({ userId: "bob", groups: ["room-1"], ttlSeconds: 600 });
const signed = signalbox.signToken({ userId: "bob", permissions: ["join:room-*"], info: { name: "Bob" } });
console.log(`minted a token until ${minted.expiresAt}; signed one of ${signed.length} characters`);

// Publishing. A retry with the same Idempotency-Key publishes once and gets the same answer.
const first = await signalbox.publishToGroup("room-1", "chat", { text: "hi" }, { idempotencyKey: "msg-1" });
const retry = await signalbox.publishToGroup("room-1", "chat", { text: "hi" }, { idempotencyKey: "msg-1" });
console.log(`published ${first.id}; the retry got ${retry.id === first.id ? "the same" : "another"} id`);
await signalbox.publishToUser("bob", "notice", { text: "for every device of bob" });
await signalbox.broadcast("maintenance", { at: "02:00" });

// Group membership for users: every connection of bob, now and later.
await signalbox.addUserToGroup("room-2", "bob", { ttlSeconds: 3600 });
await signalbox.removeUserFromGroup("room-2", "bob");

// History of a group that keeps it (the app's history.groups setting).
const page = await signalbox.history("room-1", { limit: 50 });
console.log(`room-1 history: ${page.items.map((item) => item.data.text).join(", ")}`);

// Presence: who is in a group (a page of members at a time), and whether a user is online.
const room = await signalbox.groupPresence("room-1", { limit: 100 });
const bob = await signalbox.userPresence("bob");
console.log(`room-1: ${room.count} online; bob is ${bob.online ? "online" : "offline"}`);

// Errors are ApiErrors: the HTTP status and the problem's code and detail.
try {
  await signalbox.connection("conn_that_does_not_exist");
} catch (error) {
  if (!(error instanceof ApiError)) throw error;
  console.log(`error: ${error.status} ${error.code}`);
}
