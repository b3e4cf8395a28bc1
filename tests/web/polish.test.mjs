// The details a chat is judged by: the message box focused when a conversation is opened from the
// keyboard, links that open, a message too long caught while typing (and kept), the full date on a
// time, a status pill that says "Connected", and dark mode.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launchBrowser, openDevice, register, screenshot, seedMessages, serverUrl, waitForMessage } from './harness.mjs';

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
