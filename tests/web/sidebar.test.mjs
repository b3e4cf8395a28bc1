// The sidebar: conversations most recent first with their last message, kept live and after a
// reload, and the search that finds anyone by the start of their name (`users` with `prefix`).
// Then the details a chat is judged by: the message box focused when a conversation is opened from
// the keyboard, links that open, a message too long caught while typing (and kept), the full date
// on a time, a status pill that says "Connected", and dark mode.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ServerProcess,
  asUser,
  browserSuite,
  closeKept,
  openDm,
  register,
  screenshot,
  seedMessages,
  seedRooms,
  seedUsers,
  sendText,
  serverUrl,
  waitForMessage,
  waitInPage,
  waitReady,
} from './harness.mjs';

const suite = browserSuite();
const base = serverUrl();

const people = (page) => page.locator('#user-list .item .name').allTextContents();
const preview = (page, user) => page.locator(`#user-list [data-user="${user}"] .preview`);

test('recent conversations first with their last message, and people found by name prefix', async () => {
  const tara = await suite.device();
  await register(tara.page, base, 'tara');
  await seedUsers(tara.page, ['rosa', 'roald', 'roman', 'saul']);
  await seedMessages(tara.page, { username: 'rosa', to: 'tara', texts: ['hello tara, it is rosa'] });

  // Ruth wrote: she is listed with her message; the others, offline and silent, are not.
  await preview(tara.page, 'rosa').filter({ hasText: 'hello tara, it is rosa' }).waitFor();
  assert.deepEqual(await people(tara.page), ['tara', 'rosa']);

  // A search lists everyone whose name starts with it, from the server, in name order.
  await tara.page.locator('#search').fill('RO');
  await tara.page.locator('#user-list [data-user="roald"]').waitFor();
  assert.deepEqual(await people(tara.page), ['roald', 'roman', 'rosa']);
  await tara.page.locator('#search').fill('rox');
  await tara.page.locator('#user-list .list-empty', { hasText: 'No one\'s name starts with "rox"' }).waitFor();
  await screenshot(tara.page, 'sidebar-search');

  // Opening a result clears the search; the new conversation goes to the top once it has a message.
  await tara.page.locator('#search').fill('rom');
  await openDm(tara.page, 'roman');
  assert.equal(await tara.page.locator('#search').inputValue(), '');
  await sendText(tara.page, 'hi roman');
  await preview(tara.page, 'roman').filter({ hasText: 'You: hi roman' }).waitFor();
  assert.deepEqual(await people(tara.page), ['tara', 'roman', 'rosa']);

  // A live message moves its conversation up and replaces the preview.
  await seedMessages(tara.page, { username: 'rosa', to: 'tara', texts: ['rosa again'] });
  await preview(tara.page, 'rosa').filter({ hasText: 'rosa again' }).waitFor();
  assert.deepEqual(await people(tara.page), ['tara', 'rosa', 'roman']);

  // After a reload the order and the previews come from `conversations`.
  await tara.page.reload();
  await waitReady(tara.page);
  await preview(tara.page, 'roman').filter({ hasText: 'You: hi roman' }).waitFor();
  await preview(tara.page, 'rosa').filter({ hasText: 'rosa again' }).waitFor();
  assert.deepEqual(await people(tara.page), ['tara', 'rosa', 'roman']);

  // Ruth's conversation, never opened: a "New messages" line above the first of her messages.
  await openDm(tara.page, 'rosa');
  await tara.page.locator('#message-list .new-line').waitFor();
  const order = await tara.page.locator('#message-list > li').evaluateAll((items) =>
    items.filter((item) => !item.classList.contains('day')).map((item) => item.className.split(' ')[0]),
  );
  assert.deepEqual(order, ['new-line', 'msg', 'msg']);
  await screenshot(tara.page, 'sidebar-recent-first');
});

test('keyboard focus, links, the length limit, full dates, the status pill and dark mode', async () => {
  const zelda = await suite.device();
  const yara = await suite.device();
  await register(zelda.page, base, 'zelda');
  await register(yara.page, base, 'yara');
  await seedMessages(zelda.page, { username: 'yara', to: 'zelda', texts: ['the notes: https://example.com/notes?id=7. See you'] });
  const page = zelda.page;
  assert.equal(await page.locator('#status-text').textContent(), 'Connected');

  // Opened from the keyboard, the conversation's message box has the focus.
  await page.locator('#user-list [data-user="yara"]').focus();
  await page.keyboard.press('Enter');
  await page.locator('#conv-name', { hasText: 'yara' }).waitFor();
  await page.waitForFunction(() => document.activeElement?.id === 'composer-text');

  // A link opens in a new tab; the sentence's full stop is not part of it; the text reads the same.
  const message = await waitForMessage(page, 'the notes: https://example.com/notes?id=7. See you');
  const link = message.locator('a');
  assert.equal(await link.getAttribute('href'), 'https://example.com/notes?id=7');
  assert.equal(await link.getAttribute('target'), '_blank');
  assert.match(await link.getAttribute('rel'), /noopener/);

  // The full date is on the time.
  assert.match(await page.locator('#message-list .msg time').first().getAttribute('title'), /\d{4}/);

  // One character over the limit: a warning while typing, no sending, and the text stays.
  const long = 'x'.repeat(4001);
  await page.locator('#composer-text').fill(long);
  await page.locator('#composer-limit', { hasText: '1 character too long' }).waitFor();
  assert.equal(await page.locator('#send-button').isDisabled(), true);
  await page.locator('#composer-text').press('Enter');
  assert.equal(await page.locator('#message-list .msg.mine').count(), 0, 'nothing was sent');
  assert.equal(await page.locator('#composer-text').inputValue(), long);
  await page.locator('#composer-text').press('Backspace');
  await page.locator('#composer-limit').waitFor({ state: 'hidden' });
  assert.equal(await page.locator('#send-button').isDisabled(), false);

  // Dark mode follows the system.
  const background = () => page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
  const light = await background();
  await page.emulateMedia({ colorScheme: 'dark' });
  assert.notEqual(await background(), light);
  assert.equal(await background(), 'rgb(15, 18, 23)');
  await screenshot(page, 'dark-mode');
});

/** The rooms one is a member of, as listed (the others follow them, by name). */
const rooms = (page) => page.locator('#room-list .item[data-joined="true"] .name').allTextContents();

/** The conversations as the server lists them for `username` (newest activity first). */
async function serverOrder(page, username) {
  return asUser(page, { username }, async (request) => {
    const listed = [];
    let cursor = null;
    do {
      const page = await request(cursor ? { type: 'conversations', cursor } : { type: 'conversations' });
      listed.push(...page.conversations.map((entry) => entry.conv));
      cursor = page.next_cursor;
    } while (cursor);
    return listed;
  });
}

/** Lets the server's clock pass a millisecond, so the next message is newer than the last. */
const nextMillisecond = () => new Promise((resolve) => setTimeout(resolve, 3));

test('rooms in the order the server lists them, and a new message moves its room to the top', async () => {
  const una = await suite.device();
  await register(una.page, base, 'una');
  await seedUsers(una.page, ['vic']);
  await seedRooms(una.page, { username: 'una', rooms: ['alpha', 'beta', 'gamma', 'delta'] });
  await seedRooms(una.page, { username: 'vic', rooms: ['alpha', 'beta', 'gamma'] });
  for (const room of ['gamma', 'alpha', 'beta']) {
    await seedMessages(una.page, { username: 'vic', room, texts: [`hello ${room}`] });
    await nextMillisecond();
  }

  // After a reload the order is the server's: newest activity first, the silent room last.
  await una.page.reload();
  await waitReady(una.page);
  await una.page.locator('#room-list [data-room="alpha"] .preview', { hasText: 'hello alpha' }).waitFor();
  const listed = (await serverOrder(una.page, 'una')).filter((conv) => conv.startsWith('room:'));
  assert.deepEqual(listed, ['room:beta', 'room:alpha', 'room:gamma', 'room:delta']);
  assert.deepEqual(await rooms(una.page), ['beta', 'alpha', 'gamma', 'delta']);

  // A message in the room at the bottom of those with messages takes it to the top, live.
  await seedMessages(una.page, { username: 'vic', room: 'gamma', texts: ['gamma again'] });
  await una.page.locator('#room-list [data-room="gamma"] .preview', { hasText: 'gamma again' }).waitFor();
  await waitInPage(una.page, () => document.querySelector('#room-list .item .name')?.textContent === 'gamma');
  assert.deepEqual(await rooms(una.page), ['gamma', 'beta', 'alpha', 'delta']);

  // The silent room gets its first message from una herself: to the top too.
  await una.page.locator('#room-list [data-room="delta"]').click();
  await sendText(una.page, 'first in delta');
  await waitInPage(una.page, () => document.querySelector('#room-list .item .name')?.textContent === 'delta');
  assert.deepEqual(await rooms(una.page), ['delta', 'gamma', 'beta', 'alpha']);
  await una.page.reload();
  await waitReady(una.page);
  await una.page.locator('#room-list [data-room="delta"] .preview', { hasText: 'You: first in delta' }).waitFor();
  assert.deepEqual(await rooms(una.page), ['delta', 'gamma', 'beta', 'alpha']);
  await screenshot(una.page, 'sidebar-rooms-by-activity');
});

test('the people a search shows are watched while shown, so their dots follow them', async () => {
  // Presence scoped to contacts (the suite's server tells everyone about everyone): only a
  // `watch` makes the server tell Wanda about Walt.
  const server = new ServerProcess({ presence: 'contacts' });
  await server.start();
  try {
    const wanda = await suite.device();
    const page = wanda.page;
    const sent = [];
    page.on('websocket', (ws) => ws.on('framesent', (frame) => sent.push(JSON.parse(frame.payload))));
    const sentFrame = (predicate) => waitFor(() => sent.some(predicate), 'such frame sent');
    await register(page, server.url, 'wanda');
    await seedUsers(page, ['walt', 'wendy']);

    await page.locator('#search').fill('w');
    const dot = (user, state) => page.locator(`#user-list [data-user="${user}"] .dot.${state}`);
    await dot('walt', 'offline').waitFor();
    await dot('wendy', 'offline').waitFor();
    await sentFrame((frame) => frame.type === 'watch' && frame.users.includes('walt') && frame.users.includes('wendy'));

    // Walt comes online while shown: his dot turns green.
    await asUser(page, { username: 'walt', keep: true }, async () => {});
    await dot('walt', 'online').waitFor();
    assert.equal(await dot('wendy', 'offline').count(), 1);

    // A narrower search drops Wendy: unwatched; clearing it drops Walt, who leaves the list.
    await page.locator('#search').fill('wa');
    await sentFrame((frame) => frame.type === 'unwatch' && frame.users.join() === 'wendy');
    await page.locator('#search').fill('');
    await sentFrame((frame) => frame.type === 'unwatch' && frame.users.join() === 'walt');
    await page.locator('#user-list [data-user="walt"]').waitFor({ state: 'detached' });
    assert.deepEqual(await people(page), ['wanda']);
    await closeKept(page, 'walt');
  } finally {
    await server.stop();
  }
});

/** Polls a condition of the test's own (not the page's), bounded. */
async function waitFor(condition, what) {
  const deadline = Date.now() + 20_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`no ${what} within 20 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
