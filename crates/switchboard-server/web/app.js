// Switchboard's web client: the page's entry point. It builds the modules below, hands them the
// chat they share (chat.js) and the live connection (session.js), dispatches the server's frames to
// them, and redraws the parts of the page they mark dirty.
//
// Every string that comes from a user (names, message texts) is put into the page as text
// (textContent, text nodes): never as HTML. This holds in every module: they build elements with
// `h` (dom.js), which never parses a string as HTML.
//
// Where things live: session.js (login screen, token, connection), history.js (messages held,
// cursors, gap filling, history pages), outbox.js (sending and resending), rooms.js (room list,
// join, create, leave, members), receipts.js (read and delivered markers), typing.js, presence.js,
// moderation.js, sidebar.js (conversation and people lists, search), header.js (the open
// conversation's header and member list), timeline.js (its messages), composer.js (the message
// box, replies, edits, reactions), changes.js (edits, deletions, reactions as shown), status.js
// (status line, toasts), notify.js (notifications).

import { isChange } from './changes.js';
import { Chat, dmId, targetOf } from './chat.js';
import { Composer } from './composer.js';
import { byId } from './dom.js';
import { errorText } from './errors.js';
import { Gateway } from './gateway.js';
import { Header } from './header.js';
import { MessageHistory } from './history.js';
import { Moderation } from './moderation.js';
import { Notifier } from './notify.js';
import { Outbox } from './outbox.js';
import { PresenceWatch, applyListed, applyRoomSize, setOnline, takeOnlineList } from './presence.js';
import { DeliveryReports, ReadMarkers, takePeerMarkers } from './receipts.js';
import { Rooms } from './rooms.js';
import { Session } from './session.js';
import { ActivityOrder, UserSearch, renderSidebar, takeListing } from './sidebar.js';
import { StatusLine, showToast } from './status.js';
import { Timeline } from './timeline.js';
import { Typing, activeTypers, typingText } from './typing.js';

// ---------------------------------------------------------------------------------------------
// The modules

const chat = new Chat();
/** Picks the node of every connect; remembers nodes that just failed across connections. */
const gateway = new Gateway();
/** The login, the session token and the live connection: every request goes through it. */
const session = new Session({
  gateway,
  cursors: () => messageHistory.resumeCursors(),
  onSession,
  onFrame,
  onStatus: () => invalidate('status'),
  load: loadKept,
  forget: forgetChat,
});
/** Whose presence this client asked about beyond its contacts. */
const presenceWatch = new PresenceWatch((frame) => session.request(frame));
/** This device's `delivered` reports (receipts.js). */
const deliveries = new DeliveryReports((convId, seq) =>
  session.request({ type: 'delivered', ...targetOf(chat.conversation(convId)), seq }),
);
/** The people search (sidebar.js); the people it shows are watched while shown (presence.js). */
const search = new UserSearch(
  (frame) => session.request(frame),
  () => invalidate('sidebar'),
  (users) => {
    applyListed(users, onPresence);
    presenceWatch.show(users.map((user) => user.user), onPresence, heardUnasked);
  },
);
/** The conversations in the server's activity order, kept live (sidebar.js). */
const activity = new ActivityOrder();
const reads = new ReadMarkers({ chat, server: session, invalidate });
const outbox = new Outbox({
  chat,
  server: session,
  ingest: (convId, messages) => messageHistory.ingest(convId, messages),
  invalidate,
});
const messageHistory = new MessageHistory({
  chat,
  server: session,
  outbox,
  deliveries,
  activity,
  reads,
  invalidate,
  toast: showToast,
});
const typing = new Typing({ chat, send: (frame) => session.send(frame), invalidate });
const moderation = new Moderation({
  state: chat,
  request: (frame) => session.request(frame),
  invalidate,
  toast: showToast,
  errorText,
  conversation: (id) => chat.conversation(id),
  refreshRooms: () => rooms.refresh(),
  leftRoom: (conv) => rooms.left(conv),
});
const rooms = new Rooms({
  chat,
  server: session,
  messageHistory,
  moderation,
  onPresence,
  openConversation,
  openedConversation,
  invalidate,
  toast: showToast,
});
const composer = new Composer({
  chat,
  server: session,
  outbox,
  typing,
  ingest: (convId, messages) => messageHistory.ingest(convId, messages),
  openConversation,
  invalidate,
  toast: showToast,
});
const header = new Header({ chat, moderation, invalidate });
const timeline = new Timeline({
  chat,
  outbox,
  composer,
  loadOlder: (conv) => messageHistory.loadOlder(conv),
  invalidate,
});
const statusLine = new StatusLine(
  () => session.status,
  () => chat.me,
);
/** What the sidebar draws from and does on a click. */
const sidebar = {
  state: chat,
  search,
  order: activity,
  dmId,
  activeTypers,
  openConversation: (id) => openConversation(id),
  joinRoom: (name) => rooms.join(name),
};
/** Notifications for messages that arrive while the page is hidden; made by `wire`. */
let notifier = null;

// ---------------------------------------------------------------------------------------------
// Logged in, logged out

function onSession(info) {
  if (chat.me !== info.user) {
    if (chat.me !== null) resetChat();
    chat.me = info.user;
    loadKept(info.user);
  }
  session.save({ token: info.token, user: info.user });
  messageHistory.startSync();
  session.showApp();
  invalidate('sidebar', 'conv', 'status');
}

/** The cursors and unsent messages this browser kept for `user`. */
function loadKept(user) {
  messageHistory.loadCursors(user);
  outbox.load(user);
}

/** Logged out: everything kept about the chat goes, in this tab and in storage. */
function forgetChat() {
  messageHistory.forgetStored();
  outbox.forgetStored();
  resetChat();
  chat.me = null;
}

function resetChat() {
  byId('search').value = '';
  search.set('');
  chat.reset();
  messageHistory.clearCursors();
  outbox.clear();
  byId('app').classList.remove('conv-open');
  history.replaceState(null, '', location.pathname);
}

// ---------------------------------------------------------------------------------------------
// Server frames

function onFrame(frame) {
  switch (frame.type) {
    case 'message':
      if (messageHistory.ingest(frame.conv, [frame]) > 0 && frame.from !== chat.me && !isChange(frame)) {
        notifyMessage(frame);
      }
      break;
    case 'sync':
      // A long summary comes in several `sync` frames.
      for (const entry of frame.conversations) {
        if (entry.more) messageHistory.moreAfterSync(entry.conv);
        takePeerMarkers(chat.conversation(entry.conv), entry);
      }
      invalidate('conv');
      break;
    case 'synced':
      onSynced();
      break;
    case 'online':
      if (takeOnlineList(chat, frame)) invalidate('sidebar', 'conv');
      break;
    case 'user_online':
    case 'user_offline':
      onPresence(frame.user, frame.type === 'user_online');
      break;
    case 'typing':
      typing.onTyping(frame);
      break;
    case 'read':
      reads.onRead(frame);
      break;
    case 'delivered':
      reads.onDelivered(frame);
      break;
    case 'member_joined':
    case 'member_left':
      rooms.onMembership(frame.room, frame.user, frame.type === 'member_joined');
      break;
    case 'room_size':
      if (chat.rooms.has(frame.room)) {
        applyRoomSize(chat.rooms.get(frame.room), frame);
        invalidate('sidebar', 'conv');
      }
      break;
    case 'room_created':
      rooms.onCreated(frame.room);
      break;
    case 'invited':
    case 'removed':
    case 'role_changed':
    case 'mute_changed':
      moderation.onEvent(frame);
      break;
    case 'rooms_created':
      // More rooms than the server announces one by one: list them again.
      rooms.refresh();
      break;
    case 'error':
      // Errors without a request of ours waiting (e.g. for `typing`, which has no answer).
      console.warn('server error', frame);
      break;
    default:
      // Frame types this client does not know are ignored, as the protocol asks.
      break;
  }
}

/** A live message from someone else: a notification (and tone) when the page is hidden. */
function notifyMessage(frame) {
  const conv = chat.conversation(frame.conv);
  notifier.message(conv.id, conv.kind === 'room' ? `${frame.from} in # ${conv.name}` : frame.from, frame);
}

/** Everything missed has arrived: page the rest, refresh lists, resend the outbox. */
function onSynced() {
  messageHistory.fillAfterSync();
  outbox.resend();
  presenceWatch.rewatch(onPresence);
  rooms.refresh();
  refreshConversations();
  moderation.loadBlocked();
  // Rooms are opened once the room list says whether we are a member (rooms.refresh).
  const conv = chat.currentConv();
  if (conv && conv.kind === 'dm') openedConversation(conv);
}

/**
 * Whether the server tells us about `user` without a `watch`, or a list shows them: yourself,
 * contacts (a private conversation with messages), members of the open room.
 */
function heardUnasked(user) {
  if (user === chat.me || (chat.convs.get(dmId(chat.me, user))?.lastSeq ?? 0) > 0) return true;
  const open = chat.currentConv();
  return Boolean(open?.kind === 'room' && open.members?.has(user));
}

function onPresence(user, online) {
  setOnline(chat, user, online);
  invalidate('sidebar', 'conv');
}

/** The `conversations` listing: the activity order, read markers and unread counts, and gaps. */
async function refreshConversations() {
  const listing = activity.begin();
  try {
    await session.eachPage({ type: 'conversations' }, (page) => {
      activity.page(listing, page.conversations);
      for (const entry of page.conversations) {
        const conv = chat.conversation(entry.conv);
        // Messages from others that arrived after the server's snapshot still count.
        let newer = 0;
        for (const message of conv.messages.values()) {
          if (message.seq > entry.last_seq && message.from !== chat.me && !isChange(message)) newer += 1;
        }
        conv.readSeq = Math.max(conv.readSeq, entry.read_seq);
        conv.lastSeq = Math.max(conv.lastSeq, entry.last_seq);
        takePeerMarkers(conv, entry);
        takeListing(conv, entry);
        if (conv.id === chat.current) invalidate('conv');
        conv.unread = chat.isViewing(conv) ? 0 : entry.unread + newer;
        messageHistory.fillIfBehind(conv, entry.last_seq);
        if (chat.isViewing(conv)) reads.markRead(conv);
      }
      invalidate('sidebar');
    });
    activity.finish(listing);
    invalidate('sidebar');
  } catch (error) {
    activity.abandon(listing);
    if (error.code !== 'disconnected') console.warn('conversations', error);
  }
}

// ---------------------------------------------------------------------------------------------
// Opening and closing a conversation

function openConversation(id) {
  const conv = chat.conversation(id);
  // Opened with unread messages: a line marks where they start, until another conversation opens.
  conv.newAfter = conv.unread > 0 && chat.current !== id ? conv.readSeq : null;
  chat.current = id;
  header.membersShown = false;
  conv.scrollToEnd = true;
  history.replaceState(null, '', `#${encodeURIComponent(id)}`);
  byId('app').classList.add('conv-open');
  openedConversation(conv);
  invalidate('sidebar', 'conv');
  // Focused once drawn: the composer is inside the conversation, hidden until the next render.
  focusComposer = window.matchMedia('(min-width: 701px)').matches;
}

/** What an open conversation needs: its newest page, its members, the read marker. */
function openedConversation(conv) {
  if (!session.loggedIn) return;
  messageHistory.loadLatest(conv);
  if (conv.kind === 'dm' && conv.name !== chat.me) presenceWatch.watch(conv.name, onPresence);
  if (conv.kind === 'room' && chat.rooms.get(conv.name)?.joined) rooms.loadMembers(conv);
  reads.markRead(conv);
}

function closeConversation() {
  chat.current = null;
  history.replaceState(null, '', location.pathname);
  byId('app').classList.remove('conv-open');
  invalidate('sidebar', 'conv');
}

// ---------------------------------------------------------------------------------------------
// Rendering: parts of the page are marked dirty and redrawn together.

const dirty = new Set();
/** A conversation was opened: its message box takes the focus once it is shown. */
let focusComposer = false;
let flushScheduled = false;

function invalidate(...parts) {
  for (const part of parts) dirty.add(part);
  if (flushScheduled) return;
  flushScheduled = true;
  // requestAnimationFrame does not run in hidden tabs; the timer does (throttled).
  requestAnimationFrame(flush);
  setTimeout(flush, 100);
}

function flush() {
  if (!flushScheduled) return;
  flushScheduled = false;
  const parts = new Set(dirty);
  dirty.clear();
  if (!chat.me && !session.current) return;
  if (parts.has('status')) statusLine.render();
  if (parts.has('sidebar')) renderSidebar(sidebar);
  if (parts.has('conv')) renderConversation();
  if (focusComposer && !byId('conv').hidden) {
    focusComposer = false;
    byId('composer-text').focus({ preventScroll: true });
  }
}

function renderConversation() {
  const conv = chat.currentConv();
  byId('empty').hidden = Boolean(conv);
  byId('conv').hidden = !conv;
  if (!conv) return;
  const isMember = chat.joined(conv);
  header.render(conv, isMember);
  byId('composer').hidden = !isMember;
  byId('join-bar').hidden = isMember;
  timeline.render(conv);
  composer.renderMode(conv, isMember);
  byId('typing').textContent = typingText(conv);
}

// ---------------------------------------------------------------------------------------------
// Start

function wire() {
  notifier = new Notifier({ bell: byId('notify-button'), speaker: byId('sound-button'), onOpen: openConversation });
  session.wire();
  byId('back-button').addEventListener('click', closeConversation);
  header.wire();
  rooms.wire();
  byId('search').addEventListener('input', (event) => search.set(event.target.value));
  byId('search').addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      event.target.value = '';
      search.set('');
    }
  });
  composer.wire();
  timeline.wire();
  document.addEventListener('visibilitychange', () => {
    const conv = chat.currentConv();
    if (conv) reads.markRead(conv);
  });
  window.addEventListener('focus', () => {
    const conv = chat.currentConv();
    if (conv) reads.markRead(conv);
  });
  // The cursors are written in batches: write what is pending before the page goes away.
  window.addEventListener('pagehide', () => messageHistory.saveCursors());
}

function main() {
  wire();
  const stored = session.stored();
  if (!stored?.token) {
    session.showLogin();
    return;
  }
  // A session from an earlier visit: resume it, with the cursors and unsent messages kept.
  session.current = stored;
  chat.me = stored.user;
  loadKept(stored.user);
  session.showApp();
  const wanted = decodeURIComponent(location.hash.slice(1));
  if (/^(dm:[^:]+:[^:]+|room:[^:]+)$/.test(wanted)) {
    chat.current = wanted;
    chat.conversation(wanted).scrollToEnd = true;
    byId('app').classList.add('conv-open');
  }
  session.start();
  invalidate('status', 'sidebar', 'conv');
}

main();
