// The chat demo end to end: a real Signalbox, the demo backend (server.mjs) as its own process,
// and two headless Chromium pages that chat with each other — also across a Signalbox restart.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { Signalbox, withDeadline } from "../../../sdk/js/test/support/signalbox.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const BROWSER = process.env.CHROMIUM ?? "/usr/bin/chromium";
const TIMEOUT_MS = 20_000; // Generous: only there so that a failure does not hang.

let signalbox;
let demo;
let demoUrl;
let browser;
const pages = {};

/** Starts `node server.mjs` against `signalbox` and reads the URL it prints. */
async function startDemo() {
  const child = spawn(process.execPath, [join(HERE, "../server.mjs")], {
    env: { ...process.env, SIGNALBOX_URL: signalbox.url, SIGNALBOX_ADMIN_TOKEN: signalbox.adminToken, PORT: "0" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const printed = new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on("line", (line) => {
      const match = line.match(/^Chat demo: (http:\/\/\S+)/);
      if (match) resolve(match[1]);
    });
    child.once("exit", (code) => reject(new Error(`the demo backend exited (${code})`)));
  });
  return { child, url: await withDeadline(printed, "the demo backend's URL") };
}

/** Opens the page in its own browser context (its own storage) and enters a room. */
async function enter(name, room) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT_MS);
  const errors = [];
  page.on("pageerror", (error) => errors.push(error));
  await page.goto(demoUrl);
  await page.fill("#name", name);
  await page.fill("#room", room);
  await page.click("#join");
  await page.waitForSelector('#status[data-state="connected"]');
  await page.waitForSelector("#chat:not([hidden])");
  return { page, errors };
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

function messageIn(page, from, text) {
  return page.waitForSelector(`#messages li.message:has(.from:text-is("${from}")):has-text("${text}")`);
}

before(async () => {
  signalbox = await Signalbox.start();
  ({ child: demo, url: demoUrl } = await startDemo());
  browser = await chromium.launch({
    executablePath: BROWSER,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
});

after(async () => {
  await browser?.close();
  demo?.kill();
  await signalbox?.dispose();
});

test("two people chat: each sees the other in the member list and the other's messages", async () => {
  pages.alice = await enter("alice", "lobby");
  pages.bob = await enter("bob", "lobby");

  // Presence: bob's arrival is told to alice's page, and both lists show both.
  await pages.alice.page.waitForSelector('#messages li.system:text-is("bob joined")');
  for (const { page } of [pages.alice, pages.bob]) {
    await page.waitForSelector('#members li[data-user="alice"]');
    await page.waitForSelector('#members li[data-user="bob"]');
    await page.waitForSelector('#member-count:text-is("(2)")');
  }

  await say(pages.alice.page, "hello bob");
  await messageIn(pages.bob.page, "alice", "hello bob");
  await messageIn(pages.alice.page, "alice", "hello bob"); // Her own message comes back too.
  await say(pages.bob.page, "hi alice!");
  await messageIn(pages.alice.page, "bob", "hi alice!");

  const aliceSees = await pages.alice.page.$$eval("#messages li.message", (items) => items.map((i) => i.textContent));
  assert.deepEqual(aliceSees, ["alicehello bob", "bobhi alice!"]);

  const screenshot = join(mkdtempSync(join(tmpdir(), "signalbox-chat-")), "chat.png");
  await pages.alice.page.screenshot({ path: screenshot, fullPage: true });
  console.log(`screenshot: ${screenshot}`);
});

test("a Signalbox restart: both pages reconnect by themselves and keep chatting", async () => {
  const { alice, bob } = pages;
  await signalbox.stop();
  await bob.page.waitForSelector('#status[data-state="reconnecting"], #status[data-state="connecting"]');
  await signalbox.start();
  await alice.page.waitForSelector('#status[data-state="connected"]');
  await bob.page.waitForSelector('#status[data-state="connected"]');
  await bob.page.waitForSelector('#messages li.system:text-is("reconnected")');

  await say(alice.page, "still there?");
  await messageIn(bob.page, "alice", "still there?");
  await bob.page.waitForSelector('#members li[data-user="alice"]');
  assert.deepEqual([...alice.errors, ...bob.errors], [], "no uncaught error in the pages");
});
