// Test harness for the web client: Debian's chromium driven by playwright-core, a switchboard
// server process the tests can kill and start again, and helpers that act like a user.
//
// Environment (set by crates/switchboard/tests/web_client.rs):
//   SWITCHBOARD_WEB_URL          a running server to test against (http://127.0.0.1:PORT)
//   SWITCHBOARD_BIN              the switchboard binary, for tests that run a server of their own
//   SWITCHBOARD_WEB_BUS          a Redis for the cluster tests' nodes (redis://127.0.0.1:PORT)
//   SWITCHBOARD_WEB_STORE        a PostgreSQL database for the cluster tests' nodes
//   SWITCHBOARD_WEB_TMP          a scratch directory (data directories, server logs)
//   SWITCHBOARD_WEB_SCREENSHOTS  where screenshots go
//   CHROMIUM                     the browser (default /usr/bin/chromium)

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import os from 'node:os';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';

export const PASSWORD = 'correct horse battery';
/** How long a test waits for something it expects to see. */
export const WAIT_MS = 20_000;

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through cargo test -p switchboard --test web_client`);
  return value;
}

export const scratchDir = () => process.env.SWITCHBOARD_WEB_TMP || fs.mkdtempSync(path.join(os.tmpdir(), 'sb-web-'));
export const screenshotDir = () => {
  const dir = process.env.SWITCHBOARD_WEB_SCREENSHOTS || path.join(scratchDir(), 'screenshots');
  fs.mkdirSync(dir, { recursive: true });
  return dir;
};
export const serverUrl = () => requiredEnv('SWITCHBOARD_WEB_URL');

/**
 * Chromium, headless. playwright gives every launch a fresh temporary --user-data-dir (and deletes
 * it on close); the flags keep Chromium from calling home and from using what this machine lacks.
 */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * A browser context (its own cookies and storage: one "device") with a page. Every alert, page
 * error and console error is recorded in `problems`, which tests assert empty.
 */
export async function openDevice(browser, { viewport = { width: 1280, height: 800 } } = {}) {
  const context = await browser.newContext({ viewport });
  context.setDefaultTimeout(WAIT_MS);
  const device = { context, problems: [], pages: [] };
  device.page = await newTab(device);
  return device;
}

/** Another tab of the same device (same localStorage). */
export async function newTab(device) {
  const page = await device.context.newPage();
  page.on('dialog', (dialog) => {
    device.problems.push(`dialog: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  page.on('pageerror', (error) => device.problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    // Failed connects while a server is down are expected (the WebSocket, and the gateway's
    // `/api/connect` asked before each reconnect); everything else is not.
    const refused = /WebSocket connection to .* failed|Failed to load resource: net::ERR_CONNECTION_REFUSED/;
    if (message.type() === 'error' && !refused.test(message.text())) {
      device.problems.push(`console error: ${message.text()}`);
    }
  });
  device.pages.push(page);
  return page;
}

/** Fills the login form and presses Register (or Log in); waits until the chat is live. */
export async function register(page, baseUrl, username, { action = 'register', password = PASSWORD } = {}) {
  await page.goto(`${baseUrl}/`);
  await page.locator('#login-username').fill(username);
  await page.locator('#login-password').fill(password);
  await page.locator(action === 'register' ? '#register-button' : '#login-button').click();
  await waitReady(page);
  await page.locator('#me-name', { hasText: username }).waitFor();
}

/** Waits until the status bar says the page is connected and synced. */
export async function waitReady(page) {
  await page.locator('#status[data-state="ready"]').waitFor();
}

/**
 * Where a ready page is connected: the node its status bar holds (from the server's `session`)
 * and the WebSocket URL its connection opened, both in the status text's data (and its title).
 */
export async function connectedNode(page) {
  const status = page.locator('#status[data-state="ready"] #status-text');
  const text = await status.textContent();
  if (text !== 'Connected') throw new Error(`the status bar says "${text}"`);
  return { node: await status.getAttribute('data-node'), url: await status.getAttribute('data-url') };
}

/** Counts the page's requests to the gateway (`/api/connect`). */
export function countGatewayRequests(page) {
  const counter = { count: 0 };
  page.on('request', (request) => {
    if (new URL(request.url()).pathname === '/api/connect') counter.count += 1;
  });
  return counter;
}

export async function openDm(page, user) {
  const item = page.locator(`#user-list [data-user="${user}"]`);
  // The list holds the people one talks with and those online; anyone else is found by a search.
  if ((await item.count()) === 0) await page.locator('#search').fill(user);
  await item.click();
  await page.locator('#conv-name', { hasText: user }).waitFor();
}

/** Types a message and presses Enter; waits until the server acknowledged it (no longer pending). */
export async function sendText(page, text) {
  await page.locator('#composer-text').fill(text);
  await page.locator('#composer-text').press('Enter');
  await page.locator('#message-list .msg.mine:not(.pending) .text', { hasText: text }).last().waitFor();
}

/** Waits until a message with exactly this text is shown (and returns its locator). */
export async function waitForMessage(page, text) {
  const locator = page.locator('#message-list .msg .text').filter({ hasText: exactly(text) });
  await locator.first().waitFor();
  return locator;
}

export function exactly(text) {
  return new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
}

/** The message item whose text is `text`. */
export const messageItem = (page, text) =>
  page.locator('#message-list .msg').filter({ has: page.locator('.text', { hasText: text }) });

/** Picks `action` (Reply, Delete, an emoji) from the menu of the last message whose text is `text`. */
export async function messageMenu(page, text, action) {
  const message = messageItem(page, text).last();
  await message.hover();
  await message.locator('.msg-menu-button').click();
  await message.locator('.msg-menu [role="menuitem"]', { hasText: action }).click();
}

/** The texts of the open conversation, in page order. */
export async function messageTexts(page) {
  return page.locator('#message-list .msg .text').allTextContents();
}

/** Waits until `predicate(argument)`, evaluated in the page, is true. */
export async function waitInPage(page, predicate, argument) {
  await page.waitForFunction(predicate, argument, { timeout: WAIT_MS, polling: 50 });
}

export async function screenshot(page, name) {
  const file = path.join(screenshotDir(), `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

/**
 * Runs `script(request, args)` inside `page` on a protocol connection of its own (the browser has
 * the WebSocket client), logged in as `username`, or registering it with `register`: for seeding
 * users, rooms and long histories quickly, or messages from a user who is not looking at the page.
 * `request(frame)` resolves with the answer to `frame`. The connection closes when the script is
 * done, unless `keep` (the user stays online until `closeKept(page, username)`). `script` runs in
 * the page: it sees only its arguments.
 */
export async function asUser(page, { username, password = PASSWORD, register = false, keep = false }, script, args = {}) {
  const session = JSON.stringify({ username, password, register, keep });
  return page.evaluate(`(${inPageSession})(${session}, ${script}, ${JSON.stringify(args)})`);
}

/** Closes the connection `asUser(..., {keep: true})` left open for `username`. */
export async function closeKept(page, username) {
  await page.evaluate((username) => {
    window.__keptConnections?.[username]?.close();
    delete window.__keptConnections?.[username];
  }, username);
}

/** The page side of `asUser` (its source is sent to the page). */
async function inPageSession({ username, password, register, keep }, script, args) {
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
  const waiting = new Map();
  let next = 0;
  const request = (frame) =>
    new Promise((resolve) => {
      const ref = `seed-${next++}`;
      waiting.set(ref, resolve);
      ws.send(JSON.stringify({ ...frame, ref }));
    });
  ws.addEventListener('message', (event) => {
    const frame = JSON.parse(event.data);
    const resolve = frame.ref !== undefined && waiting.get(frame.ref);
    if (resolve) {
      waiting.delete(frame.ref);
      resolve(frame);
    }
  });
  await new Promise((resolve, reject) => {
    ws.addEventListener('open', resolve);
    ws.addEventListener('error', reject);
  });
  const kind = register ? 'register' : 'login';
  const session = await request({ type: kind, username, password, presence: false });
  if (session.type !== 'session') throw new Error(`${kind} ${username} failed: ${JSON.stringify(session)}`);
  const result = await script(request, args);
  if (keep) (window.__keptConnections ??= {})[username] = ws;
  else ws.close();
  return result;
}

/** Registers users, each on a connection of its own; they are offline afterwards. */
export async function seedUsers(page, names) {
  for (const username of names) await asUser(page, { username, register: true }, async () => {});
}

/**
 * Joins `rooms` (creating them) as `username`, a few requests in flight at a time, retrying what
 * the rate limit refuses.
 */
export async function seedRooms(page, { username, password = PASSWORD, rooms }) {
  return asUser(
    page,
    { username, password },
    async (request, { rooms }) => {
      const join = async (room) => {
        for (;;) {
          const answer = await request({ type: 'join', room });
          if (answer.type === 'room') return;
          if (answer.code !== 'rate_limited') throw new Error(JSON.stringify(answer));
          await new Promise((resolve) => setTimeout(resolve, answer.retry_after_ms));
        }
      };
      const queue = [...rooms];
      const worker = async () => {
        while (queue.length > 0) await join(queue.shift());
      };
      await Promise.all(Array.from({ length: 8 }, worker));
    },
    { rooms },
  );
}

/**
 * Sends `texts` (or `count` messages `label 1`, `label 2`...) from `username` to the user `to` or
 * into `room`, in order, retrying what the rate limit refuses.
 */
export async function seedMessages(page, { username, password = PASSWORD, to, room, count = 0, label = 'message', texts }) {
  const all = texts ?? Array.from({ length: count }, (_, index) => `${label} ${index + 1}`);
  const target = room ? { room } : { to };
  return asUser(
    page,
    { username, password },
    async (request, { target, texts }) => {
      for (const text of texts) {
        const key = crypto.randomUUID();
        for (;;) {
          const answer = await request({ type: 'send', ...target, text, key });
          if (answer.type === 'ack') break;
          if (answer.code !== 'rate_limited') throw new Error(JSON.stringify(answer));
          await new Promise((resolve) => setTimeout(resolve, answer.retry_after_ms));
        }
      }
    },
    { target, texts: all },
  );
}

/**
 * Registers `before` / `after` hooks for a file's tests: one browser for them all, and every
 * device opened with the returned `device(options)` checked at the end for alerts, page errors
 * and console errors.
 */
export function browserSuite() {
  const suite = {
    browser: null,
    devices: [],
    async device(options) {
      const opened = await openDevice(suite.browser, options);
      suite.devices.push(opened);
      return opened;
    },
  };
  before(async () => {
    suite.browser = await launchBrowser();
  });
  after(async () => {
    await suite.browser?.close();
    for (const opened of suite.devices) assert.deepEqual(opened.problems, [], 'no alerts, page errors or console errors');
  });
  return suite;
}

// -----------------------------------------------------------------------------------------------
// A server of the test's own, for tests that restart it.

const running = new Set();
function killEverything() {
  for (const server of running) server.child?.kill('SIGKILL');
}
process.on('exit', killEverything);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    killEverything();
    process.exit(1);
  });
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * `switchboard serve` on a port and data directory of its own, which stay the same across
 * `kill()` / `start()`: a restarted server has the same address and the same SQLite store.
 */
export class ServerProcess {
  /**
   * `args` are added to `serve`'s own (listen address, node id, data directory, grace period);
   * `presence` is the server's setting (default SWITCHBOARD_PRESENCE, else `everyone`).
   */
  constructor({ nodeId = 'n1', args = [], presence } = {}) {
    this.binary = requiredEnv('SWITCHBOARD_BIN');
    this.nodeId = nodeId;
    this.args = args;
    this.presence = presence ?? (process.env.SWITCHBOARD_PRESENCE || 'everyone');
    this.dir = fs.mkdtempSync(path.join(scratchDir(), 'server-'));
    this.port = 0;
    this.child = null;
    this.exited = null;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The WebSocket URL the node announces to the cluster (its default `--public-url`). */
  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  get log() {
    return path.join(this.dir, 'server.log');
  }

  logText() {
    try {
      return fs.readFileSync(this.log, 'utf8');
    } catch {
      return '';
    }
  }

  /** Starts the server (again) and waits until `/readyz` answers 200. */
  async start() {
    if (this.child) throw new Error('server already running');
    if (!this.port) this.port = await freePort();
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('SWITCHBOARD_')));
    delete env.RUST_LOG;
    const log = fs.openSync(this.log, 'a');
    const child = spawn(
      this.binary,
      [
        'serve',
        '--listen',
        `127.0.0.1:${this.port}`,
        '--node-id',
        this.nodeId,
        '--data-dir',
        path.join(this.dir, 'data'),
        '--shutdown-grace-secs',
        '3',
        // The tests see users they have no conversation with come online.
        '--presence',
        this.presence,
        ...this.args,
      ],
      { stdio: ['ignore', log, log], env },
    );
    fs.closeSync(log);
    this.child = child;
    running.add(this);
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`server exited during start:\n${this.logText()}`);
      }
      try {
        const response = await fetch(`${this.url}/readyz`);
        if (response.status === 200) return;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > deadline) throw new Error(`server not ready after ${WAIT_MS} ms:\n${this.logText()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** SIGKILL: the server dies without a word (clients see the connection drop, 1006). */
  async kill() {
    await this.signal('SIGKILL');
  }

  /** SIGTERM: a graceful stop (clients are told 1012 "server restarting"). */
  async stop() {
    await this.signal('SIGTERM');
  }

  async signal(signal) {
    if (!this.child) return;
    this.child.kill(signal);
    await this.exited;
    running.delete(this);
    this.child = null;
  }
}

/** Node heartbeats in the test clusters, and the silence after which a node counts as dead. */
const CLUSTER_HEARTBEAT_MS = 200;
const CLUSTER_NODE_TIMEOUT_MS = 1500;
let clusters = 0;

/**
 * Nodes `n1`..`nN` (`switchboard serve` processes) on the Redis and PostgreSQL database the Rust
 * side started (SWITCHBOARD_WEB_BUS, SWITCHBOARD_WEB_STORE), under a cluster name of their own so
 * that the clusters of several tests do not meet on the bus (they share the database: tests pick
 * user names of their own). Each node announces its own address as its public URL.
 */
export class ClusterProcess {
  constructor({ size = 3 } = {}) {
    const name = `web${process.pid}c${++clusters}`;
    const args = [
      '--bus',
      requiredEnv('SWITCHBOARD_WEB_BUS'),
      '--store',
      requiredEnv('SWITCHBOARD_WEB_STORE'),
      '--cluster',
      name,
      '--heartbeat-ms',
      String(CLUSTER_HEARTBEAT_MS),
      '--node-timeout-ms',
      String(CLUSTER_NODE_TIMEOUT_MS),
    ];
    this.nodes = Array.from({ length: size }, (_, index) => new ServerProcess({ nodeId: `n${index + 1}`, args }));
  }

  /** Starts every node and waits until each one's gateway lists them all. */
  async start() {
    for (const node of this.nodes) await node.start();
    const everyone = this.nodes.map((node) => node.nodeId);
    for (const node of this.nodes) await this.waitForLiveNodes(node, everyone);
  }

  node(nodeId) {
    const node = this.nodes.find((candidate) => candidate.nodeId === nodeId);
    if (!node) throw new Error(`no node ${nodeId} in this cluster`);
    return node;
  }

  /** The ids of the live nodes `via`'s `/api/nodes` lists, sorted. */
  async liveNodes(via) {
    const response = await fetch(`${via.url}/api/nodes`);
    const { nodes } = await response.json();
    return nodes.map((node) => node.id).sort();
  }

  /** Waits until `via`'s gateway lists exactly the nodes `ids` (a dead node is forgotten). */
  async waitForLiveNodes(via, ids) {
    const wanted = [...ids].sort();
    await pollUntil(`${via.nodeId} lists the nodes ${wanted.join(', ')}`, async () => {
      const listed = await this.liveNodes(via);
      return listed.length === wanted.length && listed.every((id, index) => id === wanted[index]);
    });
  }

  /** `GET /api/connect` on `via`: `{node, url, connections}`. */
  async gatewayChoice(via) {
    const response = await fetch(`${via.url}/api/connect`);
    if (response.status !== 200) throw new Error(`/api/connect on ${via.nodeId}: ${response.status}`);
    return response.json();
  }

  /** Waits until `via`'s gateway answers something `predicate` accepts; returns that answer. */
  async waitForGatewayChoice(via, what, predicate) {
    let answer = null;
    await pollUntil(`${via.nodeId}'s gateway names ${what}`, async () => {
      answer = await this.gatewayChoice(via);
      return predicate(answer);
    });
    return answer;
  }

  async kill() {
    for (const node of this.nodes) await node.kill();
  }
}

/**
 * Polls `check` every 50 ms until it resolves true, for cluster state that no page shows (what a
 * node's gateway answers); fails after WAIT_MS with `what`.
 */
async function pollUntil(what, check) {
  const deadline = Date.now() + WAIT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`never happened within ${WAIT_MS} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
