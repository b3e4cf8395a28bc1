// Private rooms and moderation in the page: a room created private (a lock, hidden from others),
// a member invited by name and removed from the member menu, and a user blocked from a private
// conversation's header.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launchBrowser, openDevice, openDm, register, screenshot, serverUrl, waitForMessage } from './harness.mjs';

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

async function device(name) {
  const opened = await openDevice(browser);
  devices.push(opened);
  await register(opened.page, base, name);
  return opened.page;
}

async function createRoom(page, name, { private: isPrivate }) {
  await page.locator('#room-name').fill(name);
  await page.locator('#room-private').setChecked(isPrivate);
  await page.locator('#room-form button').click();
  await page.locator(`#room-list [data-room="${name}"][data-joined="true"]`).waitFor();
}

test('a private room: created with a lock, hidden, a member invited by name and removed', async () => {
  const ottilie = await device('ottilie');
  const bruno = await device('bruno');

  await createRoom(ottilie, 'mod-vault', { private: true });
  await ottilie.locator('#conv-name', { hasText: 'mod-vault' }).waitFor();
  await ottilie.locator('#conv-lock').waitFor();
  await ottilie.locator('#room-list [data-room="mod-vault"][data-private="true"] .lock').waitFor();
  // A public room created after it is announced to bruno; the private one never was.
  await createRoom(ottilie, 'mod-plaza', { private: false });
  await bruno.locator('#room-list [data-room="mod-plaza"][data-private="false"]').waitFor();
  assert.equal(await bruno.locator('#room-list .lock').count(), 0, 'no lock on a public room');
  assert.equal(await bruno.locator('#room-list [data-room="mod-vault"]').count(), 0, 'a private room is hidden');

  // The owner's member menu: invite by name.
  await ottilie.locator('#room-list [data-room="mod-vault"]').click();
  await ottilie.locator('#members-button').click();
  await ottilie.locator('#invite-name').fill('Bruno');
  await ottilie.locator('#invite-form button').click();
  await bruno.locator('#room-list [data-room="mod-vault"][data-joined="true"][data-private="true"]').waitFor();
  await ottilie.locator('#members [data-user="bruno"] [data-action="remove"]').waitFor();
  await bruno.locator('#room-list [data-room="mod-vault"]').click();
  await bruno.locator('#composer-text').fill('thanks for the invite');
  await bruno.locator('#composer-text').press('Enter');
  await waitForMessage(ottilie, 'thanks for the invite');
  // A plain member gets no menu.
  await bruno.locator('#members-button').click();
  await bruno.locator('#members [data-user="ottilie"]', { hasText: 'owner' }).waitFor();
  assert.equal(await bruno.locator('#members [data-action]').count(), 0, 'no moderation for a member');
  assert.equal(await bruno.locator('#invite-form').isHidden(), true);
  await screenshot(ottilie, 'private-room-members');

  // The owner may delete a member's message from its menu; the member cannot delete the owner's.
  await ottilie.locator('#composer-text').fill('welcome aboard');
  await ottilie.locator('#composer-text').press('Enter');
  await waitForMessage(bruno, 'welcome aboard');
  const ownersMessage = bruno.locator('#message-list .msg').filter({ hasText: 'welcome aboard' }).last();
  await ownersMessage.hover();
  await ownersMessage.locator('.msg-menu-button').click();
  await ownersMessage.locator('.msg-menu [role="menuitem"]', { hasText: 'Reply' }).waitFor();
  assert.equal(await ownersMessage.locator('.msg-menu [role="menuitem"]', { hasText: 'Delete' }).count(), 0);
  const membersMessage = ottilie.locator('#message-list .msg').filter({ hasText: 'thanks for the invite' }).last();
  await membersMessage.hover();
  await membersMessage.locator('.msg-menu-button').click();
  await membersMessage.locator('.msg-menu [role="menuitem"]', { hasText: 'Delete' }).click();
  await bruno.locator('#message-list .msg.deleted .tombstone', { hasText: 'This message was deleted.' }).waitFor();

  // Removed: out of the owner's member list, and the room leaves bruno's list.
  await ottilie.locator('#members [data-user="bruno"] [data-action="remove"]').click();
  await ottilie.locator('#members [data-user="bruno"]').waitFor({ state: 'detached' });
  await bruno.locator('#room-list [data-room="mod-vault"]').waitFor({ state: 'detached' });
  await bruno.locator('#toast', { hasText: 'ottilie removed you from # mod-vault' }).waitFor();
});

test('a blocked user cannot send a private message; the page says so', async () => {
  const nerys = await device('nerys');
  const mordred = await device('mordred');
  await openDm(nerys, 'mordred');
  await nerys.locator('#block-button', { hasText: 'Block' }).click();
  await nerys.locator('#block-button', { hasText: 'Unblock' }).waitFor();

  await openDm(mordred, 'nerys');
  await mordred.locator('#composer-text').fill('are you there?');
  await mordred.locator('#composer-text').press('Enter');
  await mordred.locator('#message-list .msg.failed .state', { hasText: 'blocks you' }).waitFor();
  assert.equal(await nerys.locator('#message-list .msg .text').count(), 0, 'nothing reached nerys');

  await nerys.locator('#block-button').click();
  await nerys.locator('#block-button', { hasText: 'Block' }).waitFor();
  await mordred.locator('#composer-text').fill('hello again');
  await mordred.locator('#composer-text').press('Enter');
  await waitForMessage(nerys, 'hello again');
});
