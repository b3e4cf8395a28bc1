// Switchboard's web client: the state of the chat (users, presence, rooms, conversations, cursors,
// outbox) kept from the server's frames, and the page drawn from that state.
//
// Every string that comes from a user (names, message texts) is put into the page as text
// (textContent, text nodes): never as HTML.

import { Connection } from './connection.js';
import { Gateway } from './gateway.js';
import { h, byId, setChildren, formatTime, formatDay } from './dom.js';
import { DeliveryReports, receiptOf, takePeerMarkers } from './receipts.js';
import { ActivityOrder, UserSearch, notePreview, renderSidebar, takeListing } from './sidebar.js';
import { showLimit } from './composer.js';
import { PresenceWatch, applyListed, applyRoomSize } from './presence.js';
import { captureAnchor, nearTop, restoreAnchor } from './scroll.js';
import { Notifier } from './notify.js';
import {
  applyChange,
  changeVersion,
  isChange,
  isNewerCopy,
  lastOwn,
  messageParts,
  modeBar,
  ownEntry,
  quoteOf,
} from './changes.js';
import { Moderation } from './moderation.js';

/** localStorage: `{token, user}` of the logged-in session. */
const SESSION_KEY = 'switchboard.session';
/** localStorage: `{user, cursors: {conv: seq}}`, the highest contiguous seq held per conversation. */
const CURSORS_KEY = 'switchboard.cursors';
/** sessionStorage (per tab, survives a reload): messages sent and not yet acknowledged. */
const OUTBOX_KEY = 'switchboard.outbox';
/** `typing` goes out at most this often while the user types. */
const TYPING_EVERY_MS = 2000;
/** How long "X is typing" stays up after the last `typing` event. */
const TYPING_SHOWN_MS = 4000;
const HISTORY_PAGE = 50;
/** Page size when fetching a gap forwards (the protocol's maximum). */
const FILL_PAGE = 200;
/** Send errors after which the same message is sent again (with the same key). */
const RETRYABLE_SEND_ERRORS = new Set(['store_unavailable', 'overloaded', 'rate_limited', 'internal', 'timeout']);

const ERROR_TEXT = {
  auth_failed: 'Wrong user name or password.',
  user_exists: 'That name is taken. Log in instead, or pick another name.',
  invalid_name: 'Names are 1–32 characters: a–z, 0–9, _ - and . (not first).',
  invalid_password: 'The password needs 6 to 1024 characters.',
  invalid_token: 'Your session has ended. Please log in again.',
  auth_method_disabled: 'Registration is turned off on this server.',
  room_exists: 'That room exists already: join it from the list.',
  not_a_member: 'You are not a member of this room.',
  text_too_long: 'The message is too long.',
  empty_text: 'The message is empty.',
  user_not_found: 'No such user.',
  room_not_found: 'No such room.',
  forbidden: 'You may not do that in this room.',
  banned: 'That user is banned from this room.',
  muted: 'You are muted in this room: you cannot write here.',
  blocked: 'This user blocks you: your message was not delivered.',
  disconnected: 'Not connected.',
  message_not_found: 'That message is not there any more.',
  message_deleted: 'That message was deleted.',
  not_allowed: 'You cannot change that message.',
  too_many_reactions: 'That message has too many reactions.',
};

function errorText(error) {
  if (error.code === 'login_throttled' && error.retryAfterMs) {
    return `Too many attempts: try again in ${Math.ceil(error.retryAfterMs / 1000)} s.`;
  }
  return ERROR_TEXT[error.code] ?? error.message ?? String(error);
}

// ---------------------------------------------------------------------------------------------
// State

const state = {
  /** `{token, user}` or null. */
  session: null,
  /** The logged-in user's name. */
  me: null,
  /** The node holding the connection, from `session.node`. */
  node: null,
  /** Presence: the online set, and the one being rebuilt from a new `online` list. */
  online: new Set(),
  onlineNext: null,
  /** name -> {name, members, joined} from `rooms`, kept up to date by membership events. */
  rooms: new Map(),
  /** conversation id -> Conversation (see `conversation`). */
  convs: new Map(),
  /** conversation id -> the highest seq up to which every message is held. */
  cursors: new Map(),
  /** key -> {key, conv, text, createdAt, failed} of sends not yet acknowledged. */
  outbox: new Map(),
  /** Conversations whose sync said `more: true`: paged after `synced`. */
  syncMore: [],
  /** The open conversation's id. */
  current: null,
  /** The room's member list is unfolded. */
  membersShown: false,
  /** Numbers the join/leave notices. */
  noticeCounter: 0,
  /** Replying to or editing a message: `{kind: 'reply' | 'edit', conv, message}`, or null. */
  mode: null,
};

let connection = null;
/** Whose presence this client asked about beyond its contacts. */
const presenceWatch = new PresenceWatch((frame) => connection.request(frame));
/** This device's `delivered` reports (receipts.js). */
const deliveries = new DeliveryReports((convId, seq) =>
  connection.request({ type: 'delivered', ...targetOf(conversation(convId)), seq }),
);
/** Picks the node of every connect; remembers nodes that just failed across connections. */
const gateway = new Gateway();
/** The people search (sidebar.js); the people it shows are watched while shown (presence.js). */
const search = new UserSearch(
  (frame) => connection.request(frame),
  () => invalidate('sidebar'),
  (users) => {
    applyListed(users, onPresence);
    presenceWatch.show(users.map((user) => user.user), onPresence, heardUnasked);
  },
);
/** The conversations in the server's activity order, kept live (sidebar.js). */
const activity = new ActivityOrder();
/** What the sidebar draws from and does on a click. */
const sidebar = {
  state,
  search,
  order: activity,
  dmId,
  activeTypers,
  openConversation: (id) => openConversation(id),
  joinRoom: (name) => joinRoom(name),
};

const moderation = new Moderation({
  state,
  request: (frame) => connection.request(frame),
  invalidate: (...parts) => invalidate(...parts),
  toast: (text) => showToast(text),
  errorText,
  conversation: (id) => conversation(id),
  refreshRooms: () => refreshRooms(),
  leftRoom: (conv) => leftRoom(conv),
});

function dmId(a, b) {
  return a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
}

/** The conversation with id `id`, created empty on first use. */
function conversation(id) {
  let conv = state.convs.get(id);
  if (conv) return conv;
  const [kind, first, second] = id.split(':');
  conv = {
    id,
    kind,
    /** The room's name, or the other user of a private conversation (yourself for `dm:me:me`). */
    name: kind === 'room' ? first : first === state.me ? second : first,
    /** seq -> message: everything held, from any source, deduplicated by seq. */
    messages: new Map(),
    /** Join/leave notices: `{key, afterSeq, text}`; not durable, shown where they happened. */
    notices: [],
    /** Highest seq held. */
    maxSeq: 0,
    /** The newest message's `{seq, from, text}`, for the sidebar's preview (sidebar.js). */
    last: null,
    /** Newest seq known to exist (from `conversations`, messages, acks). */
    lastSeq: 0,
    /** The read marker when the conversation was opened with unread messages: "New messages" follow it. */
    newAfter: null,
    /** Our read marker, and what we last sent in `read`. */
    readSeq: 0,
    readSent: 0,
    /** Messages from others after the read marker. */
    unread: 0,
    /** The newest page was loaded; older pages exist; one is being loaded. */
    loadedLatest: false,
    hasOlder: true,
    loadingOlder: false,
    /** A `history after` loop is filling a gap. */
    filling: false,
    /** user -> time their "typing" expires. */
    typing: new Map(),
    /** Private conversations: the peer's read and delivered markers (see receipts.js). */
    peerRead: 0,
    peerDelivered: 0,
    /** Rooms: the member names (a Set), from `members` and membership events; null until loaded. */
    members: null,
    /** Rendered list items by key, reused across renders. */
    nodes: new Map(),
    lastTypingSent: 0,
    scrollToEnd: true,
  };
  state.convs.set(id, conv);
  return conv;
}

/** The `to` / `room` fields that address a conversation in requests. */
function targetOf(conv) {
  return conv.kind === 'room' ? { room: conv.name } : { to: conv.name };
}

function isViewing(conv) {
  return state.current === conv.id && document.visibilityState === 'visible';
}

// ---------------------------------------------------------------------------------------------
// Persistence

function loadJson(storage, key) {
  try {
    return JSON.parse(storage.getItem(key) ?? 'null');
  } catch {
    return null;
  }
}

function saveSession(session) {
  state.session = session;
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

let cursorsTimer = null;
/** Writes the cursors soon (batched); other tabs of the same user merge theirs by maximum. */
function saveCursorsSoon() {
  if (cursorsTimer) return;
  cursorsTimer = setTimeout(saveCursors, 300);
}

function saveCursors() {
  clearTimeout(cursorsTimer);
  cursorsTimer = null;
  if (!state.me) return;
  const stored = loadJson(localStorage, CURSORS_KEY);
  const merged = stored && stored.user === state.me ? { ...stored.cursors } : {};
  for (const [conv, seq] of state.cursors) merged[conv] = Math.max(seq, merged[conv] ?? 0);
  localStorage.setItem(CURSORS_KEY, JSON.stringify({ user: state.me, cursors: merged }));
}

function loadCursors(user) {
  const stored = loadJson(localStorage, CURSORS_KEY);
  state.cursors = new Map(stored && stored.user === user ? Object.entries(stored.cursors) : []);
}

function saveOutbox() {
  const entries = [...state.outbox.values()].map(({ key, conv, text, createdAt, failed }) => ({
    key,
    conv,
    text,
    createdAt,
    failed,
  }));
  sessionStorage.setItem(OUTBOX_KEY, JSON.stringify({ user: state.me, entries }));
}

function loadOutbox(user) {
  const stored = loadJson(sessionStorage, OUTBOX_KEY);
  state.outbox = new Map();
  if (!stored || stored.user !== user) return;
  for (const entry of stored.entries) state.outbox.set(entry.key, { ...entry, inFlight: false });
}

// ---------------------------------------------------------------------------------------------
// Messages, cursors and gaps

/**
 * Adds messages of one conversation from any source (live, sync, history, join, ack), dropping
 * those already held (same seq). `pickup`: when the conversation has no cursor yet, these
 * messages start it (everything from the first of them on is held); `history before` pages pass
 * false, they are older than what is held.
 */
/**
 * A message of ours carrying the key of a pending send (its ack was lost to a reconnect): the send
 * is done, so it must neither show twice nor be sent again.
 */
function settleOutbox(key) {
  const entry = state.outbox.get(key);
  if (!entry || entry.inFlight) return;
  state.outbox.delete(key);
  saveOutbox();
}

function ingest(convId, messages, { pickup = true } = {}) {
  const conv = conversation(convId);
  let added = 0;
  let minSeq = Infinity;
  for (const message of messages) {
    minSeq = Math.min(minSeq, message.seq);
    if (message.from === state.me && message.key) settleOutbox(message.key);
    const held = conv.messages.get(message.seq);
    if (held) {
      // A newer copy (from `history`) of a message changed since: its current state.
      if (isNewerCopy(held, message)) {
        conv.messages.set(message.seq, message);
        added += 1;
      }
      continue;
    }
    conv.messages.set(message.seq, message);
    added += 1;
    if (isChange(message)) {
      applyChange(conv.messages, message);
      conv.maxSeq = Math.max(conv.maxSeq, message.seq);
      conv.lastSeq = Math.max(conv.lastSeq, message.seq);
      continue;
    }
    if (message.from !== state.me && conv.kind === 'dm' && connection?.loggedIn) deliveries.note(conv.id, message.seq);
    if (message.seq > conv.lastSeq) {
      if (message.from !== state.me && message.seq > conv.readSeq) conv.unread += 1;
      conv.lastSeq = message.seq;
      activity.moveToTop(conv.id);
    }
    conv.maxSeq = Math.max(conv.maxSeq, message.seq);
    conv.typing.delete(message.from);
    notePreview(conv, message);
  }
  if (messages.length > 0) advanceCursor(conv, pickup ? minSeq - 1 : undefined);
  if (added > 0) {
    invalidate('sidebar');
    if (conv.id === state.current) {
      invalidate('conv');
      markRead(conv);
    }
  }
  return added;
}

/** Moves the cursor over the messages held without a hole, and fetches a hole when there is one. */
function advanceCursor(conv, pickupFrom) {
  let cursor = state.cursors.get(conv.id);
  if (cursor === undefined) {
    if (pickupFrom === undefined) return;
    cursor = pickupFrom;
  }
  const before = cursor;
  while (conv.messages.has(cursor + 1)) cursor += 1;
  if (cursor !== before || !state.cursors.has(conv.id)) {
    state.cursors.set(conv.id, cursor);
    saveCursorsSoon();
  }
  if (conv.maxSeq > cursor) fillForward(conv);
}

/**
 * Fetches what follows the cursor with `history after` until the conversation is whole: after a
 * gap in `seq`, after a sync that said `more: true`, or when the server knows newer messages.
 */
async function fillForward(conv) {
  if (conv.filling || !connection.loggedIn) return;
  if (conv.kind === 'room' && state.rooms.get(conv.name)?.joined === false) return;
  // While this runs, messages that arrive (and would start another fill) are covered by the loop.
  conv.filling = true;
  let progressed = false;
  try {
    for (;;) {
      const cursor = state.cursors.get(conv.id);
      if (cursor === undefined) break;
      const page = await connection.request({ type: 'history', ...targetOf(conv), after: cursor, limit: FILL_PAGE });
      ingest(conv.id, page.messages);
      if ((state.cursors.get(conv.id) ?? 0) <= cursor) break;
      progressed = true;
      if (!page.has_more) break;
    }
  } catch (error) {
    // Disconnected: the resume with cursors recovers it. Anything else: leave it.
    if (error.code !== 'disconnected') console.warn('filling', conv.id, error);
  } finally {
    conv.filling = false;
  }
  // A message that arrived during the last page, after a hole of its own.
  const cursor = state.cursors.get(conv.id);
  if (progressed && cursor !== undefined && conv.maxSeq > cursor) fillForward(conv);
}

/** The newest page of a conversation, when it is first opened. */
async function loadLatest(conv) {
  if (conv.loadedLatest || conv.loadingOlder || !connection.loggedIn) return;
  if (conv.kind === 'room' && !state.rooms.get(conv.name)?.joined) return;
  conv.loadingOlder = true;
  invalidate('conv');
  try {
    const page = await connection.request({ type: 'history', ...targetOf(conv), limit: HISTORY_PAGE });
    conv.loadedLatest = true;
    conv.hasOlder = page.has_more;
    ingest(conv.id, page.messages);
  } catch (error) {
    if (error.code !== 'disconnected') showToast(errorText(error));
  } finally {
    conv.loadingOlder = false;
    invalidate('conv');
  }
}

/** The page before the oldest message held (scrolling up). */
async function loadOlder(conv) {
  if (!conv.loadedLatest) return loadLatest(conv);
  if (!conv.hasOlder || conv.loadingOlder || !connection.loggedIn) return;
  const oldest = Math.min(...conv.messages.keys());
  if (!Number.isFinite(oldest) || oldest <= 1) {
    conv.hasOlder = false;
    invalidate('conv');
    return;
  }
  conv.loadingOlder = true;
  invalidate('conv');
  try {
    const page = await connection.request({ type: 'history', ...targetOf(conv), before: oldest, limit: HISTORY_PAGE });
    conv.hasOlder = page.has_more;
    ingest(conv.id, page.messages, { pickup: false });
  } catch (error) {
    if (error.code !== 'disconnected') showToast(errorText(error));
  } finally {
    conv.loadingOlder = false;
    invalidate('conv');
  }
}

/** Tells the server (and our other devices) that the open conversation was read. */
function markRead(conv) {
  if (!isViewing(conv) || !connection?.loggedIn) return;
  if (conv.kind === 'room' && !state.rooms.get(conv.name)?.joined) return;
  const seq = conv.maxSeq;
  if (conv.unread !== 0 || conv.readSeq < seq) {
    conv.unread = 0;
    conv.readSeq = Math.max(conv.readSeq, seq);
    invalidate('sidebar');
  }
  if (seq <= conv.readSent) return;
  conv.readSent = seq;
  connection.request({ type: 'read', ...targetOf(conv), seq }).catch((error) => {
    if (error.code !== 'disconnected') console.warn('read', error);
    if (conv.readSent === seq) conv.readSent = 0;
  });
}

// ---------------------------------------------------------------------------------------------
// Sending

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Pages served over plain http from another host are not a secure context: no randomUUID.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function sendMessage(conv, text, replyTo = null) {
  const entry = { key: newKey(), conv: conv.id, text, replyTo, createdAt: Date.now(), failed: null, inFlight: false };
  state.outbox.set(entry.key, entry);
  saveOutbox();
  conv.scrollToEnd = true;
  invalidate('conv');
  transmit(entry);
}

/** Sends an outbox entry (again, with the same key); the ack turns it into a message. */
async function transmit(entry) {
  if (entry.inFlight || entry.failed || !connection.loggedIn) return;
  const conv = conversation(entry.conv);
  entry.inFlight = true;
  try {
    const frame = { type: 'send', ...targetOf(conv), text: entry.text, key: entry.key };
    if (entry.replyTo) frame.reply_to = entry.replyTo;
    const ack = await connection.request(frame);
    state.outbox.delete(entry.key);
    saveOutbox();
    const message = { conv: ack.conv, id: ack.id, seq: ack.seq, ts: ack.ts, from: state.me, text: entry.text };
    if (entry.replyTo) {
      message.reply_to = entry.replyTo;
      message.reply = quoteOf(conv.messages.get(entry.replyTo));
    }
    if (conv.kind === 'room') message.room = conv.name;
    else message.to = conv.name;
    ingest(ack.conv, [message]);
    invalidate('conv');
  } catch (error) {
    if (error.code === 'disconnected') return; // resent after the next `synced`
    if (RETRYABLE_SEND_ERRORS.has(error.code)) {
      const delay = error.retryAfterMs ?? 2000;
      setTimeout(() => state.outbox.get(entry.key) === entry && transmit(entry), delay);
      return;
    }
    // Sent again unchanged it would fail the same way (too long, not a member...): the page offers
    // to edit it instead of a retry.
    entry.failed = errorText(error);
    saveOutbox();
    invalidate('conv');
  } finally {
    entry.inFlight = false;
  }
}

/** A send the server refused: its text goes back into the composer, to be changed and sent anew. */
function editFailed(entry) {
  state.outbox.delete(entry.key);
  saveOutbox();
  if (state.current !== entry.conv) openConversation(entry.conv);
  const textarea = byId('composer-text');
  textarea.value = entry.text;
  onComposerInput();
  textarea.focus();
  invalidate('conv');
}

function resendOutbox() {
  const entries = [...state.outbox.values()].sort((a, b) => a.createdAt - b.createdAt);
  for (const entry of entries) transmit(entry);
}

// ---------------------------------------------------------------------------------------------
// Server frames

function loginFrame() {
  if (!state.session) return null;
  return { type: 'resume', token: state.session.token, cursors: Object.fromEntries(state.cursors) };
}

function onSession(session) {
  if (state.me !== session.user) {
    if (state.me !== null) resetChat();
    state.me = session.user;
    loadCursors(session.user);
    loadOutbox(session.user);
  }
  state.node = session.node;
  saveSession({ token: session.token, user: session.user });
  state.syncMore = [];
  showApp();
  invalidate('sidebar', 'conv', 'status');
}

function onFrame(frame) {
  switch (frame.type) {
    case 'message':
      if (ingest(frame.conv, [frame]) > 0 && frame.from !== state.me && !isChange(frame)) notifyMessage(frame);
      break;
    case 'sync':
      // A long summary comes in several `sync` frames.
      for (const entry of frame.conversations) {
        if (entry.more) state.syncMore.push(entry.conv);
        takePeerMarkers(conversation(entry.conv), entry);
      }
      invalidate('conv');
      break;
    case 'synced':
      onSynced();
      break;
    case 'online':
      onOnlineList(frame);
      break;
    case 'user_online':
    case 'user_offline':
      onPresence(frame.user, frame.type === 'user_online');
      break;
    case 'typing':
      onTyping(frame);
      break;
    case 'read':
      onRead(frame);
      break;
    case 'delivered':
      if (frame.user !== state.me) {
        const conv = conversation(frame.conv);
        conv.peerDelivered = Math.max(conv.peerDelivered, frame.seq);
        if (conv.id === state.current) invalidate('conv');
      }
      break;
    case 'member_joined':
    case 'member_left':
      onMembership(frame.room, frame.user, frame.type === 'member_joined');
      break;
    case 'room_size':
      if (state.rooms.has(frame.room)) {
        applyRoomSize(state.rooms.get(frame.room), frame);
        invalidate('sidebar', 'conv');
      }
      break;
    case 'room_created':
      onRoomCreated(frame.room);
      break;
    case 'invited':
    case 'removed':
    case 'role_changed':
    case 'mute_changed':
      moderation.onEvent(frame);
      break;
    case 'rooms_created':
      // More rooms than the server announces one by one: list them again.
      refreshRooms();
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
  const conv = conversation(frame.conv);
  notifier.message(conv.id, conv.kind === 'room' ? `${frame.from} in # ${conv.name}` : frame.from, frame);
}

/** Everything missed has arrived: page the rest, refresh lists, resend the outbox. */
function onSynced() {
  for (const convId of state.syncMore) fillForward(conversation(convId));
  state.syncMore = [];
  resendOutbox();
  presenceWatch.rewatch(onPresence);
  refreshRooms();
  refreshConversations();
  moderation.loadBlocked();
  // Rooms are opened once the room list says whether we are a member (refreshRooms).
  const conv = state.current && state.convs.get(state.current);
  if (conv && conv.kind === 'dm') openedConversation(conv);
}

/** Presence is a set: a new list replaces it when complete; events apply to both. */
function onOnlineList(frame) {
  if (!state.onlineNext) state.onlineNext = new Set();
  for (const user of frame.users) state.onlineNext.add(user);
  if (frame.done) {
    state.online = state.onlineNext;
    state.onlineNext = null;
    invalidate('sidebar', 'conv');
  }
}

/**
 * Whether the server tells us about `user` without a `watch`, or a list shows them: yourself,
 * contacts (a private conversation with messages), members of the open room.
 */
function heardUnasked(user) {
  if (user === state.me || (state.convs.get(dmId(state.me, user))?.lastSeq ?? 0) > 0) return true;
  const open = state.current && state.convs.get(state.current);
  return Boolean(open?.kind === 'room' && open.members?.has(user));
}

function onPresence(user, online) {
  for (const set of [state.online, state.onlineNext]) {
    if (!set) continue;
    if (online) set.add(user);
    else set.delete(user);
  }
  invalidate('sidebar', 'conv');
}

function onTyping(frame) {
  if (frame.from === state.me) return;
  const conv = conversation(frame.conv);
  conv.typing.set(frame.from, Date.now() + TYPING_SHOWN_MS);
  invalidate('sidebar');
  if (conv.id === state.current) invalidate('conv');
  scheduleTypingExpiry();
}

let typingTimer = null;
/** Redraws when the earliest "is typing" expires. */
function scheduleTypingExpiry() {
  clearTimeout(typingTimer);
  let earliest = Infinity;
  for (const conv of state.convs.values()) for (const until of conv.typing.values()) earliest = Math.min(earliest, until);
  if (earliest === Infinity) return;
  typingTimer = setTimeout(
    () => {
      const now = Date.now();
      for (const conv of state.convs.values()) {
        for (const [user, until] of conv.typing) if (until <= now) conv.typing.delete(user);
      }
      invalidate('sidebar', 'conv');
      scheduleTypingExpiry();
    },
    Math.max(50, earliest - Date.now()),
  );
}

function onRead(frame) {
  const conv = conversation(frame.conv);
  if (frame.user === state.me) {
    // Read on another of our devices.
    conv.readSeq = Math.max(conv.readSeq, frame.seq);
    conv.readSent = Math.max(conv.readSent, frame.seq);
    conv.unread = unreadHeld(conv);
    invalidate('sidebar');
  } else if (conv.kind === 'dm') {
    takePeerMarkers(conv, { peer_read_seq: frame.seq });
    if (conv.id === state.current) invalidate('conv');
  }
}

/** Messages from others after the read marker among those held; changes do not count. */
function unreadHeld(conv) {
  let unread = 0;
  for (const message of conv.messages.values()) {
    if (message.seq > conv.readSeq && message.from !== state.me && !isChange(message)) unread += 1;
  }
  return unread;
}

function onMembership(roomName, user, joined) {
  const conv = conversation(`room:${roomName}`);
  let room = state.rooms.get(roomName);
  if (!room) {
    room = { name: roomName, members: 0, joined: false };
    state.rooms.set(roomName, room);
  }
  const wasMember = conv.members ? conv.members.has(user) : user === state.me ? room.joined : !joined;
  if (joined !== wasMember) room.members = Math.max(0, room.members + (joined ? 1 : -1));
  if (conv.members) {
    if (joined) conv.members.add(user);
    else conv.members.delete(user);
  }
  if (user === state.me) {
    room.joined = joined;
    if (!joined) {
      state.cursors.delete(conv.id);
      conv.loadedLatest = false;
    }
  }
  if (joined !== wasMember) {
    const who = user === state.me ? 'You' : user;
    conv.notices.push({
      key: `n${++state.noticeCounter}`,
      afterSeq: conv.maxSeq,
      text: `${who} ${joined ? 'joined' : 'left'} the room`,
    });
  }
  invalidate('sidebar');
  if (conv.id === state.current) invalidate('conv');
}

/** Someone created a room (its creator is its one member): it joins the list, not joined. */
function onRoomCreated(name) {
  if (state.rooms.has(name)) return;
  state.rooms.set(name, { name, members: 1, joined: false });
  invalidate('sidebar');
}

// ---------------------------------------------------------------------------------------------
// Lists

// Listings come in pages: asks for each next one until the answer's `next_cursor` is null.
async function eachPage(request, onPage) {
  let cursor = null;
  do {
    const page = await connection.request(cursor ? { ...request, cursor } : request);
    onPage(page);
    cursor = page.next_cursor;
  } while (cursor);
}

async function refreshRooms() {
  try {
    const fresh = new Map();
    await eachPage({ type: 'rooms' }, (page) => {
      for (const room of page.rooms) {
        fresh.set(room.name, { name: room.name, members: room.members, joined: room.joined, private: room.private, role: room.role });
      }
    });
    state.rooms = fresh;
    invalidate('sidebar', 'conv');
    const conv = state.current && state.convs.get(state.current);
    if (conv && conv.kind === 'room' && fresh.get(conv.name)?.joined) openedConversation(conv);
  } catch (error) {
    if (error.code !== 'disconnected') console.warn('rooms', error);
  }
}

async function refreshConversations() {
  const listing = activity.begin();
  try {
    await eachPage({ type: 'conversations' }, (page) => {
      activity.page(listing, page.conversations);
      for (const entry of page.conversations) {
        const conv = conversation(entry.conv);
        // Messages from others that arrived after the server's snapshot still count.
        let newer = 0;
        for (const message of conv.messages.values()) {
          if (message.seq > entry.last_seq && message.from !== state.me && !isChange(message)) newer += 1;
        }
        conv.readSeq = Math.max(conv.readSeq, entry.read_seq);
        conv.lastSeq = Math.max(conv.lastSeq, entry.last_seq);
        takePeerMarkers(conv, entry);
        takeListing(conv, entry);
        if (conv.id === state.current) invalidate('conv');
        conv.unread = isViewing(conv) ? 0 : entry.unread + newer;
        const cursor = state.cursors.get(conv.id);
        // The server has messages after our cursor that never reached us: fetch them.
        if (cursor !== undefined && entry.last_seq > cursor) fillForward(conv);
        if (isViewing(conv)) markRead(conv);
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

async function loadMembers(conv) {
  try {
    const members = new Set();
    moderation.resetMembers(conv);
    await eachPage({ type: 'members', room: conv.name }, (page) => {
      for (const member of page.members) {
        members.add(member.user);
      }
      moderation.takeMembers(conv, page.members);
      applyListed(page.members, onPresence);
    });
    conv.members = members;
    const room = state.rooms.get(conv.name);
    if (room) room.members = conv.members.size;
    invalidate('conv', 'sidebar');
  } catch (error) {
    if (error.code !== 'disconnected') console.warn('members', error);
  }
}

// ---------------------------------------------------------------------------------------------
// User actions

function openConversation(id) {
  const conv = conversation(id);
  // Opened with unread messages: a line marks where they start, until another conversation opens.
  conv.newAfter = conv.unread > 0 && state.current !== id ? conv.readSeq : null;
  state.current = id;
  state.membersShown = false;
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
  if (!connection.loggedIn) return;
  loadLatest(conv);
  if (conv.kind === 'dm' && conv.name !== state.me) presenceWatch.watch(conv.name, onPresence);
  if (conv.kind === 'room' && state.rooms.get(conv.name)?.joined) loadMembers(conv);
  markRead(conv);
}

function closeConversation() {
  state.current = null;
  history.replaceState(null, '', location.pathname);
  byId('app').classList.remove('conv-open');
  invalidate('sidebar', 'conv');
}

async function joinRoom(name) {
  const conv = conversation(`room:${name}`);
  try {
    const answer = await connection.request({ type: 'join', room: name });
    onRoomAnswer(answer);
  } catch (error) {
    showToast(errorText(error));
    return;
  }
  if (state.current !== conv.id) openConversation(conv.id);
}

/** The answer to `join` / `create_room`: the room, joined, with its recent history. */
function onRoomAnswer(answer) {
  const room = state.rooms.get(answer.room) ?? { name: answer.room, members: 0, joined: false };
  if (!room.joined) room.members = Math.max(room.members, 1);
  room.joined = true;
  room.private = answer.private;
  room.role = answer.role;
  state.rooms.set(answer.room, room);
  const conv = conversation(`room:${answer.room}`);
  conv.loadedLatest = true;
  if (answer.history.length === 0) {
    // Nothing before the join: everything from seq 1 on is held.
    conv.hasOlder = false;
    if (!state.cursors.has(conv.id)) {
      state.cursors.set(conv.id, 0);
      saveCursorsSoon();
    }
  } else {
    conv.hasOlder = answer.history[0].seq > 1;
    ingest(conv.id, answer.history);
  }
  loadMembers(conv);
  invalidate('sidebar', 'conv');
}

async function createRoom(name) {
  const errorLine = byId('room-error');
  errorLine.textContent = '';
  try {
    const answer = await connection.request({ type: 'create_room', room: name, private: byId('room-private').checked });
    onRoomAnswer(answer);
    byId('room-name').value = '';
    byId('room-private').checked = false;
    openConversation(`room:${answer.room}`);
  } catch (error) {
    errorLine.textContent = errorText(error);
    if (error.code === 'room_exists') refreshRooms();
  }
}

async function leaveRoom(conv) {
  try {
    await connection.request({ type: 'leave', room: conv.name });
  } catch (error) {
    if (error.code !== 'not_a_member') {
      showToast(errorText(error));
      return;
    }
  }
  leftRoom(conv);
}

/** This user is out of the room (left it, or was removed). */
function leftRoom(conv) {
  const room = state.rooms.get(conv.name);
  if (room && room.joined) {
    room.joined = false;
    room.members = Math.max(0, room.members - 1);
  }
  state.cursors.delete(conv.id);
  saveCursorsSoon();
  conv.members = null;
  conv.loadedLatest = false;
  invalidate('sidebar', 'conv');
}

function onComposerInput() {
  const textarea = byId('composer-text');
  textarea.style.height = 'auto';
  textarea.style.height = `${Math.min(textarea.scrollHeight, 160)}px`;
  showLimit(byId('composer-limit'), byId('send-button'), textarea.value, connection?.maxTextChars ?? 4000);
  const conv = state.current && state.convs.get(state.current);
  if (!conv || textarea.value.trim() === '') return;
  const now = Date.now();
  if (now - conv.lastTypingSent < TYPING_EVERY_MS) return;
  if (connection.send({ type: 'typing', ...targetOf(conv) })) conv.lastTypingSent = now;
}

/** What the per-message menu and the quotes and reactions of a message do. */
function messageActions(conv) {
  const role = conv.kind === 'room' ? state.rooms.get(conv.name)?.role : null;
  return {
    // A room's owner and moderators may delete anyone's message there.
    moderates: role === 'owner' || role === 'moderator',
    reply: (message) => setMode({ kind: 'reply', conv: conv.id, message }),
    edit: (message) => startEditing(conv, message),
    remove: (message) => changeMessage(conv, { type: 'delete', seq: message.seq }),
    react: (message, emoji) => changeMessage(conv, { type: 'react', seq: message.seq, emoji }),
    jump: (seq) => {
      const target = byId('message-list').querySelector(`li[data-seq="${seq}"]`);
      if (!target) return;
      target.scrollIntoView({ block: 'center' });
      target.classList.add('flash');
      setTimeout(() => target.classList.remove('flash'), 1200);
    },
  };
}

/** Sends an `edit`, `delete` or `react`; the change shows when its entry comes back. */
async function changeMessage(conv, frame) {
  try {
    const ack = await connection.request({ ...frame, ...targetOf(conv) });
    // The connection that made a change gets only the ack: apply the change here.
    ingest(conv.id, [ownEntry(frame, ack, state.me, conv.messages)]);
    invalidate('conv');
  } catch (error) {
    showToast(errorText(error));
  }
}

function setMode(mode) {
  state.mode = mode;
  invalidate('conv');
  byId('composer-text').focus();
}

function startEditing(conv, message) {
  const textarea = byId('composer-text');
  textarea.value = message.text;
  onComposerInput();
  setMode({ kind: 'edit', conv: conv.id, message });
}

function cancelMode() {
  if (state.mode?.kind === 'edit') byId('composer-text').value = '';
  state.mode = null;
  onComposerInput();
  invalidate('conv');
}

/** Up in an empty message box edits one's last message. */
function editLastOwn(conv) {
  const last = lastOwn(conv.messages, state.me);
  if (last) startEditing(conv, last);
  return Boolean(last);
}

function onComposerSubmit(event) {
  event.preventDefault();
  const conv = state.current && state.convs.get(state.current);
  const textarea = byId('composer-text');
  const text = textarea.value;
  if (!conv || text.trim() === '') return;
  // Over the limit: the warning is up and the text stays in the box to be shortened.
  if (!showLimit(byId('composer-limit'), byId('send-button'), text, connection?.maxTextChars ?? 4000)) return;
  const mode = state.mode?.conv === conv.id ? state.mode : null;
  state.mode = null;
  if (mode?.kind === 'edit') changeMessage(conv, { type: 'edit', seq: mode.message.seq, text });
  else sendMessage(conv, text, mode?.kind === 'reply' ? mode.message.seq : null);
  conv.lastTypingSent = 0;
  textarea.value = '';
  onComposerInput();
  textarea.focus();
}

// ---------------------------------------------------------------------------------------------
// Login, logout, session

function showLogin(message = '') {
  byId('app').hidden = true;
  byId('login').hidden = false;
  byId('login-error').textContent = message;
  byId('login-status').textContent = '';
  setLoginBusy(false);
  document.title = 'Switchboard';
  byId('login-username').focus();
}

function showApp() {
  byId('login').hidden = true;
  byId('app').hidden = false;
}

function setLoginBusy(busy) {
  for (const id of ['login-button', 'register-button', 'login-username', 'login-password']) byId(id).disabled = busy;
}

/** Logs in (or registers) on a connection of its own; on success it becomes the live connection. */
function submitLogin(kind) {
  const username = byId('login-username').value.trim().toLowerCase();
  const password = byId('login-password').value;
  const errorLine = byId('login-error');
  errorLine.textContent = '';
  if (!username) {
    errorLine.textContent = 'Enter a user name.';
    return;
  }
  if (kind === 'register' && password.length < 6) {
    errorLine.textContent = ERROR_TEXT.invalid_password;
    return;
  }
  setLoginBusy(true);
  byId('login-status').textContent = 'Connecting…';
  let frame = { type: kind, username, password };
  startConnection({
    loginFrame: () => {
      // The first connect sends the credentials; any later reconnect resumes with the token.
      const first = frame;
      frame = null;
      return first ?? loginFrame();
    },
    onLoginError: (error) => {
      // After the first login succeeded, reconnects resume: their errors are handled as usual.
      if (state.session) return onResumeError(error);
      setLoginBusy(false);
      byId('login-status').textContent = '';
      errorLine.textContent = errorText(error);
      return 'stop';
    },
  });
}

function startConnection(overrides = {}) {
  connection?.stop();
  connection = new Connection(gateway, {
    loginFrame,
    onSession,
    onFrame,
    onLoginError: onResumeError,
    onStatus: () => invalidate('status'),
    onStopped: (reason) => {
      if (reason === 'incompatible') showFatal('This server speaks another protocol version. Reload the page.');
    },
    ...overrides,
  });
  connection.start();
}

/** A `resume` failed: an ended session shows the login form, anything else is retried. */
function onResumeError(error) {
  if (error.code === 'invalid_token') {
    forgetSession();
    showLogin(ERROR_TEXT.invalid_token);
    return 'stop';
  }
  // store_unavailable, login_throttled (after retry_after_ms), internal: try again later.
  return 'retry';
}

/** Clears everything kept about the session, in this tab and in storage. */
function forgetSession() {
  localStorage.removeItem(SESSION_KEY);
  localStorage.removeItem(CURSORS_KEY);
  sessionStorage.removeItem(OUTBOX_KEY);
  state.session = null;
  resetChat();
  state.me = null;
}

function resetChat() {
  byId('search').value = '';
  search.set('');
  state.online = new Set();
  state.onlineNext = null;
  state.rooms = new Map();
  state.convs = new Map();
  state.cursors = new Map();
  state.outbox = new Map();
  state.current = null;
  byId('app').classList.remove('conv-open');
  history.replaceState(null, '', location.pathname);
}

async function logout() {
  const current = connection;
  if (current?.loggedIn) {
    try {
      await current.request({ type: 'logout' }, { timeoutMs: 3000 });
    } catch (error) {
      console.warn('logout', error);
    }
  }
  current?.stop();
  forgetSession();
  showLogin();
}

/** Another tab logged out (the token is gone from storage): follow. Or logged in: adopt it. */
function onStorage(event) {
  if (event.key !== SESSION_KEY && event.key !== null) return;
  const stored = loadJson(localStorage, SESSION_KEY);
  if (state.session && !stored) {
    connection?.stop();
    forgetSession();
    showLogin('You logged out in another tab.');
  } else if (!state.session && stored && !byId('login').hidden) {
    state.session = stored;
    loadCursors(stored.user);
    loadOutbox(stored.user);
    showApp();
    startConnection();
  }
}

function showFatal(text) {
  byId('status-text').textContent = text;
  byId('status').dataset.state = 'error';
}

let toastTimer = null;
function showToast(text) {
  let toast = document.getElementById('toast');
  if (!toast) {
    toast = h('div', { id: 'toast', class: 'toast', role: 'alert' });
    document.body.append(toast);
  }
  toast.textContent = text;
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (toast.hidden = true), 4000);
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
  if (!state.me && !state.session) return;
  if (parts.has('status')) renderStatus();
  if (parts.has('sidebar')) renderSidebar(sidebar);
  if (parts.has('conv')) renderConversation();
  if (focusComposer && !byId('conv').hidden) {
    focusComposer = false;
    byId('composer-text').focus({ preventScroll: true });
  }
}

let statusTimer = null;
function renderStatus() {
  const status = connection?.status ?? { state: 'idle' };
  const line = byId('status');
  const text = byId('status-text');
  const retry = byId('status-retry');
  clearTimeout(statusTimer);
  line.dataset.state = status.state;
  retry.hidden = true;
  text.title = '';
  switch (status.state) {
    case 'ready':
    case 'syncing':
      // People want to know they are connected; which node, and where, is for whoever asks.
      text.textContent = status.state === 'ready' ? 'Connected' : 'Catching up…';
      text.title = `node ${status.node} · ${status.url ?? ''}`;
      text.dataset.node = status.node ?? '';
      text.dataset.url = status.url ?? '';
      break;
    case 'connecting':
      // Any close seen before (a socket closed with no code reports 0) makes this a reconnect.
      text.textContent = status.closeCode !== null ? 'reconnecting…' : 'connecting…';
      break;
    case 'waiting': {
      const seconds = Math.max(1, Math.ceil((status.retryAt - Date.now()) / 1000));
      text.textContent = `reconnecting in ${seconds} s…`;
      retry.hidden = false;
      statusTimer = setTimeout(renderStatus, 250);
      break;
    }
    case 'offline':
      text.textContent = 'offline';
      retry.hidden = false;
      break;
    default:
      text.textContent = 'not connected';
  }
  byId('me-name').textContent = state.me ?? '';
}

function activeTypers(conv) {
  const now = Date.now();
  return [...conv.typing].filter(([, until]) => until > now).map(([user]) => user);
}

function renderConversation() {
  const conv = state.current && state.convs.get(state.current);
  byId('empty').hidden = Boolean(conv);
  byId('conv').hidden = !conv;
  if (!conv) return;
  const room = conv.kind === 'room' ? state.rooms.get(conv.name) : null;
  const isMember = joined(conv);

  // Header.
  if (conv.kind === 'room') {
    byId('conv-name').textContent = room?.private ? conv.name : `# ${conv.name}`;
    const members = conv.members ? [...conv.members] : [];
    // Big rooms say how many are online (`room_size`); small ones: the members we hear about.
    const online = room?.online ?? members.filter((user) => state.online.has(user)).length;
    byId('conv-sub').textContent = isMember
      ? `${room?.members ?? members.length} members · ${online} online`
      : 'not a member';
  } else {
    const self = conv.name === state.me;
    byId('conv-name').textContent = self ? `${conv.name} (you)` : conv.name;
    byId('conv-sub').textContent = self ? 'notes to yourself' : state.online.has(conv.name) ? 'online' : 'offline';
  }
  byId('conv-lock').hidden = !room?.private;
  const dot = byId('conv-dot');
  dot.hidden = conv.kind !== 'dm';
  dot.className = `dot ${state.online.has(conv.name) ? 'online' : 'offline'}`;
  byId('members-button').hidden = conv.kind !== 'room' || !isMember;
  byId('members-button').setAttribute('aria-expanded', String(state.membersShown));
  byId('leave-button').hidden = conv.kind !== 'room' || !isMember;
  const blockButton = byId('block-button');
  blockButton.hidden = conv.kind !== 'dm' || conv.name === state.me;
  blockButton.textContent = moderation.blocked.has(conv.name) ? 'Unblock' : 'Block';
  byId('composer').hidden = !isMember;
  byId('join-bar').hidden = isMember;

  // Members.
  const membersList = byId('members');
  membersList.hidden = !(conv.kind === 'room' && isMember && state.membersShown);
  byId('invite-form').hidden = membersList.hidden || !moderation.mayInvite(conv);
  if (!membersList.hidden) {
    const members = conv.members ? [...conv.members].sort() : [];
    setChildren(
      membersList,
      members.map((user) =>
        h(
          'li',
          { class: 'member', dataset: { user } },
          h('span', { class: `dot ${state.online.has(user) ? 'online' : 'offline'}` }),
          h('span', { class: 'member-name', text: user === state.me ? `${user} (you)` : user }),
          ...moderation.memberTools(conv, user),
        ),
      ),
    );
  }

  renderMessages(conv);

  // Replying to or editing a message.
  const mode = state.mode?.conv === conv.id ? state.mode : null;
  byId('composer-mode').hidden = !mode || !isMember;
  setChildren(byId('composer-mode'), modeBar(mode, cancelMode));

  // Typing.
  const typers = activeTypers(conv);
  byId('typing').textContent =
    typers.length === 0
      ? ''
      : typers.length === 1
        ? `${typers[0]} is typing…`
        : typers.length === 2
          ? `${typers[0]} and ${typers[1]} are typing…`
          : 'several people are typing…';
}

function renderMessages(conv) {
  const box = byId('messages');
  const list = byId('message-list');
  const nearEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  // Keep the first visible message where it is when older ones are added above it.
  const anchor = !conv.scrollToEnd && !nearEnd && list.dataset.conv === conv.id ? captureAnchor(box, list) : null;

  const top = byId('history-top');
  if (conv.loadingOlder) top.textContent = 'Loading earlier messages…';
  else if (!joined(conv)) top.textContent = '';
  else if (!conv.hasOlder || (conv.loadedLatest && conv.messages.size === 0)) {
    top.textContent =
      conv.messages.size === 0 && !outboxOf(conv).length
        ? 'No messages yet. Say hi!'
        : conv.kind === 'room'
          ? `This is the beginning of # ${conv.name}.`
          : `This is the beginning of your conversation${conv.name === state.me ? '' : ` with ${conv.name}`}.`;
  } else top.textContent = '';

  const seqs = [...conv.messages.keys()].sort((a, b) => a - b);
  let lastOwnSeq = 0;
  for (const seq of seqs) {
    const message = conv.messages.get(seq);
    if (message.from === state.me && !isChange(message)) lastOwnSeq = seq;
  }

  const items = [];
  const notices = [...conv.notices];
  let previous = null;
  let previousDay = null;
  const daysShown = new Set();
  let newAfter = conv.newAfter;
  const pushNoticesUpTo = (seq) => {
    while (notices.length > 0 && notices[0].afterSeq <= seq) {
      const notice = notices.shift();
      items.push(cached(conv, `notice:${notice.key}`, 'n', () => h('li', { class: 'notice', text: notice.text })));
      previous = null;
    }
  };
  for (const seq of seqs) {
    const message = conv.messages.get(seq);
    if (isChange(message)) continue;
    const day = formatDay(message.ts);
    if (day !== previousDay) {
      // Keyed by the day, so that the separator stays the same node when an older page of the
      // same day arrives (by its first seq too if clocks made a day come back).
      const dayKey = daysShown.has(day) ? `day:${day}:${seq}` : `day:${day}`;
      daysShown.add(day);
      items.push(cached(conv, dayKey, 'd', () => h('li', { class: 'day', text: day })));
      previousDay = day;
      previous = null;
    }
    pushNoticesUpTo(seq - 1);
    if (newAfter !== null && seq > newAfter && message.from !== state.me) {
      items.push(cached(conv, `new:${newAfter}`, 'n', () => h('li', { class: 'new-line', text: 'New messages' })));
      newAfter = null;
      previous = null;
    }
    const continued = previous !== null && previous.from === message.from && message.ts - previous.ts < 5 * 60_000;
    const receipt = conv.kind === 'dm' && conv.name !== state.me && seq === lastOwnSeq ? receiptOf(conv, seq) : null;
    const version = `${continued}|${receipt}|${changeVersion(message)}`;
    items.push(cached(conv, `m:${seq}`, version, () => messageElement(conv, message, { continued, receipt })));
    previous = message;
  }
  pushNoticesUpTo(Infinity);
  for (const entry of outboxOf(conv)) {
    const version = `${entry.failed ?? 'pending'}`;
    items.push(cached(conv, `p:${entry.key}`, version, () => pendingElement(conv, entry)));
  }
  // Forget nodes no longer shown (acknowledged sends).
  const shown = new Set(items);
  for (const [key, record] of conv.nodes) if (!shown.has(record.node)) conv.nodes.delete(key);

  list.dataset.conv = conv.id;
  setChildren(list, items);

  if (conv.scrollToEnd || nearEnd) {
    box.scrollTop = box.scrollHeight;
    conv.scrollToEnd = false;
  } else {
    restoreAnchor(box, list, anchor);
  }
  // Not enough to scroll, or still at the top after a page came (no `scroll` event will come
  // there): load the next older page.
  const due = box.scrollHeight <= box.clientHeight + 40 || nearTop(box);
  if (due && conv.hasOlder && conv.loadedLatest && !conv.loadingOlder) loadOlder(conv);
}

function joined(conv) {
  return conv.kind !== 'room' || Boolean(state.rooms.get(conv.name)?.joined);
}

function outboxOf(conv) {
  return [...state.outbox.values()].filter((entry) => entry.conv === conv.id).sort((a, b) => a.createdAt - b.createdAt);
}

/** The list node for `key`, rebuilt when its `version` changed. */
function cached(conv, key, version, build) {
  const record = conv.nodes.get(key);
  if (record && record.version === version) return record.node;
  const node = build();
  conv.nodes.set(key, { version, node });
  return node;
}

function messageElement(conv, message, { continued, receipt }) {
  const mine = message.from === state.me;
  const parts = messageParts(message, state.me, messageActions(conv));
  return h(
    'li',
    {
      class: `msg ${mine ? 'mine' : 'theirs'}${continued ? ' continued' : ''}${message.deleted ? ' deleted' : ''}`,
      dataset: { seq: String(message.seq), from: message.from },
    },
    parts.menu,
    h(
      'div',
      { class: 'bubble' },
      !mine && !continued && conv.kind === 'room' ? h('span', { class: 'author', text: message.from }) : null,
      parts.quote,
      parts.text,
      parts.reactions,
      h(
        'span',
        { class: 'meta' },
        parts.edited,
        h('time', {
          datetime: new Date(message.ts).toISOString(),
          title: new Date(message.ts).toLocaleString([], { dateStyle: 'full', timeStyle: 'medium' }),
          text: formatTime(message.ts),
        }),
        receipt ? h('span', { class: `receipt ${receipt}`, text: receipt }) : null,
      ),
    ),
  );
}

function pendingElement(conv, entry) {
  const failed = Boolean(entry.failed);
  return h(
    'li',
    { class: `msg mine pending${failed ? ' failed' : ''}`, dataset: { key: entry.key } },
    h(
      'div',
      { class: 'bubble' },
      h('p', { class: 'text', text: entry.text }),
      h(
        'span',
        { class: 'meta' },
        h('span', { class: 'state', text: failed ? `not sent: ${entry.failed}` : 'sending…' }),
        failed
          ? h('button', {
              type: 'button',
              class: 'link',
              text: 'edit',
              on: { click: () => editFailed(entry) },
            })
          : null,
        failed
          ? h('button', {
              type: 'button',
              class: 'link',
              text: 'discard',
              on: {
                click: () => {
                  state.outbox.delete(entry.key);
                  saveOutbox();
                  invalidate('conv');
                },
              },
            })
          : null,
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Start

let notifier = null;

function wire() {
  notifier = new Notifier({ bell: byId('notify-button'), speaker: byId('sound-button'), onOpen: openConversation });
  byId('login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const kind = event.submitter?.value === 'register' ? 'register' : 'login';
    submitLogin(kind);
  });
  byId('logout-button').addEventListener('click', logout);
  byId('status-retry').addEventListener('click', () => connection?.retryNow());
  byId('back-button').addEventListener('click', closeConversation);
  byId('members-button').addEventListener('click', () => {
    state.membersShown = !state.membersShown;
    invalidate('conv');
  });
  byId('leave-button').addEventListener('click', () => {
    const conv = state.current && state.convs.get(state.current);
    if (conv && conv.kind === 'room') leaveRoom(conv);
  });
  byId('join-button').addEventListener('click', () => {
    const conv = state.current && state.convs.get(state.current);
    if (conv && conv.kind === 'room') joinRoom(conv.name);
  });
  byId('block-button').addEventListener('click', () => {
    const conv = state.current && state.convs.get(state.current);
    if (conv && conv.kind === 'dm') moderation.toggleBlock(conv.name);
  });
  byId('invite-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const conv = state.current && state.convs.get(state.current);
    const name = byId('invite-name').value.trim().toLowerCase();
    if (conv && conv.kind === 'room' && name && (await moderation.act('invite', conv.name, name))) {
      byId('invite-name').value = '';
    }
  });
  byId('room-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const name = byId('room-name').value.trim().toLowerCase();
    if (name) createRoom(name);
  });
  byId('search').addEventListener('input', (event) => search.set(event.target.value));
  byId('search').addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      event.target.value = '';
      search.set('');
    }
  });
  byId('rooms-refresh').addEventListener('click', () => connection?.loggedIn && refreshRooms());
  const textarea = byId('composer-text');
  textarea.addEventListener('input', onComposerInput);
  textarea.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      byId('composer').requestSubmit();
    } else if (event.key === 'ArrowUp' && textarea.value === '' && !state.mode) {
      const conv = state.current && state.convs.get(state.current);
      if (conv && editLastOwn(conv)) event.preventDefault();
    } else if (event.key === 'Escape' && state.mode) {
      cancelMode();
    }
  });
  byId('composer').addEventListener('submit', onComposerSubmit);
  byId('messages').addEventListener('scroll', () => {
    const conv = state.current && state.convs.get(state.current);
    if (conv && nearTop(byId('messages'))) loadOlder(conv);
  });
  document.addEventListener('visibilitychange', () => {
    const conv = state.current && state.convs.get(state.current);
    if (conv) markRead(conv);
  });
  window.addEventListener('focus', () => {
    const conv = state.current && state.convs.get(state.current);
    if (conv) markRead(conv);
  });
  window.addEventListener('storage', onStorage);
  // The cursors are written in batches: write what is pending before the page goes away.
  window.addEventListener('pagehide', saveCursors);
}

function main() {
  wire();
  const stored = loadJson(localStorage, SESSION_KEY);
  if (!stored?.token) {
    showLogin();
    return;
  }
  // A session from an earlier visit: resume it, with the cursors and unsent messages kept.
  state.session = stored;
  state.me = stored.user;
  loadCursors(stored.user);
  loadOutbox(stored.user);
  showApp();
  const wanted = decodeURIComponent(location.hash.slice(1));
  if (/^(dm:[^:]+:[^:]+|room:[^:]+)$/.test(wanted)) {
    state.current = wanted;
    conversation(wanted).scrollToEnd = true;
    byId('app').classList.add('conv-open');
  }
  startConnection();
  invalidate('status', 'sidebar', 'conv');
}

main();
