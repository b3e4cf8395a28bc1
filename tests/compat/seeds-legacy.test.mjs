// Seeds 000 and 003 with their own client library, socket.io-client 1.7.4 (Engine.IO 3), across
// the nodes under test (needs --open-auth): each dialect exactly as the seed's server behaves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { io1, url, uniqueName, nextEvent, connected } from './lib.mjs';

const open = (base, options = {}) => io1(base, { forceNew: true, reconnection: false, ...options });

test('seed 000: identify, im to every connection of both users (the sender too), update_client', async () => {
  const alice = uniqueName('alice');
  const bob = uniqueName('bob');
  const a1 = open(url(0));
  const a2 = open(url(1), { transports: ['websocket'] });
  const b1 = open(url(2), { transports: ['polling'] });
  await Promise.all([a1, a2, b1].map(connected));
  const bothListed = (update) => update.list.includes(alice) && update.list.includes(bob);
  const a1Sees = nextEvent(a1, 'update_client', bothListed);
  const b1Sees = nextEvent(b1, 'update_client', bothListed);
  // a2 too: its identify must have finished before the im, or the im is older than its session.
  const a2Sees = nextEvent(a2, 'update_client', bothListed);
  a1.emit('identify', alice);
  a2.emit('identify', alice);
  b1.emit('identify', bob);
  for (const update of [await a1Sees, await b1Sees, await a2Sees]) {
    assert.deepEqual(update.list, [...new Set(update.list)].sort(), 'sorted, unique');
  }

  const expected = { from: alice, to: bob, text: 'hello bob' };
  const arrivals = [a1, a2, b1].map((socket) => nextEvent(socket, 'im', (im) => im.text === 'hello bob'));
  a1.emit('im', { from: 'mallory', to: bob, text: 'hello bob' });
  for (const arrival of arrivals) assert.deepEqual(await arrival, expected, 'from comes from the session');

  const bobLeaves = nextEvent(a1, 'update_client', (update) => !update.list.includes(bob));
  b1.disconnect();
  assert.ok((await bobLeaves).list.includes(alice), 'the receiver is in its own list');

  // No history on the seed's server: an im sent while bob is away is not replayed when he is back
  // (the store has it, and a native client would get it in its sync), only what is sent after.
  const echo = nextEvent(a1, 'im', (im) => im.text === 'while you were away');
  a1.emit('im', { to: bob, text: 'while you were away' });
  await echo;
  const b2 = open(url(1));
  await connected(b2);
  const b2Listed = nextEvent(b2, 'update_client', bothListed);
  const b2FirstIm = nextEvent(b2, 'im');
  b2.emit('identify', bob);
  await b2Listed;
  a1.emit('im', { to: bob, text: 'welcome back' });
  assert.deepEqual(await b2FirstIm, { from: alice, to: bob, text: 'welcome back' }, 'only live ims');
  b2.disconnect();
  a1.disconnect();
  a2.disconnect();
});

test('seed 003: ?roomid=, join, say and quit reach the whole room, the sender included', async () => {
  const room = uniqueName('r');
  const u1 = uniqueName('u');
  const u2 = uniqueName('u');
  const s1 = open(url(0), { query: `roomid=${room}` });
  await connected(s1);
  const ownJoin = nextEvent(s1, 'message', (m) => m.event === 'join' && m.data.username === u1);
  s1.emit('join', { username: u1 });
  await ownJoin;

  const s2 = open(url(1), { query: `roomid=${room}` });
  await connected(s2);
  const seenBy1 = nextEvent(s1, 'message', (m) => m.event === 'join' && m.data.username === u2);
  const seenBy2 = nextEvent(s2, 'message', (m) => m.event === 'join' && m.data.username === u2);
  s2.emit('join', { username: u2 });
  await seenBy1;
  await seenBy2;

  const said = { event: 'broadcast_say', data: { username: u2, text: 'hi room' } };
  const heard = [s1, s2].map((socket) => nextEvent(socket, 'message', (m) => m.event === 'broadcast_say'));
  s2.emit('say', { text: 'hi room' });
  for (const message of heard) assert.deepEqual(await message, said);

  const quit = nextEvent(s1, 'message', (m) => m.event === 'broadcast_quit');
  s2.disconnect();
  assert.deepEqual(await quit, { event: 'broadcast_quit', data: { username: u2 } });
  s1.disconnect();
});
