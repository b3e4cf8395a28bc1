// The web client survives server restarts by itself: on a server of this test's own (started from
// SWITCHBOARD_BIN on its own port and SQLite data directory), stopped gracefully (clients get 1012)
// and killed (SIGKILL: clients see the link drop), then started again on the same port and data.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ServerProcess,
  connectedNode,
  launchBrowser,
  messageItem,
  messageMenu,
  messageTexts,
  openDevice,
  openDm,
  register,
  screenshot,
  sendText,
  waitForMessage,
  waitReady,
} from './harness.mjs';

test('the page reconnects after restarts, resumes, and shows what was sent meanwhile', async () => {
  const server = new ServerProcess({ nodeId: 'n1' });
  await server.start();
  const browser = await launchBrowser();
  try {
    const kim = await openDevice(browser);
    const leo = await openDevice(browser);
    await register(kim.page, server.url, 'kim');
    await register(leo.page, server.url, 'leo');
    await openDm(kim.page, 'leo');
    await openDm(leo.page, 'kim');
    await sendText(leo.page, 'before any restart');
    await waitForMessage(kim.page, 'before any restart');

    // A graceful restart: the server says 1012, the pages come back by themselves.
    await server.stop();
    await kim.page.locator('#status-text', { hasText: 'reconnecting' }).waitFor();
    await server.start();
    await waitReady(kim.page);
    await waitReady(leo.page);
    assert.equal((await connectedNode(kim.page)).node, 'n1');
    await sendText(leo.page, 'after a graceful restart');
    await waitForMessage(kim.page, 'after a graceful restart');

    // A crash. Leo writes while the server is down: the message waits in his outbox.
    await server.kill();
    await kim.page.locator('#status-text', { hasText: 'reconnecting' }).waitFor();
    await leo.page.locator('#status-text', { hasText: 'reconnecting' }).waitFor();
    await leo.page.locator('#composer-text').fill('written while the server was down');
    await leo.page.locator('#composer-text').press('Enter');
    await leo.page.locator('#message-list .msg.pending .text', { hasText: 'written while the server was down' }).waitFor();

    // Kim's page cannot reach the server (its connection attempts are closed at once) until leo's
    // messages are stored: then kim's page must recover them by resuming with its cursors.
    let held = true;
    await kim.context.routeWebSocket(/\/ws$/, (socket) => {
      if (held) socket.close();
      else socket.connectToServer();
    });
    await server.start();
    await waitReady(leo.page);
    // The unacknowledged message is sent again with its key, and acknowledged.
    await leo.page.locator('#message-list .msg.mine:not(.pending) .text', { hasText: 'written while the server was down' }).waitFor();
    await sendText(leo.page, 'sent while kim was away (1)');
    await sendText(leo.page, 'sent while kim was away (2)');
    assert.equal(await kim.page.locator('#status[data-state="ready"]').count(), 0, 'kim is still away');
    assert.match(await kim.page.locator('#status-text').textContent(), /reconnecting/);

    held = false;
    await waitReady(kim.page);
    await waitForMessage(kim.page, 'sent while kim was away (2)');
    const expected = [
      'before any restart',
      'after a graceful restart',
      'written while the server was down',
      'sent while kim was away (1)',
      'sent while kim was away (2)',
    ];
    assert.deepEqual(await messageTexts(kim.page), expected, 'everything once, in order');
    assert.deepEqual(await messageTexts(leo.page), expected);

    // And live again, both ways.
    await sendText(leo.page, 'welcome back');
    await waitForMessage(kim.page, 'welcome back');
    await sendText(kim.page, 'thanks, I missed nothing');
    await waitForMessage(leo.page, 'thanks, I missed nothing');
    await screenshot(kim.page, 'desktop-after-restart');
    assert.deepEqual(kim.problems, []);
    assert.deepEqual(leo.problems, []);
  } finally {
    await browser.close();
    await server.kill();
  }
});

test('a reply written while the server is down keeps its quote through a reload', async () => {
  const server = new ServerProcess({ nodeId: 'n1' });
  await server.start();
  const browser = await launchBrowser();
  try {
    const ada = await openDevice(browser);
    const bo = await openDevice(browser);
    await register(ada.page, server.url, 'ada');
    await register(bo.page, server.url, 'bo');
    await openDm(ada.page, 'bo');
    await sendText(ada.page, 'the original');
    await openDm(bo.page, 'ada');
    await waitForMessage(bo.page, 'the original');

    // Bo replies while the server is down; the server comes back, but bo's page cannot reach it
    // (its WebSocket attempts are closed) and is reloaded: the reply waits in the stored outbox.
    await server.kill();
    await bo.page.locator('#status-text', { hasText: 'reconnecting' }).waitFor();
    await messageMenu(bo.page, 'the original', 'Reply');
    await bo.page.locator('#composer-mode', { hasText: 'Replying to ada' }).waitFor();
    await bo.page.locator('#composer-text').fill('my answer');
    await bo.page.locator('#composer-text').press('Enter');
    await bo.page.locator('#message-list .msg.pending .text', { hasText: 'my answer' }).waitFor();
    let held = true;
    await bo.context.routeWebSocket(/\/ws$/, (socket) => {
      if (held) socket.close();
      else socket.connectToServer();
    });
    await server.start();
    await bo.page.reload();
    await bo.page.locator('#status-text', { hasText: 'reconnecting' }).waitFor();

    // Let through: the reply is sent from the outbox as a reply, and both sides show its quote.
    held = false;
    await waitReady(bo.page);
    await openDm(bo.page, 'ada');
    await waitReady(ada.page);
    for (const page of [ada.page, bo.page]) {
      await messageItem(page, 'my answer').locator('.quote').filter({ hasText: 'the original' }).waitFor();
    }
    assert.deepEqual(ada.problems, []);
    assert.deepEqual(bo.problems, []);
  } finally {
    await browser.close();
    await server.kill();
  }
});
