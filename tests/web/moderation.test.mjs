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
  const olga = await device('olga');
  const boris = await device('boris');

  await createRoom(olga, 'vault', { private: true });
  await olga.locator('#conv-name', { hasText: 'vault' }).waitFor();
  await olga.locator('#conv-lock').waitFor();
  await olga.locator('#room-list [data-room="vault"][data-private="true"] .lock').waitFor();
  // A public room created after it is announced to boris; the private one never was.
  await createRoom(olga, 'plaza', { private: false });
  await boris.locator('#room-list [data-room="plaza"][data-private="false"]').waitFor();
  assert.equal(await boris.locator('#room-list .lock').count(), 0, 'no lock on a public room');
  assert.equal(await boris.locator('#room-list [data-room="vault"]').count(), 0, 'a private room is hidden');

  // The owner's member menu: invite by name.
  await olga.locator('#room-list [data-room="vault"]').click();
  await olga.locator('#members-button').click();
  await olga.locator('#invite-name').fill('Boris');
  await olga.locator('#invite-form button').click();
  await boris.locator('#room-list [data-room="vault"][data-joined="true"][data-private="true"]').waitFor();
  await olga.locator('#members [data-user="boris"] [data-action="remove"]').waitFor();
  await boris.locator('#room-list [data-room="vault"]').click();
  await boris.locator('#composer-text').fill('thanks for the invite');
  await boris.locator('#composer-text').press('Enter');
  await waitForMessage(olga, 'thanks for the invite');
  // A plain member gets no menu.
  await boris.locator('#members-button').click();
  await boris.locator('#members [data-user="olga"]', { hasText: 'owner' }).waitFor();
  assert.equal(await boris.locator('#members [data-action]').count(), 0, 'no moderation for a member');
  assert.equal(await boris.locator('#invite-form').isHidden(), true);
  await screenshot(olga, 'private-room-members');

  // Removed: out of the owner's member list, and the room leaves boris's list.
  await olga.locator('#members [data-user="boris"] [data-action="remove"]').click();
  await olga.locator('#members [data-user="boris"]').waitFor({ state: 'detached' });
  await boris.locator('#room-list [data-room="vault"]').waitFor({ state: 'detached' });
  await boris.locator('#toast', { hasText: 'olga removed you from # vault' }).waitFor();
});

test('a blocked user cannot send a private message; the page says so', async () => {
  const nina = await device('nina');
  const mallory = await device('mallory');
  await openDm(nina, 'mallory');
  await nina.locator('#block-button', { hasText: 'Block' }).click();
  await nina.locator('#block-button', { hasText: 'Unblock' }).waitFor();

  await openDm(mallory, 'nina');
  await mallory.locator('#composer-text').fill('are you there?');
  await mallory.locator('#composer-text').press('Enter');
  await mallory.locator('#message-list .msg.failed .state', { hasText: 'blocks you' }).waitFor();
  assert.equal(await nina.locator('#message-list .msg .text').count(), 0, 'nothing reached nina');

  await nina.locator('#block-button').click();
  await nina.locator('#block-button', { hasText: 'Block' }).waitFor();
  await mallory.locator('#composer-text').fill('hello again');
  await mallory.locator('#composer-text').press('Enter');
  await waitForMessage(nina, 'hello again');
});
