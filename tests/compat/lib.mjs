// Helpers shared by the compatibility tests: the servers under test, the real client libraries,
// and waiting for events with a bound (a hang fails the test instead of stalling the suite).
import { createRequire } from 'node:module';
import WebSocket from 'ws';

const require = createRequire(import.meta.url);
/** socket.io-client 4 (Engine.IO 4, Socket.IO rev 5): seed 002's client. */
export const io4 = require('socket.io-client').io;
/** socket.io-client 1.7.4 (Engine.IO 3, Socket.IO rev 4): seeds 000 and 003's client. */
export const io1 = require('socket.io-client-legacy');

/** The HTTP base URLs of the nodes under test (one, or a cluster's). */
export const urls = (process.env.SB_URLS ?? '').split(',').filter(Boolean);
if (urls.length === 0) throw new Error('SB_URLS is not set');
export const openAuth = process.env.SB_OPEN_AUTH === '1';
export const url = (index) => urls[index % urls.length];

const LIMIT_MS = 10_000;
let counter = 0;
/** A user name no other test uses. */
export const uniqueName = (prefix) => `${prefix}${process.pid % 10000}x${++counter}`;

/** Resolves with the first `event` (its arguments) the emitter sends that passes `check`. */
export function nextEvent(emitter, event, check = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${LIMIT_MS} ms`)), LIMIT_MS);
    const handler = (...args) => {
      if (!check(...args)) return;
      clearTimeout(timer);
      if (emitter.off) emitter.off(event, handler);
      else emitter.removeListener(event, handler);
      resolve(args.length > 1 ? args : args[0]);
    };
    emitter.on(event, handler);
  });
}

/**
 * Asks `ask` until `check` holds for its answer, for what the cluster only settles in time (the
 * word counts of `popular` travel between nodes once a second); resolves with that answer.
 */
export async function eventually(what, ask, check) {
  const deadline = Date.now() + LIMIT_MS;
  for (;;) {
    const answer = await ask();
    if (check(answer)) return answer;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(answer)} after ${LIMIT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Emits with an acknowledgement and resolves with the answer. */
export function request(socket, event, payload) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ack to ${event} within ${LIMIT_MS} ms`)), LIMIT_MS);
    socket.emit(event, payload, (answer) => {
      clearTimeout(timer);
      resolve(answer);
    });
  });
}

/** A native-protocol client (docs/protocol.md) over `ws`. */
export class Native {
  static async register(base, username) {
    const client = new Native(base);
    await nextEvent(client, 'hello');
    const session = nextEvent(client, 'session');
    const synced = nextEvent(client, 'synced');
    client.send({ type: 'register', username, password: 'password1' });
    client.session = await session;
    if (client.session.type !== 'session') throw new Error(JSON.stringify(client.session));
    await synced;
    return client;
  }

  constructor(base) {
    this.socket = new WebSocket(base.replace(/^http/, 'ws') + '/ws');
    this.listeners = new Map();
    this.socket.on('message', (data) => {
      const frame = JSON.parse(data.toString());
      const kind = frame.type === 'error' && !this.session ? 'session' : frame.type;
      for (const handler of [...(this.listeners.get(kind) ?? [])]) handler(frame);
    });
  }

  on(kind, handler) {
    this.listeners.set(kind, [...(this.listeners.get(kind) ?? []), handler]);
  }

  off(kind, handler) {
    this.listeners.set(kind, (this.listeners.get(kind) ?? []).filter((h) => h !== handler));
  }

  send(frame) {
    this.socket.send(JSON.stringify(frame));
  }

  close() {
    this.socket.close();
  }
}

/** Connects a Socket.IO client and resolves once the connection is open (or rejects with its refusal). */
export function connected(socket) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no connect within 10 s')), LIMIT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    const refuse = (error) => {
      clearTimeout(timer);
      reject(new Error(typeof error === 'string' ? error : error?.message ?? String(error)));
    };
    socket.once('connect_error', refuse);
    socket.once('error', refuse);
  });
}
