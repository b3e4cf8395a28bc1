// Seed 002's dialect with socket.io-client 4, as its Vue client uses it: handshake auth
// {username} or {sessionID}, `session`, `users`, `user connected`, `user disconnected` and
// `private message`, across the nodes under test (needs --open-auth).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { io4, url, uniqueName, nextEvent, connected } from './lib.mjs';

/** Connects like the seed's client and resolves with the socket, its `session` and its `users`. */
async function join(base, auth) {
  const socket = io4(base, { auth, forceNew: true, reconnection: false });
  const session = nextEvent(socket, 'session');
  const users = nextEvent(socket, 'users');
  await connected(socket);
  return { socket, session: await session, users: await users };
}

const hex16 = /^[0-9a-f]{16}$/;

test('seed 002: sessions, the user list, private messages and who is online, across nodes', async () => {
  const aliceName = uniqueName('alice');
  const bobName = uniqueName('bob');
  const alice = await join(url(0), { username: aliceName });
  assert.match(alice.session.sessionID, hex16);
  assert.match(alice.session.userID, hex16);
  const me = alice.users.find((user) => user.userID === alice.session.userID);
  assert.deepEqual(me, { userID: alice.session.userID, username: aliceName, connected: true, messages: [] });

  const bobArrives = nextEvent(alice.socket, 'user connected', (user) => user.username === bobName);
  const bob = await join(url(1), { username: bobName });
  const arrived = await bobArrives;
  assert.equal(arrived.userID, bob.session.userID);
  assert.equal(arrived.connected, true);
  assert.ok(bob.users.some((user) => user.username === aliceName && user.connected), 'bob sees alice online');

  // A second tab of bob (its session restored from the sessionID) on a third node.
  const bobTab = await join(url(2), { sessionID: bob.session.sessionID });
  assert.deepEqual(bobTab.session, bob.session, 'the sessionID restores the same user');
  const aliceTab = await join(url(1), { sessionID: alice.session.sessionID });

  const echoes = [];
  alice.socket.on('private message', (message) => echoes.push(message));
  const toBob = nextEvent(bob.socket, 'private message');
  const toBobTab = nextEvent(bobTab.socket, 'private message');
  const toAliceTab = nextEvent(aliceTab.socket, 'private message');
  alice.socket.emit('private message', { content: 'hi bob', to: bob.session.userID });
  const expected = { content: 'hi bob', from: alice.session.userID, to: bob.session.userID };
  assert.deepEqual(await toBob, expected);
  assert.deepEqual(await toBobTab, expected);
  assert.deepEqual(await toAliceTab, expected, "the sender's other tab follows");
  const reply = nextEvent(alice.socket, 'private message');
  bob.socket.emit('private message', { content: 'hi alice', to: alice.session.userID });
  assert.deepEqual(await reply, { content: 'hi alice', from: bob.session.userID, to: alice.session.userID });
  assert.equal(echoes.length, 1, 'the sending socket gets no echo of its own message');

  // A reload restores the history, oldest first.
  const reload = await join(url(0), { sessionID: alice.session.sessionID });
  const withBob = reload.users.find((user) => user.userID === bob.session.userID);
  assert.deepEqual(withBob.messages, [expected, { content: 'hi alice', from: bob.session.userID, to: alice.session.userID }]);

  // `user disconnected` only once bob's last connection anywhere is gone.
  const gone = [];
  alice.socket.on('user disconnected', (id) => gone.push(id));
  const bobGone = nextEvent(alice.socket, 'user disconnected', (id) => id === bob.session.userID);
  bob.socket.disconnect();
  const stillHere = await join(url(2), { sessionID: bob.session.sessionID });
  assert.deepEqual(gone, [], 'bob still has connections');
  stillHere.socket.disconnect();
  bobTab.socket.disconnect();
  assert.equal(await bobGone, bob.session.userID);
  assert.deepEqual(gone, [bob.session.userID]);
  for (const s of [alice, aliceTab, reload]) s.socket.disconnect();
});

test('seed 002: an unknown sessionID without a username is refused with "invalid username"', async () => {
  const socket = io4(url(0), { auth: { sessionID: '0123456789abcdef' }, forceNew: true, reconnection: false });
  await assert.rejects(connected(socket), /invalid username/);
  socket.disconnect();
});
