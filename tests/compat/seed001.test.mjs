// Seed 001's protocol with `ws`, as its CLI speaks it: the gateway `GET /server`, then
// `{id, action, data}` frames on a WebSocket at `/` of the node it names (needs --open-auth).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { url, urls, uniqueName, nextEvent, eventually } from './lib.mjs';

/** A seed 001 client on `ws://host:port` (path `/`), with its frames as events by action. */
class Cli {
  constructor(host, port) {
    this.socket = new WebSocket(`ws://${host}:${port}`);
    this.listeners = new Map();
    this.id = 0;
    this.socket.on('message', (data) => {
      const frame = JSON.parse(data.toString());
      for (const handler of [...(this.listeners.get(frame.action) ?? [])]) handler(frame);
    });
  }
  on(action, handler) {
    this.listeners.set(action, [...(this.listeners.get(action) ?? []), handler]);
  }
  off(action, handler) {
    this.listeners.set(action, (this.listeners.get(action) ?? []).filter((h) => h !== handler));
  }
  async opened() {
    await new Promise((resolve, reject) => {
      this.socket.once('open', resolve);
      this.socket.once('error', reject);
    });
  }
  send(action, data) {
    this.socket.send(JSON.stringify({ id: ++this.id, action, data }));
    return this.id;
  }
}

async function login(base, username) {
  const gateway = await fetch(`${base}/server`);
  assert.equal(gateway.status, 200);
  const { host, port } = await gateway.json();
  const cli = new Cli(host, port);
  await cli.opened();
  const answer = nextEvent(cli, 'login');
  cli.send('login', { username });
  const data = (await answer).data;
  assert.equal(data.username, username);
  assert.equal(typeof data.sessionId, 'string');
  return cli;
}

test('seed 001: gateway, login, room and private chat, joinRoom replay, userInfo, popular, errors', async () => {
  const all = await (await fetch(`${url(0)}/server?all=1`)).json();
  assert.equal(all.length, urls.length, 'every live node listed');
  for (const node of all) assert.deepEqual(Object.keys(node).sort(), ['host', 'port']);
  const page = await fetch(`${url(0)}/`);
  assert.match(page.headers.get('content-type'), /text\/html/, 'GET / without an upgrade stays the web page');

  const [n1, n2, n3] = [uniqueName('u'), uniqueName('u'), uniqueName('u')];
  const room = uniqueName('room');
  const c1 = await login(url(0), n1);
  const c2 = await login(url(1), n2);
  for (const cli of [c1, c2]) cli.send('joinRoom', { roomName: room });

  const inRoom = [c1, c2].map((cli) => nextEvent(cli, 'chat', (f) => f.data.roomName === room));
  c1.send('chat', { from: n1, to: null, roomName: room, ts: Date.now(), format: 'text', message: 'rust rust go' });
  for (const frame of await Promise.all(inRoom)) {
    assert.equal(frame.data.from, n1);
    assert.equal(frame.data.message, 'rust rust go');
    assert.equal(frame.data.format, 'text');
  }

  const direct = nextEvent(c2, 'chat', (f) => f.data.roomName === '');
  c1.send('chat', { from: 'mallory', to: n2, roomName: '', ts: Date.now(), format: 'text', message: 'psst rust' });
  const dm = (await direct).data;
  assert.equal(dm.from, n1, 'from comes from the session');
  assert.equal(dm.message, 'psst rust');

  const offline = nextEvent(c1, 'error');
  c1.send('chat', { from: n1, to: 'nobody-here', roomName: '', ts: Date.now(), format: 'text', message: 'x' });
  assert.deepEqual((await offline).data, { code: 404, message: 'user nobody-here is not on line', ext: null });

  const c3 = await login(url(2), n3);
  const replay = nextEvent(c3, 'chat', (f) => f.data.roomName === room);
  c3.send('joinRoom', { roomName: room });
  assert.equal((await replay).data.message, 'rust rust go', 'joinRoom replays the room');

  const info = nextEvent(c3, 'userInfo');
  c3.send('userInfo', { username: n2 });
  const infoData = (await info).data;
  assert.equal(infoData.username, n2);
  assert.equal(typeof infoData.loginTime, 'number');
  assert.equal(typeof infoData.nodeId, 'string');

  // Asked where the words were said, then on another node: the ranking is cluster-wide, the
  // other nodes' counts arriving within a second or so.
  const popularAt = async (cli, n) => {
    const answer = nextEvent(cli, 'popular');
    cli.send('popular', { n });
    return (await answer).data;
  };
  const words = await popularAt(c1, 0);
  assert.equal(words.length, 2, 'n <= 0 means 1');
  assert.deepEqual(words, ['rust', '2'], 'the most used word of room talk, its count as a string');
  const elsewhere = await eventually('popular on another node', () => popularAt(c3, 2), (data) => data[0] === 'rust');
  assert.deepEqual(elsewhere, ['rust', '2', 'go', '1'], 'counted once, wherever asked');
  assert.deepEqual(await popularAt(c1, 1), ['rust', '2'], 'the counts that came back did not add up twice');

  const refused = new Cli(new URL(url(0)).hostname, new URL(url(0)).port);
  await refused.opened();
  const denied = nextEvent(refused, 'error');
  refused.send('chat', { to: n1, message: 'no login' });
  assert.equal((await denied).data.code, 401);
  for (const cli of [c1, c2, c3, refused]) cli.socket.close();
});
