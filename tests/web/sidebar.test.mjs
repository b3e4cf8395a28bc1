// The sidebar: conversations most recent first with their last message, kept live and after a
// reload, and the search that finds anyone by the start of their name (`users` with `prefix`).
// Then the details a chat is judged by: the message box focused when a conversation is opened from
// the keyboard, links that open, a message too long caught while typing (and kept), the full date
// on a time, a status pill that says "Connected", and dark mode.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  PASSWORD,
  launchBrowser,
  openDevice,
  openDm,
  register,
  screenshot,
  seedMessages,
  sendText,
  serverUrl,
  waitForMessage,
  waitReady,
} from './harness.mjs';

let browser;
const devices = [];
const base = serverUrl();

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const opened of devices) assert.deepEqual(opened.problems, [], 'no alerts, page errors or console errors');
});

/** Registers users over a WebSocket of the page's own; they are offline afterwards. */
async function seedUsers(page, names) {
  await page.evaluate(
    async ({ names, password }) => {
      for (const username of names) {
        const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`);
        const answer = new Promise((resolve) =>
          ws.addEventListener('message', (event) => {
            const frame = JSON.parse(event.data);
            if (frame.ref === 'register') resolve(frame);
          }),
        );
        await new Promise((resolve) => ws.addEventListener('open', resolve));
        ws.send(JSON.stringify({ type: 'register', ref: 'register', username, password, presence: false }));
        const session = await answer;
        if (session.type !== 'session') throw new Error(`register ${username}: ${JSON.stringify(session)}`);
        ws.close();
      }
    },
    { names, password: PASSWORD },
  );
}

const people = (page) => page.locator('#user-list .item .name').allTextContents();
const preview = (page, user) => page.locator(`#user-list [data-user="${user}"] .preview`);

test('recent conversations first with their last message, and people found by name prefix', async () => {
  const tara = await openDevice(browser);
  devices.push(tara);
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
  const zelda = await openDevice(browser);
  const yara = await openDevice(browser);
  devices.push(zelda, yara);
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
