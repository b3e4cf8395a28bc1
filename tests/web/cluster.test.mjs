// The web client against a local cluster: three `switchboard serve` processes on one Redis and one
// PostgreSQL database (ClusterProcess). Every page is served by n3, as by the one address in front
// of a cluster; the page asks that node's gateway (`/api/connect`) where to connect, so users land
// on different nodes and talk across the bus. When a user's node dies, the page asks the gateway
// again, moves to a live node and recovers what was sent meanwhile.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ClusterProcess,
  connectedNode,
  countGatewayRequests,
  launchBrowser,
  messageTexts,
  openDevice,
  openDm,
  register,
  screenshot,
  sendText,
  waitForMessage,
  waitReady,
} from './harness.mjs';

/** A browser context of its own for `username`, registered on the page `origin` serves. */
async function userOn(browser, origin, username) {
  const device = await openDevice(browser);
  device.username = username;
  device.gatewayRequests = countGatewayRequests(device.page);
  await register(device.page, origin.url, username);
  return device;
}

/**
 * Registers two users one after the other from `origin`'s page; the second only once the gateway
 * counts the first one's connection, so that it names another node. Checks that each page went to
 * the node the gateway named, and returns them with their nodes.
 */
async function twoUsersOnTwoNodes(browser, cluster, origin, [firstName, secondName]) {
  const firstChoice = await cluster.gatewayChoice(origin);
  const first = await userOn(browser, origin, firstName);
  const firstAt = await connectedNode(first.page);
  assert.equal(firstAt.node, firstChoice.node, `${firstName}'s page went where the gateway said`);
  assert.equal(firstAt.url, firstChoice.url);

  const secondChoice = await cluster.waitForGatewayChoice(
    origin,
    `a node other than ${firstAt.node}`,
    (answer) => answer.node !== firstAt.node,
  );
  const second = await userOn(browser, origin, secondName);
  const secondAt = await connectedNode(second.page);
  assert.equal(secondAt.node, secondChoice.node, `${secondName}'s page went where the gateway said`);
  assert.equal(secondAt.url, secondChoice.url);

  for (const [user, at] of [
    [first, firstAt],
    [second, secondAt],
  ]) {
    assert.equal(at.url, cluster.node(at.node).wsUrl, `${user.username} is connected to the node the page names`);
    assert.ok(user.gatewayRequests.count >= 1, `${user.username}'s page asked the gateway`);
  }
  assert.notEqual(firstAt.node, secondAt.node);
  assert.ok(
    firstAt.node !== origin.nodeId || secondAt.node !== origin.nodeId,
    'a page connected to a node other than the one that served it',
  );
  return [first, second];
}

test('users on different nodes see each other online and chat privately and in a room', async () => {
  const cluster = new ClusterProcess({ size: 3 });
  const browser = await launchBrowser();
  try {
    await cluster.start();
    const origin = cluster.node('n3');
    const [una, vic] = await twoUsersOnTwoNodes(browser, cluster, origin, ['una', 'vic']);

    // Presence crosses the bus both ways.
    await una.page.locator('#user-list [data-user="vic"] .dot.online').waitFor();
    await vic.page.locator('#user-list [data-user="una"] .dot.online').waitFor();

    // Private messages, typing and read markers.
    await openDm(una.page, 'vic');
    await sendText(una.page, 'hello from the other node');
    await vic.page.locator('#user-list [data-user="una"] .badge', { hasText: '1' }).waitFor();
    // Delivered to vic's page across the bus, then seen; seen again after a reload of una's page.
    await una.page.locator('#message-list .msg.mine .receipt', { hasText: 'delivered' }).waitFor();
    await openDm(vic.page, 'una');
    await waitForMessage(vic.page, 'hello from the other node');
    await una.page.locator('#message-list .msg.mine .seen').waitFor();
    await una.page.reload();
    await waitReady(una.page);
    await openDm(una.page, 'vic');
    await una.page.locator('#message-list .msg.mine .seen').waitFor();
    await vic.page.locator('#composer-text').pressSequentially('same', { delay: 20 });
    await una.page.locator('#typing', { hasText: 'vic is typing' }).waitFor();
    await vic.page.locator('#composer-text').fill('');
    await sendText(vic.page, 'same here, across the bus');
    await waitForMessage(una.page, 'same here, across the bus');
    const conversation = ['hello from the other node', 'same here, across the bus'];
    assert.deepEqual(await messageTexts(una.page), conversation);
    assert.deepEqual(await messageTexts(vic.page), conversation);

    // A room created on one node appears on the other without a refresh (room_created), and is
    // joined from there.
    await una.page.locator('#room-name').fill('crossing');
    await una.page.locator('#room-form button').click();
    await una.page.locator('#conv-name', { hasText: '# crossing' }).waitFor();
    await sendText(una.page, 'the room is open');
    await vic.page.locator('#room-list [data-room="crossing"][data-joined="false"]').click();
    await vic.page.locator('#conv-name', { hasText: '# crossing' }).waitFor();
    await waitForMessage(vic.page, 'the room is open');
    await una.page.locator('#message-list .notice', { hasText: 'vic joined the room' }).waitFor();
    await sendText(vic.page, 'glad to be in');
    await waitForMessage(una.page, 'glad to be in');
    await sendText(una.page, 'welcome, vic');
    await waitForMessage(vic.page, 'welcome, vic');
    assert.deepEqual(await messageTexts(vic.page), ['the room is open', 'glad to be in', 'welcome, vic']);

    await una.page.locator('#members-button').click();
    await una.page.locator('#conv-sub', { hasText: '2 members' }).waitFor();
    await una.page.locator('#members .member', { hasText: 'vic' }).locator('.dot.online').waitFor();
    await screenshot(una.page, 'desktop-cluster-room');

    // Changes and moderation cross the bus: vic edits and reacts on his node, una (the room's
    // owner) deletes his message and mutes him on hers.
    const item = (page, text) => page.locator('#message-list .msg').filter({ has: page.locator('.text', { hasText: text }) });
    const menu = async (page, text, action) => {
      const message = item(page, text).last();
      await message.hover();
      await message.locator('.msg-menu-button').click();
      await message.locator('.msg-menu [role="menuitem"]', { hasText: action }).click();
    };
    await menu(vic.page, 'glad to be in', 'Edit');
    await vic.page.locator('#composer-text').fill('glad to be in here');
    await vic.page.locator('#composer-text').press('Enter');
    await item(una.page, 'glad to be in here').locator('.edited', { hasText: '(edited)' }).waitFor();
    await menu(vic.page, 'welcome, vic', '👍');
    await item(una.page, 'welcome, vic').locator('.reaction', { hasText: '👍 1' }).waitFor();
    await menu(una.page, 'glad to be in here', 'Delete');
    await vic.page.locator('#message-list .msg.deleted .tombstone', { hasText: 'This message was deleted.' }).waitFor();
    await vic.page.locator('#members-button').click();
    await una.page.locator('#members [data-user="vic"] [data-action="mute"]').click();
    // Once vic's page hears of the mute, his node has dropped the room's cached rules too.
    await vic.page.locator('#members [data-user="vic"]', { hasText: 'muted' }).waitFor();
    await vic.page.locator('#composer-text').fill('can you hear me?');
    await vic.page.locator('#composer-text').press('Enter');
    await vic.page.locator('#message-list .msg.failed', { hasText: 'can you hear me?' }).waitFor();
    assert.equal(await item(una.page, 'can you hear me?').count(), 0, 'a muted member sends nothing');
    assert.deepEqual(una.problems, []);
    assert.deepEqual(vic.problems, []);
  } finally {
    await browser.close();
    await cluster.kill();
  }
});

test('when its node dies the page asks the gateway again, moves to a live node and recovers what it missed', async () => {
  const cluster = new ClusterProcess({ size: 3 });
  const browser = await launchBrowser();
  try {
    await cluster.start();
    const origin = cluster.node('n3');
    const [wes, xia] = await twoUsersOnTwoNodes(browser, cluster, origin, ['wes', 'xia']);
    // The node that dies is one that did not serve the pages (the gateway must stay up).
    const wesAt = await connectedNode(wes.page);
    const [away, stays] = wesAt.node !== origin.nodeId ? [wes, xia] : [xia, wes];
    const victim = cluster.node((await connectedNode(away.page)).node);

    await openDm(away.page, stays.username);
    await openDm(stays.page, away.username);
    await sendText(stays.page, 'before the node died');
    await waitForMessage(away.page, 'before the node died');
    await stays.page.locator(`#user-list [data-user="${away.username}"] .dot.online`).waitFor();

    // Hold the page's reconnects (their sockets are closed at once) until the messages below are
    // stored and the gateway has forgotten the dead node.
    let held = true;
    await away.context.routeWebSocket(/\/ws$/, (socket) => {
      if (held) socket.close();
      else socket.connectToServer();
    });
    const asksBefore = away.gatewayRequests.count;
    await victim.kill();
    await away.page.locator('#status-text', { hasText: 'reconnecting' }).waitFor();

    await sendText(stays.page, 'while your node was down (1)');
    await sendText(stays.page, 'while your node was down (2)');
    // The dead node's heartbeats stop: the cluster forgets it, and its users go offline.
    const live = cluster.nodes.filter((node) => node !== victim).map((node) => node.nodeId);
    await cluster.waitForLiveNodes(origin, live);
    await stays.page.locator(`#user-list [data-user="${away.username}"] .dot.offline`).waitFor();
    assert.equal(await away.page.locator('#status[data-state="ready"]').count(), 0, `${away.username} is still away`);

    held = false;
    await waitReady(away.page);
    const now = await connectedNode(away.page);
    assert.notEqual(now.node, victim.nodeId, 'the page left the dead node');
    assert.ok(live.includes(now.node), `${now.node} is a live node`);
    assert.equal(now.url, cluster.node(now.node).wsUrl);
    assert.ok(away.gatewayRequests.count > asksBefore, 'the page asked the gateway again');

    await waitForMessage(away.page, 'while your node was down (2)');
    const expected = ['before the node died', 'while your node was down (1)', 'while your node was down (2)'];
    assert.deepEqual(await messageTexts(away.page), expected, 'everything once, in order');

    // Live again, both ways, and online again for the other user.
    await stays.page.locator(`#user-list [data-user="${away.username}"] .dot.online`).waitFor();
    await sendText(away.page, 'back, on another node');
    await waitForMessage(stays.page, 'back, on another node');
    await sendText(stays.page, 'welcome back');
    await waitForMessage(away.page, 'welcome back');
    assert.deepEqual(away.problems, []);
    assert.deepEqual(stays.problems, []);
  } finally {
    await browser.close();
    await cluster.kill();
  }
});
