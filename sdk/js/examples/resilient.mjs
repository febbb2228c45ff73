// A client that stays up: tokens from your backend on every connect, automatic reconnects, and
// recovery of a room with history — with each step shown to the user.
import { SignalboxClient } from "@signalbox/client";

/**
 * Connects to a room and keeps it. `getToken()` asks your backend for a client token (called
 * before every connect and before the token expires); `onChat(message)` gets every chat message
 * once, in order, across reconnects; `status(text)` tells the user what is happening.
 */
export async function joinRoom({ url, room, getToken, onChat, status }) {
  const client = new SignalboxClient({ url, tokenProvider: getToken });

  client.on("reconnecting", ({ code, reason, delayMs }) =>
    status(`connection lost (${code}${reason ? `: ${reason}` : ""}); retrying in ${delayMs} ms`),
  );
  client.on("connected", ({ reconnected }) => status(reconnected ? "reconnected" : "connected"));
  client.on("disconnected", ({ code, reason }) => status(`disconnected for good (${code}): ${reason}`));
  // After a reconnect, every group with history is recovered from the last message seen.
  client.on("recovery", ({ recovered, groups }) => {
    if (recovered) status("nothing was missed");
    for (const group of groups.filter((g) => !g.recovered)) {
      status(`${group.group}: some messages may be missing (${group.reason}); reload it`);
    }
  });
  client.onMessage("chat", onChat);

  await client.connect();
  await client.join(room); // Joined again by itself after every reconnect.
  return client;
}
