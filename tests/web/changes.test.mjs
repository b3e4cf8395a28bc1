// Editing, deleting, replies and reactions in the browser: Up edits one's last message, the
// per-message menu replies, reacts and deletes, and both sides see every change live and after a
// reload ("(edited)", the quote, the reaction counts, the tombstone).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  launchBrowser,
  messageItem as item,
  messageMenu as menu,
  openDevice,
  openDm,
  register,
  screenshot,
  sendText,
  serverUrl,
  waitForMessage,
} from './harness.mjs';

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

test('edit with Up, reply, react and delete from the message menu, live and after a reload', async () => {
  const edie = await device();
  const milo = await device();
  await register(edie.page, base, 'edie');
  await register(milo.page, base, 'milo');
  await openDm(edie.page, 'milo');
  await sendText(edie.page, 'helo there');
  await openDm(milo.page, 'edie');
  await waitForMessage(milo.page, 'helo there');

  // Up in the empty box edits one's last message.
  const box = edie.page.locator('#composer-text');
  await box.focus();
  await box.press('ArrowUp');
  assert.equal(await box.inputValue(), 'helo there');
  await edie.page.locator('#composer-mode', { hasText: 'Editing your message' }).waitFor();
  await box.fill('hello there');
  await box.press('Enter');
  for (const page of [edie.page, milo.page]) {
    await item(page, 'hello there').locator('.edited', { hasText: '(edited)' }).waitFor();
  }
  const edited = await item(milo.page, 'hello there').locator('.edited').getAttribute('title');
  assert.match(edited, /^edited /, 'the edit time on hover');
  assert.equal(await item(milo.page, 'helo there').count(), 0, 'the old text is gone');

  // Reply: the quote shows in both pages; clicking it goes to the original.
  await menu(milo.page, 'hello there', 'Reply');
  await milo.page.locator('#composer-mode', { hasText: 'Replying to edie' }).waitFor();
  await sendText(milo.page, 'hi edie!');
  for (const page of [milo.page, edie.page]) {
    const quote = item(page, 'hi edie!').locator('.quote');
    await quote.filter({ hasText: 'hello there' }).waitFor();
    assert.equal(await quote.locator('.quote-from').textContent(), 'edie');
  }
  await item(edie.page, 'hi edie!').locator('.quote').click();
  await edie.page.locator('#message-list .msg.flash .text', { hasText: 'hello there' }).waitFor();

  // React: one per user; a click on someone's reaction adds one's own.
  await menu(edie.page, 'hi edie!', '👍');
  await item(milo.page, 'hi edie!').locator('.reaction', { hasText: '👍 1' }).waitFor();
  await item(edie.page, 'hi edie!').locator('.reaction.own', { hasText: '👍 1' }).waitFor();
  await item(milo.page, 'hi edie!').locator('.reaction', { hasText: '👍 1' }).click();
  await item(edie.page, 'hi edie!').locator('.reaction', { hasText: '👍 2' }).waitFor();
  await item(milo.page, 'hi edie!').locator('.reaction.own', { hasText: '👍 2' }).waitFor();

  // Delete one's own: a tombstone stays, and the quote of it says so.
  await menu(edie.page, 'hello there', 'Delete');
  for (const page of [edie.page, milo.page]) {
    await page.locator('#message-list .msg.deleted .tombstone', { hasText: 'This message was deleted.' }).waitFor();
    await item(page, 'hi edie!').locator('.quote .tombstone', { hasText: 'deleted message' }).waitFor();
  }
  await screenshot(milo.page, 'message-changes');

  // After a reload, from history: the same.
  await milo.page.reload();
  await openDm(milo.page, 'edie');
  await item(milo.page, 'hi edie!').locator('.reaction', { hasText: '👍 2' }).waitFor();
  await milo.page.locator('#message-list .msg.deleted .tombstone').waitFor();
  await item(milo.page, 'hi edie!').locator('.quote .tombstone').waitFor();
  assert.equal(await milo.page.locator('#message-list .msg').count(), 2, 'change entries are not shown as messages');
  assert.equal(await milo.page.locator('#user-list [data-user="edie"] .badge').count(), 0, 'changes are not unread');
});
