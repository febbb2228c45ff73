// Quickstart: a backend mints a token, a client connects with it, joins a room, and messages
// flow both ways. Run: SIGNALBOX_URL=http://127.0.0.1:8080 SIGNALBOX_APP=app_… SIGNALBOX_KEY=key_….secret node quickstart.mjs
import { SignalboxClient } from "@signalbox/client";
import { AppClient } from "@signalbox/client/server";

const url = process.env.SIGNALBOX_URL ?? "http://127.0.0.1:8080";

// Your backend: holds the app key, never gives it to a browser.
const backend = new AppClient({ url, app: process.env.SIGNALBOX_APP, key: process.env.SIGNALBOX_KEY });
const { token } = await backend.mintToken({
  userId: "alice",
  permissions: ["join:room-*", "publish:room-*"],
});

// Your client (a browser, or Node as here): connects with the token.
const client = new SignalboxClient({ url: `${url.replace(/^http/, "ws")}/client`, token });
client.on("state", ({ state }) => console.log(`state: ${state}`));
const { connectionId, userId } = await client.connect();
console.log(`connected as ${userId} (${connectionId})`);

await client.join("room-1");
const twoMessages = new Promise((resolve) => {
  const seen = [];
  client.onMessage("chat", (message) => {
    console.log(`chat in ${message.group}: ${message.data.text}`);
    seen.push(message);
    if (seen.length === 2) resolve(seen);
  });
});

await client.publish("room-1", "chat", { text: "hello from the client" });
await backend.publishToGroup("room-1", "chat", { text: "hello from the backend" });
await twoMessages;

try {
  await client.join("admins"); // The token does not permit it.
} catch (error) {
  console.log(`join refused: ${error.code}`);
}
client.close();
