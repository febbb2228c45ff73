// The chat page: one SignalboxClient per visitor. Tokens come from the demo backend
// (server.mjs); the SDK reconnects, rejoins the room and recovers missed messages by itself —
// the page only shows what happens.
import { SignalboxClient } from "/sdk/index.js";

const $ = (selector) => document.querySelector(selector);

$("#enter").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("#name").value.trim();
  const room = $("#room").value.trim();
  $("#join").disabled = true;
  try {
    await enter(name, room);
  } catch (error) {
    $("#enter-error").textContent = error.message;
    $("#join").disabled = false;
  }
});

async function enter(name, room) {
  const { signalboxUrl } = await (await fetch("/config")).json();
  let group;
  const client = new SignalboxClient({
    url: signalboxUrl,
    // Asked before every connect: the backend decides who may chat where.
    tokenProvider: async () => {
      const response = await fetch(`/token?user=${encodeURIComponent(name)}&room=${encodeURIComponent(room)}`);
      if (!response.ok) throw new Error(await response.text());
      const answer = await response.json();
      group = answer.group;
      return answer.token;
    },
  });

  client.on("state", ({ state }) => {
    $("#status").textContent = state;
    $("#status").dataset.state = state;
  });
  client.on("reconnecting", ({ code, delayMs }) => system(`connection lost (${code}); reconnecting in ${delayMs} ms…`));
  client.on("connected", ({ reconnected }) => {
    if (reconnected) system("reconnected");
    refreshMembers(client, group);
  });
  client.on("disconnected", ({ code, reason }) => system(`disconnected (${code}) ${reason}`));
  client.on("recovery", ({ groups }) => {
    for (const outcome of groups) {
      system(outcome.recovered ? "nothing missed while away" : `some messages may be missing: ${outcome.reason}`);
    }
  });
  client.onMessage("chat", ({ data }) => say(data.from, data.text));
  client.on("presence", (change) => {
    for (const { userId } of change.joined ?? []) if (userId !== name) system(`${userId} joined`);
    for (const { userId } of change.left ?? []) if (userId !== name) system(`${userId} left`);
    refreshMembers(client, group);
  });

  await client.connect();
  await client.join(group);
  refreshMembers(client, group);

  $("#enter").hidden = true;
  $("#chat").hidden = false;
  $("#room-title").textContent = `#${room} as ${name}`;
  $("#text").focus();
  $("#compose").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("#text").value.trim();
    if (!text) return;
    try {
      await client.publish(group, "chat", { from: name, text });
      $("#text").value = "";
    } catch (error) {
      system(`not sent (${error.code}): ${error.message}`);
    }
  });
}

/** Presence events say that something changed; the snapshot says who is there. */
async function refreshMembers(client, group) {
  try {
    const { count, members } = await client.presence(group);
    $("#member-count").textContent = `(${count})`;
    $("#members").replaceChildren(
      ...members.map((member) => {
        const item = document.createElement("li");
        item.dataset.user = member.userId;
        item.textContent = member.info?.name ?? member.userId;
        if (member.connections > 1) {
          const devices = document.createElement("span");
          devices.className = "devices";
          devices.textContent = ` ×${member.connections}`;
          item.append(devices);
        }
        return item;
      }),
    );
  } catch {
    // Not connected right now: the next `connected` event refreshes the list.
  }
}

function say(from, text) {
  const item = document.createElement("li");
  item.className = "message";
  const who = document.createElement("span");
  who.className = "from";
  who.textContent = from;
  item.append(who, document.createTextNode(text));
  append(item);
}

function system(text) {
  const item = document.createElement("li");
  item.className = "system";
  item.textContent = text;
  append(item);
}

function append(item) {
  const list = $("#messages");
  list.append(item);
  list.scrollTop = list.scrollHeight;
}
