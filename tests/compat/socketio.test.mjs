// /socket.io/ with the real client libraries: the native protocol as events with acks, with a
// session token in the handshake, on every transport of both protocol generations, next to
// native clients on other nodes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { io1, io4, url, urls, openAuth, uniqueName, nextEvent, request, Native, connected, eventually } from './lib.mjs';

/** The ways a client can reach the endpoint: each library, each transport choice. */
const variants = [
  ['EIO4 polling then upgrade', (base, token) => io4(base, { auth: { token }, forceNew: true }), 'websocket'],
  ['EIO4 polling only', (base, token) => io4(base, { auth: { token }, transports: ['polling'], forceNew: true }), 'polling'],
  ['EIO4 websocket only', (base, token) => io4(base, { auth: { token }, transports: ['websocket'], forceNew: true }), 'websocket'],
  ['EIO3 polling then upgrade', (base, token) => io1(base, { query: `token=${token}`, forceNew: true }), 'websocket'],
  ['EIO3 polling only', (base, token) => io1(base, { query: `token=${token}`, transports: ['polling'], forceNew: true }), 'polling'],
  ['EIO3 websocket only', (base, token) => io1(base, { query: `token=${token}`, transports: ['websocket'], forceNew: true }), 'websocket'],
];

const transportOf = (socket) => (socket.io ?? socket.io).engine.transport.name;

for (const [name, open, finalTransport] of variants) {
  test(`${name}: a token logs in and the user talks with a native user on another node`, async () => {
    const sioName = uniqueName('sio');
    const nativeName = uniqueName('nat');
    const account = await Native.register(url(0), sioName);
    const native = await Native.register(url(1), nativeName);
    const socket = open(url(2), account.session.token);
    const session = nextEvent(socket, 'session');
    const synced = nextEvent(socket, 'synced');
    await connected(socket);
    assert.equal((await session).user, sioName, 'the token names the user');
    await synced;
    if (finalTransport === 'websocket' && transportOf(socket) !== 'websocket') await nextEvent(socket.io.engine, 'upgrade');
    assert.equal(transportOf(socket), finalTransport);

    const whoami = await request(socket, 'whoami', { ref: 'mine-1' });
    assert.equal(whoami.type, 'whoami');
    assert.equal(whoami.user, sioName);
    assert.equal(whoami.ref, 'mine-1', "the client's own ref comes back");

    const incoming = nextEvent(native, 'message', (m) => m.from === sioName);
    const ack = await request(socket, 'send', { to: nativeName, text: 'from socket.io', key: 'k1' });
    assert.equal(ack.type, 'ack', JSON.stringify(ack));
    assert.equal(ack.duplicate, false);
    assert.equal((await incoming).text, 'from socket.io');
    const again = await request(socket, 'send', { to: nativeName, text: 'from socket.io', key: 'k1' });
    assert.equal(again.duplicate, true, 'the idempotency key holds over Socket.IO too');
    assert.equal(again.seq, ack.seq);

    const reply = nextEvent(socket, 'message', (m) => m.from === nativeName);
    native.send({ type: 'send', to: sioName, text: 'from native' });
    assert.equal((await reply).text, 'from native');

    const bad = await request(socket, 'send', { to: nativeName });
    assert.equal(bad.type, 'error');
    assert.equal(bad.code, 'invalid_field');
    const unknown = await request(socket, 'no_such_request', {});
    assert.equal(unknown.code, 'unknown_type');

    const history = await request(socket, 'history', { to: nativeName });
    assert.equal(history.type, 'history', JSON.stringify(history));
    assert.deepEqual(history.messages.map((m) => m.text), ['from socket.io', 'from native']);
    socket.disconnect();
    native.close();
    account.close();
  });
}

test('rooms span protocols and nodes; a resume with cursors over Socket.IO replays what was missed', async () => {
  const a = await Native.register(url(0), uniqueName('ra'));
  const b = await Native.register(url(1), uniqueName('rb'));
  const room = uniqueName('room');
  const first = io4(url(1), { auth: { token: a.session.token }, forceNew: true });
  await connected(first);
  assert.equal((await request(first, 'join', { room })).type, 'room');
  const legacy = io1(url(2), { query: `token=${b.session.token}`, forceNew: true });
  await connected(legacy);
  assert.equal((await request(legacy, 'join', { room })).type, 'room');
  const heard = nextEvent(legacy, 'message', (m) => m.room === room);
  const sent = await request(first, 'send', { room, text: 'hello room' });
  assert.equal(sent.type, 'ack');
  assert.equal((await heard).text, 'hello room');
  legacy.disconnect();
  await request(first, 'send', { room, text: 'while you were away' });
  const back = io4(url(0), { auth: { token: b.session.token, cursors: { [sent.conv]: sent.seq } }, forceNew: true });
  const replayed = nextEvent(back, 'message', (m) => m.room === room);
  await connected(back);
  assert.equal((await replayed).text, 'while you were away');
  // `popular` counts the room talk of every node: a word said through one node ranks first when
  // asked on another.
  const word = uniqueName('hot');
  assert.equal((await request(first, 'send', { room, text: `${word} ${word} ${word} ${word} ${word}` })).type, 'ack');
  const popular = await eventually(
    'popular on another node',
    () => request(back, 'popular', { n: 1 }),
    (answer) => answer.words?.[0]?.word === word,
  );
  assert.deepEqual(popular.words, [{ word, count: 5 }], JSON.stringify(popular));
  first.disconnect();
  back.disconnect();
  a.close();
  b.close();
});

test('refusals come in each client library\'s own error shape', async () => {
  const refusal = (socket) =>
    connected(socket).then(
      () => 'connected',
      (error) => error.message,
    ).finally(() => (socket.disconnect ? socket.disconnect() : socket.close()));
  assert.equal(await refusal(io4(url(0), { auth: { token: 'not-a-token' }, forceNew: true, reconnection: false })), 'invalid_token');
  assert.equal(await refusal(io1(url(0), { query: 'token=not-a-token', forceNew: true, reconnection: false })), 'invalid_token');
  const bare = await refusal(io4(url(0), { forceNew: true, reconnection: false }));
  assert.equal(bare, openAuth ? 'connected' : 'not_authenticated', 'with --open-auth the first event may name the user');
  const byName = await refusal(io4(url(0), { auth: { username: uniqueName('n') }, forceNew: true, reconnection: false }));
  assert.equal(byName, openAuth ? 'connected' : 'auth_method_disabled', 'a bare name works only with --open-auth');
});

test('polling answers carry CORS for credentialed requests, the exact origin echoed', async () => {
  for (const origin of ['null', 'http://localhost:3000']) {
    const response = await fetch(`${url(0)}/socket.io/?EIO=4&transport=polling&t=x`, { headers: { origin } });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('access-control-allow-origin'), origin);
    assert.equal(response.headers.get('access-control-allow-credentials'), 'true');
    assert.match(await response.text(), /^0\{"sid":/);
  }
  const preflight = await fetch(`${url(0)}/socket.io/?EIO=3&transport=polling`, {
    method: 'OPTIONS',
    headers: { origin: 'null', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
  });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers.get('access-control-allow-origin'), 'null');
  assert.equal(preflight.headers.get('access-control-allow-headers'), 'content-type');
  assert.ok(urls.length >= 1);
});
