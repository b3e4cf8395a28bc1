'use strict';
// Starts each peer (alone, then as two nodes over a Redis of its own when `redis-server` is on the
// PATH) and checks the frames `switchboard bench` relies on. Run with `npm test`.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const net = require('node:net');
const path = require('node:path');
const jsonwebtoken = require('jsonwebtoken');
const WebSocket = require('ws');

const SECRET = 'peer-test-secret';
const children = [];
after(() => {
  for (const child of children) child.kill();
});

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitFor(check, what) {
  for (let i = 0; i < 100; i++) {
    if (await check().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${what} did not come up`);
}

async function startRedis() {
  if (spawnSync('redis-server', ['--version']).status !== 0) return null;
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  children.push(child);
  await waitFor(
    () =>
      new Promise((resolve) => {
        const socket = net.connect(port, '127.0.0.1', () => {
          socket.end();
          resolve(true);
        });
        socket.on('error', () => resolve(false));
      }),
    'redis',
  );
  return `redis://127.0.0.1:${port}`;
}

async function startPeer(kind, nodeId, redisUrl) {
  const port = await freePort();
  const env = { ...process.env, PORT: String(port), NODE_ID: nodeId, JWT_SECRET: SECRET, REDIS_URL: redisUrl || '' };
  const child = spawn(process.execPath, [path.join(__dirname, '..', kind, 'server.js')], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, kind);
  return { kind, port, child };
}

/** A client speaking native frames, over plain WebSocket or as Socket.IO `frame` events. */
class Client {
  static async open(peer) {
    const client = new Client();
    client.socketio = peer.kind === 'socketio-redis';
    const url = client.socketio
      ? `ws://127.0.0.1:${peer.port}/socket.io/?EIO=4&transport=websocket`
      : `ws://127.0.0.1:${peer.port}/ws`;
    client.ws = new WebSocket(url);
    client.frames = [];
    client.waiters = [];
    let connected = !client.socketio;
    const ready = new Promise((resolve, reject) => {
      client.ws.on('error', reject);
      if (connected) client.ws.on('open', resolve);
      client.ws.on('message', (data) => {
        const text = data.toString();
        if (client.socketio) {
          if (text.startsWith('0')) return client.ws.send('40');
          if (text.startsWith('40')) {
            connected = true;
            return resolve();
          }
          if (text === '2') return client.ws.send('3');
          if (!text.startsWith('42["frame",')) return;
          client.push(JSON.parse(text.slice(2))[1]);
        } else {
          client.push(JSON.parse(text));
        }
      });
    });
    await ready;
    return client;
  }

  push(frame) {
    this.frames.push(frame);
    for (const waiter of [...this.waiters]) waiter();
  }

  send(frame) {
    const json = JSON.stringify(frame);
    this.ws.send(this.socketio ? `42["frame",${json}]` : json);
  }

  /** The next frame of `type` (and matching `filter`), taken out of those received. */
  async next(type, filter = () => true) {
    for (;;) {
      const index = this.frames.findIndex((frame) => frame.type === type && filter(frame));
      if (index >= 0) return this.frames.splice(index, 1)[0];
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${type} frame; got ${JSON.stringify(this.frames)}`)), 3000);
        this.waiters.push(() => {
          clearTimeout(timer);
          this.waiters = [];
          resolve();
        });
      });
    }
  }

  async login(user) {
    const jwt = jsonwebtoken.sign({ sub: user }, SECRET, { algorithm: 'HS256', expiresIn: 600 });
    this.send({ type: 'login_jwt', jwt, presence: false, ref: 'l' });
    const session = await this.next('session');
    assert.equal(session.user, user.toLowerCase());
    assert.equal(session.ref, 'l');
    assert.equal(session.token.length, 43);
    await this.next('sync');
    assert.equal((await this.next('synced')).messages, 0);
    return this;
  }

  close() {
    this.ws.close();
  }
}

async function metric(peer, name) {
  const text = await (await fetch(`http://127.0.0.1:${peer.port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

for (const kind of ['ws-redis', 'socketio-redis']) {
  test(`${kind}: one node speaks the bench's frames`, async () => {
    const peer = await startPeer(kind, 'n1');
    const alice = await Client.open(peer);
    const hello = await alice.next('hello');
    assert.deepEqual([hello.protocol, hello.node, hello.auth], [1, 'n1', ['login_jwt']]);
    alice.send({ type: 'send', to: 'bob', text: 'too early', ref: 1 });
    assert.equal((await alice.next('error')).code, 'not_authenticated');
    alice.send({ type: 'login_jwt', jwt: jsonwebtoken.sign({ sub: 'alice' }, 'wrong', { expiresIn: 60 }), ref: 2 });
    assert.deepEqual(await alice.next('error').then((e) => [e.code, e.ref]), ['invalid_jwt', 2]);
    await alice.login('Alice');
    const bob = await (await Client.open(peer)).login('bob');
    const bob2 = await (await Client.open(peer)).login('bob');

    bob.send({ type: 'send', to: 'alice', text: 'sb 1 0 123', ref: 7 });
    const ack = await bob.next('ack');
    assert.deepEqual([ack.ref, ack.conv, ack.seq, ack.duplicate, ack.id.length], [7, 'dm:alice:bob', 1, false, 32]);
    const message = await alice.next('message');
    assert.deepEqual(
      [message.conv, message.seq, message.from, message.to, message.text, message.id],
      ['dm:alice:bob', 1, 'bob', 'alice', 'sb 1 0 123', ack.id],
    );
    assert.equal((await bob2.next('message')).text, 'sb 1 0 123', "the sender's other connection gets a copy");
    alice.send({ type: 'send', to: 'bob', text: 'back', ref: 'r' });
    assert.equal((await alice.next('ack')).seq, 2);
    assert.equal((await bob.next('message')).seq, 2);

    alice.send({ type: 'send', room: 'lobby', text: 'not yet', ref: 8 });
    assert.match((await alice.next('error')).code, /^(room_not_found|not_a_member)$/);
    alice.send({ type: 'join', room: 'Lobby', ref: 'join' });
    assert.deepEqual(await alice.next('member_joined'), { type: 'member_joined', room: 'lobby', user: 'alice' });
    const room = await alice.next('room');
    assert.deepEqual([room.ref, room.room, room.created, room.joined], ['join', 'lobby', true, true]);
    bob.send({ type: 'join', room: 'lobby', ref: 'join' });
    assert.equal((await alice.next('member_joined')).user, 'bob');
    assert.equal((await bob.next('room')).created, false);
    bob.send({ type: 'send', room: 'lobby', text: 'hi room', ref: 9 });
    assert.equal((await bob.next('ack')).conv, 'room:lobby');
    const roomMessage = await alice.next('message', (m) => m.room === 'lobby');
    assert.deepEqual([roomMessage.conv, roomMessage.seq, roomMessage.from], ['room:lobby', 1, 'bob']);

    for (const [frame, code] of [
      [{ type: 'send', to: 'bob', text: '   ' }, 'empty_text'],
      [{ type: 'send', to: 'bob', room: 'x', text: 'a' }, 'invalid_field'],
      [{ type: 'send', to: 'B B', text: 'a' }, 'invalid_name'],
      [{ type: 'nope' }, 'unknown_type'],
    ]) {
      alice.send(frame);
      assert.equal((await alice.next('error')).code, code, JSON.stringify(frame));
    }
    alice.send({ type: 'ping', ref: 3 });
    assert.equal((await alice.next('pong')).ref, 3);

    assert.equal(await metric(peer, 'switchboard_connections'), 3);
    // Each private message reached the recipient's connections and the sender's other one; the
    // room message reached alice and, with ws (membership is the user's, as in Switchboard), bob's
    // other connection too (Socket.IO rooms hold sockets).
    assert.equal(await metric(peer, 'switchboard_deliveries_total'), kind === 'ws-redis' ? 6 : 5);
    assert.ok((await metric(peer, 'process_cpu_seconds_total')) > 0);
    assert.ok((await metric(peer, 'process_resident_memory_bytes')) > 1e6);
    assert.equal(await metric(peer, 'switchboard_bus_messages_sent_total'), undefined);
    for (const client of [alice, bob, bob2]) client.close();
    peer.child.kill();
  });

  test(`${kind}: two nodes over Redis`, async (t) => {
    const redisUrl = await startRedis();
    if (!redisUrl) return t.skip('no redis-server on the PATH');
    const n1 = await startPeer(kind, 'n1', redisUrl);
    const n2 = await startPeer(kind, 'n2', redisUrl);
    const alice = await (await Client.open(n1)).login('alice');
    const bob = await (await Client.open(n2)).login('bob');
    alice.send({ type: 'send', to: 'bob', text: 'across', ref: 1 });
    assert.equal((await alice.next('ack')).seq, 1);
    assert.deepEqual(await bob.next('message').then((m) => [m.from, m.text]), ['alice', 'across']);

    alice.send({ type: 'join', room: 'both', ref: 'j' });
    await alice.next('room');
    bob.send({ type: 'join', room: 'both', ref: 'j' });
    await bob.next('room');
    assert.equal((await alice.next('member_joined', (e) => e.user === 'bob')).room, 'both');
    bob.send({ type: 'send', room: 'both', text: 'to the room', ref: 2 });
    await bob.next('ack');
    assert.equal((await alice.next('message', (m) => m.room === 'both')).text, 'to the room');
    assert.equal(bob.frames.filter((f) => f.type === 'message').length, 0, 'the sender gets no copy of its own');

    assert.ok((await metric(n1, 'switchboard_bus_messages_sent_total')) >= 1);
    assert.ok((await metric(n2, 'switchboard_bus_messages_received_total')) >= 1);
    assert.equal(await metric(n2, 'switchboard_deliveries_total'), 1);
    alice.close();
    bob.close();
    n1.child.kill();
    n2.child.kill();
  });
}
