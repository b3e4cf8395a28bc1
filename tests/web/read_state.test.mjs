// Read state in the browser: "delivered" then "seen" under one's newest private message, both
// still right after a reload and on another device, and one's own messages from another device
// never counted as unread.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { browserSuite, openDm, register, sendText, serverUrl, waitForMessage, waitInPage, waitReady } from './harness.mjs';

const suite = browserSuite();
const device = () => suite.device();
const base = serverUrl();

const receipt = (page) => page.locator('#message-list .msg.mine .receipt');

test('delivered, then seen, and both survive a reload and another device', async () => {
  const nina = await device();
  const omar = await device();
  await register(nina.page, base, 'nina');
  await register(omar.page, base, 'omar');

  // Omar's page is open elsewhere: the message reaches it (delivered) but he has not looked.
  await openDm(nina.page, 'omar');
  await sendText(nina.page, 'are you there?');
  await omar.page.locator('#user-list [data-user="nina"] .badge', { hasText: '1' }).waitFor();
  await receipt(nina.page).filter({ hasText: 'delivered' }).waitFor();

  // Nina reloads: still delivered, from the server's markers, not from what the page saw.
  await nina.page.reload();
  await waitReady(nina.page);
  await openDm(nina.page, 'omar');
  await receipt(nina.page).filter({ hasText: 'delivered' }).waitFor();

  // Omar opens the conversation: seen, live.
  await openDm(omar.page, 'nina');
  await waitForMessage(omar.page, 'are you there?');
  await receipt(nina.page).filter({ hasText: 'seen' }).waitFor();

  // Seen on another device of Nina's, which was not there when it happened.
  const laptop = await device();
  await register(laptop.page, base, 'nina', { action: 'login' });
  await openDm(laptop.page, 'omar');
  await waitForMessage(laptop.page, 'are you there?');
  await receipt(laptop.page).filter({ hasText: 'seen' }).waitFor();
  assert.equal(await receipt(laptop.page).count(), 1, 'one receipt, under the newest own message');

  // Nina writes from the laptop while her first page shows another conversation, then turns to
  // another one there too: Omar's answer is her only unread message, also after a reload (the
  // server's count agrees).
  await openDm(nina.page, 'nina');
  await sendText(laptop.page, 'from my laptop');
  await openDm(laptop.page, 'nina');
  await waitForMessage(omar.page, 'from my laptop');
  await sendText(omar.page, 'yes, here');
  await nina.page.locator('#user-list [data-user="omar"] .badge', { hasText: '1' }).waitFor();
  await nina.page.reload();
  await waitReady(nina.page);
  await nina.page.locator('#user-list [data-user="omar"] .badge', { hasText: '1' }).waitFor();
  await waitInPage(nina.page, () => document.title === '(1) Switchboard');
  assert.equal(await nina.page.locator('#user-list [data-user="omar"] .badge').textContent(), '1');
});
