// Editing, deleting, replies and reactions in the browser: Up edits one's last message, the
// per-message menu replies, reacts and deletes, and both sides see every change live and after a
// reload ("(edited)", the quote, the reaction counts, the tombstone).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launchBrowser, openDevice, openDm, register, screenshot, sendText, serverUrl, waitForMessage } from './harness.mjs';

let browser;
const devices = [];
const base = serverUrl();

async function device() {
  const opened = await openDevice(browser);
  devices.push(opened);
  return opened;
}

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const opened of devices) assert.deepEqual(opened.problems, [], 'no alerts, page errors or console errors');
});

/** The message item whose text is `text`. */
const item = (page, text) => page.locator('#message-list .msg').filter({ has: page.locator('.text', { hasText: text }) });

async function menu(page, text, action) {
  const message = item(page, text).last();
  await message.hover();
  await message.locator('.msg-menu-button').click();
  await message.locator('.msg-menu [role="menuitem"]', { hasText: action }).click();
}

test('edit with Up, reply, react and delete from the message menu, live and after a reload', async () => {
  const pia = await device();
  const quinn = await device();
  await register(pia.page, base, 'pia');
  await register(quinn.page, base, 'quinn');
  await openDm(pia.page, 'quinn');
  await sendText(pia.page, 'helo there');
  await openDm(quinn.page, 'pia');
  await waitForMessage(quinn.page, 'helo there');

  // Up in the empty box edits one's last message.
  const box = pia.page.locator('#composer-text');
  await box.focus();
  await box.press('ArrowUp');
  assert.equal(await box.inputValue(), 'helo there');
  await pia.page.locator('#composer-mode', { hasText: 'Editing your message' }).waitFor();
  await box.fill('hello there');
  await box.press('Enter');
  for (const page of [pia.page, quinn.page]) {
    await item(page, 'hello there').locator('.edited', { hasText: '(edited)' }).waitFor();
  }
  const edited = await item(quinn.page, 'hello there').locator('.edited').getAttribute('title');
  assert.match(edited, /^edited /, 'the edit time on hover');
  assert.equal(await item(quinn.page, 'helo there').count(), 0, 'the old text is gone');

  // Reply: the quote shows in both pages; clicking it goes to the original.
  await menu(quinn.page, 'hello there', 'Reply');
  await quinn.page.locator('#composer-mode', { hasText: 'Replying to pia' }).waitFor();
  await sendText(quinn.page, 'hi pia!');
  for (const page of [quinn.page, pia.page]) {
    const quote = item(page, 'hi pia!').locator('.quote');
    await quote.filter({ hasText: 'hello there' }).waitFor();
    assert.equal(await quote.locator('.quote-from').textContent(), 'pia');
  }
  await item(pia.page, 'hi pia!').locator('.quote').click();
  await pia.page.locator('#message-list .msg.flash .text', { hasText: 'hello there' }).waitFor();

  // React: one per user; a click on someone's reaction adds one's own.
  await menu(pia.page, 'hi pia!', '👍');
  await item(quinn.page, 'hi pia!').locator('.reaction', { hasText: '👍 1' }).waitFor();
  await item(pia.page, 'hi pia!').locator('.reaction.own', { hasText: '👍 1' }).waitFor();
  await item(quinn.page, 'hi pia!').locator('.reaction', { hasText: '👍 1' }).click();
  await item(pia.page, 'hi pia!').locator('.reaction', { hasText: '👍 2' }).waitFor();
  await item(quinn.page, 'hi pia!').locator('.reaction.own', { hasText: '👍 2' }).waitFor();

  // Delete one's own: a tombstone stays, and the quote of it says so.
  await menu(pia.page, 'hello there', 'Delete');
  for (const page of [pia.page, quinn.page]) {
    await page.locator('#message-list .msg.deleted .tombstone', { hasText: 'This message was deleted.' }).waitFor();
    await item(page, 'hi pia!').locator('.quote .tombstone', { hasText: 'deleted message' }).waitFor();
  }
  await screenshot(quinn.page, 'message-changes');

  // After a reload, from history: the same.
  await quinn.page.reload();
  await openDm(quinn.page, 'pia');
  await item(quinn.page, 'hi pia!').locator('.reaction', { hasText: '👍 2' }).waitFor();
  await quinn.page.locator('#message-list .msg.deleted .tombstone').waitFor();
  await item(quinn.page, 'hi pia!').locator('.quote .tombstone').waitFor();
  assert.equal(await quinn.page.locator('#message-list .msg').count(), 2, 'change entries are not shown as messages');
  assert.equal(await quinn.page.locator('#user-list [data-user="pia"] .badge').count(), 0, 'changes are not unread');
});
