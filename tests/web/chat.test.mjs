// The web client in a real browser against a running server (SWITCHBOARD_WEB_URL): private chat,
// rooms, several tabs of one user, reloads, logout, long histories, the phone layout, texts that
// look like HTML, and where the page connects when the gateway (`/api/connect`) gives no usable
// answer.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  browserSuite,
  connectedNode,
  countGatewayRequests,
  exactly,
  messageTexts,
  newTab,
  openDm,
  register,
  screenshot,
  seedMessages,
  seedRooms,
  sendText,
  serverUrl,
  waitForMessage,
  waitInPage,
  waitReady,
} from './harness.mjs';

const suite = browserSuite();
const device = (options) => suite.device(options);
const base = serverUrl();

test('the page and its files are served with their content types', async () => {
  for (const [path, type] of [
    ['/', 'text/html'],
    ['/app.js', 'text/javascript'],
    ['/connection.js', 'text/javascript'],
    ['/dom.js', 'text/javascript'],
    ['/gateway.js', 'text/javascript'],
    ['/receipts.js', 'text/javascript'],
    ['/sidebar.js', 'text/javascript'],
    ['/composer.js', 'text/javascript'],
    ['/scroll.js', 'text/javascript'],
    ['/notify.js', 'text/javascript'],
    ['/presence.js', 'text/javascript'],
    ['/changes.js', 'text/javascript'],
    ['/moderation.js', 'text/javascript'],
    ['/chat.js', 'text/javascript'],
    ['/errors.js', 'text/javascript'],
    ['/storage.js', 'text/javascript'],
    ['/session.js', 'text/javascript'],
    ['/history.js', 'text/javascript'],
    ['/outbox.js', 'text/javascript'],
    ['/rooms.js', 'text/javascript'],
    ['/typing.js', 'text/javascript'],
    ['/header.js', 'text/javascript'],
    ['/timeline.js', 'text/javascript'],
    ['/status.js', 'text/javascript'],
    ['/style.css', 'text/css'],
  ]) {
    const response = await fetch(`${base}${path}`);
    assert.equal(response.status, 200, path);
    assert.ok(response.headers.get('content-type').startsWith(type), `${path}: ${response.headers.get('content-type')}`);
    assert.equal(response.headers.get('cache-control'), 'no-cache', path);
  }
});

test('two users chat privately: unread badge, typing, seen', async () => {
  const alice = await device();
  const bob = await device();
  await register(alice.page, base, 'alice');
  assert.equal(await alice.page.locator('#status-text').textContent(), 'Connected');
  assert.equal(await alice.page.locator('#status-text').getAttribute('title'), `node n1 · ${base.replace('http', 'ws')}/ws`);
  await register(bob.page, base, 'bob');

  // Self first, then the others; bob shows up online for alice without a reload.
  await alice.page.locator('#user-list [data-user="bob"] .dot.online').waitFor();
  assert.deepEqual(await alice.page.locator('#user-list .item .name').allTextContents(), ['alice', 'bob']);

  await openDm(alice.page, 'bob');
  await sendText(alice.page, 'Hi Bob! Are we still on for lunch?');

  // Bob was elsewhere: an unread badge on alice, then the message when he opens the conversation.
  await bob.page.locator('#user-list [data-user="alice"] .badge', { hasText: '1' }).waitFor();
  await openDm(bob.page, 'alice');
  await waitForMessage(bob.page, 'Hi Bob! Are we still on for lunch?');
  await bob.page.locator('#user-list [data-user="alice"] .badge').waitFor({ state: 'detached' });

  // Bob reading it shows "seen" under alice's message.
  await alice.page.locator('#message-list .msg.mine .seen').waitFor();

  // Bob types: alice sees it, and it goes away when his message arrives.
  await bob.page.locator('#composer-text').pressSequentially('Sure, 12:30', { delay: 20 });
  await alice.page.locator('#typing', { hasText: 'bob is typing' }).waitFor();
  await bob.page.locator('#composer-text').press('Enter');
  await waitForMessage(alice.page, 'Sure, 12:30');
  // The indicator goes when his message arrives (not only when it expires).
  assert.equal(await alice.page.locator('#typing').textContent(), '');
  assert.deepEqual(await messageTexts(alice.page), ['Hi Bob! Are we still on for lunch?', 'Sure, 12:30']);
  assert.deepEqual(await messageTexts(bob.page), ['Hi Bob! Are we still on for lunch?', 'Sure, 12:30']);
  // Own messages on the right, the peer's on the left.
  assert.equal(await alice.page.locator('#message-list .msg.mine').count(), 1);
  assert.equal(await alice.page.locator('#message-list .msg.theirs').count(), 1);
});

test('rooms: create, join with the replayed history, members, join and leave notices', async () => {
  const [alice, bob, carol] = [await device(), await device(), await device()];
  await register(carol.page, base, 'carol');
  await register(alice.page, base, 'alice', { action: 'login' });
  await register(bob.page, base, 'bob', { action: 'login' });

  await alice.page.locator('#room-name').fill('Lobby');
  await alice.page.locator('#room-form button').click();
  await alice.page.locator('#conv-name', { hasText: '# lobby' }).waitFor();
  await sendText(alice.page, 'Morning all! The deploy is at 3pm.');
  await sendText(alice.page, 'Reviews welcome on the release notes.');

  // Bob finds the room in his list, there without a refresh (room_created), and joins: the
  // history before his join is replayed.
  await bob.page.locator('#room-list [data-room="lobby"][data-joined="false"]').click();
  await bob.page.locator('#conv-name', { hasText: '# lobby' }).waitFor();
  await waitForMessage(bob.page, 'Morning all! The deploy is at 3pm.');
  assert.deepEqual(await messageTexts(bob.page), ['Morning all! The deploy is at 3pm.', 'Reviews welcome on the release notes.']);
  await alice.page.locator('#message-list .notice', { hasText: 'bob joined the room' }).waitFor();

  await carol.page.locator('#room-list [data-room="lobby"]').click();
  await waitForMessage(carol.page, 'Reviews welcome on the release notes.');

  await sendText(bob.page, 'On it. Looks good so far!');
  await waitForMessage(alice.page, 'On it. Looks good so far!');
  await waitForMessage(carol.page, 'On it. Looks good so far!');
  // Room messages from others carry the author's name.
  await alice.page.locator('#message-list .msg.theirs .author', { hasText: 'bob' }).waitFor();
  await sendText(carol.page, 'I will watch the dashboards during the rollout.');
  await waitForMessage(alice.page, 'I will watch the dashboards during the rollout.');

  // Members: all three, online.
  await alice.page.locator('#members-button').click();
  await waitInPage(alice.page, () => document.querySelectorAll('#members .member .dot.online').length === 3);
  assert.deepEqual(await alice.page.locator('#members .member-name').allTextContents(), ['alice (you)', 'bob', 'carol']);
  // The owner's member menu: others can be removed, banned, muted and promoted; she cannot.
  await alice.page.locator('#members .member[data-user="bob"] [data-action="ban"]').waitFor();
  assert.equal(await alice.page.locator('#members .member[data-user="alice"] [data-action]').count(), 0);
  await alice.page.locator('#conv-sub', { hasText: '3 members' }).waitFor();

  // A private message for alice while she is in the room: an unread badge in her list.
  await seedMessages(carol.page, { username: 'carol', to: 'alice', texts: ['Can you add me to the on-call rota?'] });
  await alice.page.locator('#user-list [data-user="carol"] .badge', { hasText: '1' }).waitFor();

  await bob.page.locator('#composer-text').pressSequentially('Deploy', { delay: 20 });
  await alice.page.locator('#typing', { hasText: 'bob is typing' }).waitFor();
  await screenshot(alice.page, 'desktop-room');

  // Carol leaves: everyone still in the room is told.
  await carol.page.locator('#leave-button').click();
  await carol.page.locator('#join-bar').waitFor();
  await alice.page.locator('#message-list .notice', { hasText: 'carol left the room' }).waitFor();
  await bob.page.locator('#message-list .notice', { hasText: 'carol left the room' }).waitFor();
  await alice.page.locator('#conv-sub', { hasText: '2 members' }).waitFor();
  await alice.page.locator('#members .member', { hasText: 'carol' }).waitFor({ state: 'detached' });
});

test('a user in more rooms than one page of the listing holds sees every one of them', async () => {
  const pat = await device();
  await register(pat.page, base, 'pat');
  // The server answers `rooms` and `conversations` 1000 at a time: the client follows next_cursor.
  const rooms = Array.from({ length: 1005 }, (_, index) => `page-${String(index).padStart(4, '0')}`);
  await seedRooms(pat.page, { username: 'pat', rooms });
  await pat.page.locator('#rooms-refresh').click();
  await waitInPage(pat.page, () => document.querySelectorAll('#room-list [data-joined="true"]').length === 1005);
  await pat.page.locator('#room-list [data-room="page-1004"][data-joined="true"]').click();
  await pat.page.locator('#conv-name', { hasText: '# page-1004' }).waitFor();
});

test('a second tab of the same user follows the conversation, and logging out ends both', async () => {
  const dave = await device();
  const erin = await device();
  await register(dave.page, base, 'dave');
  await register(erin.page, base, 'erin');

  // The second tab shares the session: no login form, the same user.
  const secondTab = await newTab(dave);
  await secondTab.goto(`${base}/`);
  await waitReady(secondTab);
  assert.equal(await secondTab.locator('#me-name').textContent(), 'dave');
  assert.equal(await secondTab.locator('#login').isVisible(), false);

  await openDm(dave.page, 'erin');
  await openDm(secondTab, 'erin');
  await sendText(dave.page, 'sent from the first tab');
  // It arrives in the second tab as dave's own message (from = me), on the right.
  await secondTab.locator('#message-list .msg.mine .text', { hasText: 'sent from the first tab' }).waitFor();
  await openDm(erin.page, 'dave');
  await waitForMessage(erin.page, 'sent from the first tab');
  await sendText(erin.page, 'got it');
  await waitForMessage(dave.page, 'got it');
  await waitForMessage(secondTab, 'got it');
  await sendText(secondTab, 'and this from the second tab');
  await dave.page.locator('#message-list .msg.mine .text', { hasText: 'and this from the second tab' }).waitFor();
  assert.deepEqual(await messageTexts(dave.page), await messageTexts(secondTab));

  // Logging out in one tab logs out the other.
  await dave.page.locator('#logout-button').click();
  await dave.page.locator('#login').waitFor();
  await secondTab.locator('#login').waitFor();
  await dave.page.reload();
  await dave.page.locator('#login').waitFor();
  assert.equal(await dave.page.locator('#app').isVisible(), false);
});

test('a reload keeps the session, the open conversation and its messages', async () => {
  const frank = await device();
  const grace = await device();
  await register(frank.page, base, 'frank');
  await register(grace.page, base, 'grace');
  await openDm(frank.page, 'grace');
  await sendText(frank.page, 'before the reload');

  await frank.page.reload();
  await waitReady(frank.page);
  assert.equal(await frank.page.locator('#login').isVisible(), false, 'no login form after a reload');
  assert.equal(await frank.page.locator('#me-name').textContent(), 'frank');
  await frank.page.locator('#conv-name', { hasText: 'grace' }).waitFor();
  await waitForMessage(frank.page, 'before the reload');

  // A message that arrives after the reload is live again.
  await openDm(grace.page, 'frank');
  await sendText(grace.page, 'after the reload');
  await waitForMessage(frank.page, 'after the reload');
  assert.deepEqual(await messageTexts(frank.page), ['before the reload', 'after the reload']);

  // Wrong credentials are refused with a message, not a crash.
  const stranger = await device();
  await stranger.page.goto(`${base}/`);
  await stranger.page.locator('#login-username').fill('frank');
  await stranger.page.locator('#login-password').fill('not the password');
  await stranger.page.locator('#login-button').click();
  await stranger.page.locator('#login-error', { hasText: 'Wrong user name or password' }).waitFor();
});

test('text that looks like HTML is shown as text', async () => {
  const mallory = await device();
  const heidi = await device();
  await register(mallory.page, base, 'mallory');
  await register(heidi.page, base, 'heidi');
  const nasty = '<img src=x onerror=alert(1)><b>bold</b>';
  await openDm(mallory.page, 'heidi');
  await sendText(mallory.page, nasty);
  await openDm(heidi.page, 'mallory');
  await waitForMessage(heidi.page, nasty);
  for (const page of [mallory.page, heidi.page]) {
    assert.equal(await page.locator('#message-list img').count(), 0, 'no <img> element was created');
    assert.equal(await page.locator('#message-list b').count(), 0, 'no <b> element was created');
    assert.equal(await page.locator('#message-list .msg .text').first().textContent(), nasty);
  }
  // The alert would have been recorded as a problem (checked after all tests), and so would a page error.
  assert.deepEqual(mallory.problems, []);
  assert.deepEqual(heidi.problems, []);
});

test('scrolling up with the wheel loads page after page down to the beginning, without duplicates', async () => {
  const ivan = await device();
  const judy = await device();
  await register(ivan.page, base, 'ivan');
  await register(judy.page, base, 'judy');
  const count = 220;
  await seedMessages(ivan.page, { username: 'ivan', to: 'judy', count, label: 'note' });
  // They all reached judy's open page live; after a reload (cursors kept) the page holds none.
  await judy.page.locator('#user-list [data-user="ivan"] .badge', { hasText: '99+' }).waitFor();
  await judy.page.reload();
  await waitReady(judy.page);
  await judy.page.locator('#user-list [data-user="ivan"] .badge', { hasText: '99+' }).waitFor();

  await openDm(judy.page, 'ivan');
  await waitForMessage(judy.page, `note ${count}`);
  assert.ok((await judy.page.locator('#message-list .msg').count()) < count, 'only the newest page at first');
  assert.equal(await judy.page.locator('#message-list .msg .text').filter({ hasText: exactly('note 1') }).count(), 0);

  // Turn the wheel up as a reader would: every turn brings older messages, until the beginning.
  // (A view left pinned at the top would get no further scroll event, and this wait would fail.)
  await judy.page.locator('#messages').hover();
  const atBeginning = () => /beginning of your conversation/.test(document.getElementById('history-top').textContent);
  let turns = 0;
  while (!(await judy.page.evaluate(atBeginning))) {
    const held = await judy.page.locator('#message-list .msg').count();
    await judy.page.mouse.wheel(0, -20_000);
    await waitInPage(
      judy.page,
      (held) =>
        document.querySelectorAll('#message-list .msg').length > held ||
        /beginning of your conversation/.test(document.getElementById('history-top').textContent),
      held,
    );
    turns += 1;
    assert.ok(turns <= count / 50 + 2, 'each turn of the wheel loads at least one page');
  }
  const texts = await messageTexts(judy.page);
  assert.deepEqual(texts, Array.from({ length: count }, (_, index) => `note ${index + 1}`));
});

test('a message while the page is hidden: a notification (asked for on a click) and a tone', async () => {
  const kim = await device();
  const leo = await device();
  // Stand-ins installed by the test page: chromium's real notifications are not observable
  // headless, a headless page is never hidden, and its audio cannot be heard.
  await kim.context.addInitScript(() => {
    window.__notifications = [];
    window.__asked = 0;
    window.__tones = 0;
    window.__hidden = false;
    window.Notification = class {
      static permission = 'default';
      static async requestPermission() {
        window.__asked += 1;
        window.Notification.permission = 'granted';
        return 'granted';
      }
      constructor(title, options) {
        Object.assign(this, { title, options });
        window.__notifications.push(this);
      }
      close() {}
    };
    Object.defineProperty(document, 'visibilityState', { get: () => (window.__hidden ? 'hidden' : 'visible') });
    Object.defineProperty(document, 'hidden', { get: () => window.__hidden });
    window.AudioContext = class {
      state = 'running';
      currentTime = 0;
      destination = {};
      createOscillator() {
        return { frequency: {}, connect: (next) => next, start: () => (window.__tones += 1), stop() {} };
      }
      createGain() {
        return { gain: {}, connect: (next) => next };
      }
      async resume() {}
    };
  });
  await register(kim.page, base, 'kim');
  await register(leo.page, base, 'leo');
  assert.equal(await kim.page.evaluate(() => window.__asked), 0, 'no permission asked without a gesture');
  await kim.page.locator('#notify-button').click();
  await kim.page.locator('#notify-button[aria-pressed="true"]').waitFor();
  await kim.page.locator('#sound-button').click();
  await kim.page.locator('#sound-button[aria-pressed="true"]').waitFor();
  assert.equal(await kim.page.evaluate(() => window.__asked), 1);

  // Visible page: nothing.
  await openDm(leo.page, 'kim');
  await sendText(leo.page, 'while you look');
  await kim.page.locator('#user-list [data-user="leo"] .badge', { hasText: '1' }).waitFor();
  assert.equal(await kim.page.evaluate(() => window.__notifications.length + window.__tones), 0);

  // Hidden page: a notification per message from someone else (not for kim's own, sent from
  // elsewhere), with a tone.
  await kim.page.evaluate(() => {
    window.__hidden = true;
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await sendText(leo.page, 'are you around?');
  await seedMessages(kim.page, { username: 'kim', to: 'leo', texts: ['from my phone'] });
  await sendText(leo.page, 'lunch?');
  await waitInPage(kim.page, () => window.__notifications.length === 2);
  const shown = await kim.page.evaluate(() =>
    window.__notifications.map(({ title, options }) => ({ title, body: options.body, tag: options.tag })),
  );
  assert.deepEqual(shown, [
    { title: 'leo', body: 'are you around?', tag: 'dm:kim:leo' },
    { title: 'leo', body: 'lunch?', tag: 'dm:kim:leo' },
  ]);
  assert.equal(await kim.page.evaluate(() => window.__tones), 2);

  // A click on the notification opens the conversation.
  await kim.page.evaluate(() => window.__notifications[1].onclick());
  await kim.page.locator('#conv-name', { hasText: 'leo' }).waitFor();
  await waitForMessage(kim.page, 'lunch?');
});

test('phone layout: one column, the list or the conversation with a back button', async () => {
  const phone = await device({ viewport: { width: 390, height: 844 } });
  await register(phone.page, base, 'bob', { action: 'login' });
  const sidebar = phone.page.locator('#sidebar');
  const conversation = phone.page.locator('#conversation');
  assert.equal(await sidebar.isVisible(), true);
  assert.equal(await conversation.isVisible(), false);
  await screenshot(phone.page, 'phone-list');

  await phone.page.locator('#room-list [data-room="lobby"]').click();
  await waitForMessage(phone.page, 'On it. Looks good so far!');
  assert.equal(await sidebar.isVisible(), false, 'the list is hidden while a conversation is open');
  assert.equal(await phone.page.locator('#back-button').isVisible(), true);
  const box = await phone.page.locator('#composer').boundingBox();
  assert.ok(box.x >= 0 && box.x + box.width <= 390, `the composer fits the screen: ${JSON.stringify(box)}`);
  await screenshot(phone.page, 'phone-room');

  await phone.page.locator('#back-button').click();
  await sidebar.waitFor();
  assert.equal(await conversation.isVisible(), false);
});

test('the page connects where the gateway says, and to its own server when that fails', async () => {
  // A standalone server's gateway names the server itself.
  const plain = await device();
  await register(plain.page, base, 'olga');
  const wsUrl = `${base.replace(/^http/, 'ws')}/ws`;
  assert.deepEqual(await connectedNode(plain.page), { node: 'n1', url: wsUrl });

  // A gateway that names a URL no browser can use (a node listening on all interfaces without a
  // --public-url), and one that names a node nobody can reach: the page ends up on its own server;
  // for the unreachable node only after trying it once (and asking the gateway again).
  const broken = await device();
  const brokenOpened = [];
  broken.page.on('websocket', (socket) => brokenOpened.push(socket.url()));
  await broken.page.route('**/api/connect', (route) =>
    route.fulfill({ json: { node: 'n1', url: 'ws://0.0.0.0:8080/ws', connections: 0 } }),
  );
  await register(broken.page, base, 'pete');
  assert.deepEqual(await connectedNode(broken.page), { node: 'n1', url: wsUrl });
  assert.deepEqual(brokenOpened, [wsUrl]);
  const unreachable = await device();
  const asked = countGatewayRequests(unreachable.page);
  const opened = [];
  unreachable.page.on('websocket', (socket) => opened.push(socket.url()));
  await unreachable.page.route('**/api/connect', (route) =>
    route.fulfill({ json: { node: 'n9', url: 'ws://127.0.0.1:9/ws', connections: 0 } }),
  );
  await register(unreachable.page, base, 'quinn');
  assert.deepEqual(await connectedNode(unreachable.page), { node: 'n1', url: wsUrl });
  assert.deepEqual(opened, ['ws://127.0.0.1:9/ws', wsUrl]);
  assert.equal(asked.count, 2);
});
