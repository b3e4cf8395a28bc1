// The messages held per conversation, and keeping them whole. Every message from any source (live,
// sync, history, a join's answer, an ack) goes through `ingest`, deduplicated by seq. The cursor, the
// highest seq up to which every message is held, moves over them; it is kept in localStorage and
// sent with the next `resume`, so the server sends only what is missing. A hole after the cursor is
// fetched with `history after`; older pages (scrolling up) with `history before`.

import { applyChange, isChange, isNewerCopy } from './changes.js';
import { targetOf } from './chat.js';
import { errorText } from './errors.js';
import { notePreview } from './sidebar.js';
import { loadJson } from './storage.js';

/** localStorage: `{user, cursors: {conv: seq}}`, the highest contiguous seq held per conversation. */
const CURSORS_KEY = 'switchboard.cursors';
const HISTORY_PAGE = 50;
/** Page size when fetching a gap forwards (the protocol's maximum). */
const FILL_PAGE = 200;

export class MessageHistory {
  /**
   * `app`: `{chat, server: {request(frame), loggedIn}, outbox: {settle(key)}, deliveries:
   * {note(convId, seq)}, activity: {moveToTop(convId)}, reads: {markRead(conv)}, invalidate(...parts),
   * toast(text)}`.
   */
  constructor(app) {
    this.app = app;
    /** conversation id -> the highest seq up to which every message is held. */
    this.cursors = new Map();
    /** Conversations whose sync said `more: true`: paged after `synced`. */
    this.syncMore = [];
    this.saveTimer = null;
  }

  // -------------------------------------------------------------------------------------------
  // Cursors

  /** The cursors as the `resume` frame carries them. */
  resumeCursors() {
    return Object.fromEntries(this.cursors);
  }

  /** Writes the cursors soon (batched); other tabs of the same user merge theirs by maximum. */
  saveCursorsSoon() {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => this.saveCursors(), 300);
  }

  saveCursors() {
    clearTimeout(this.saveTimer);
    this.saveTimer = null;
    const me = this.app.chat.me;
    if (!me) return;
    const stored = loadJson(localStorage, CURSORS_KEY);
    const merged = stored && stored.user === me ? { ...stored.cursors } : {};
    for (const [conv, seq] of this.cursors) merged[conv] = Math.max(seq, merged[conv] ?? 0);
    localStorage.setItem(CURSORS_KEY, JSON.stringify({ user: me, cursors: merged }));
  }

  loadCursors(user) {
    const stored = loadJson(localStorage, CURSORS_KEY);
    this.cursors = new Map(stored && stored.user === user ? Object.entries(stored.cursors) : []);
  }

  /** Logged out: the stored cursors go (the ones in memory go with `clearCursors`). */
  forgetStored() {
    localStorage.removeItem(CURSORS_KEY);
  }

  clearCursors() {
    this.cursors = new Map();
  }

  /** Out of a room: its messages are no longer kept whole. */
  dropCursor(convId) {
    this.cursors.delete(convId);
  }

  /** A room joined with nothing before the join: everything from seq 1 on is held. */
  holdFromStart(convId) {
    if (this.cursors.has(convId)) return;
    this.cursors.set(convId, 0);
    this.saveCursorsSoon();
  }

  /** The server knows messages after our cursor (`conversations`) that never reached us: fetch them. */
  fillIfBehind(conv, lastSeq) {
    const cursor = this.cursors.get(conv.id);
    if (cursor !== undefined && lastSeq > cursor) this.fillForward(conv);
  }

  // -------------------------------------------------------------------------------------------
  // Sync

  /** A login's `session`: a new sync begins. */
  startSync() {
    this.syncMore = [];
  }

  /** A `sync` entry said `more: true`: the conversation is paged once `synced` comes. */
  moreAfterSync(convId) {
    this.syncMore.push(convId);
  }

  /** `synced`: the conversations whose sync was cut short are paged now. */
  fillAfterSync() {
    for (const convId of this.syncMore) this.fillForward(this.app.chat.conversation(convId));
    this.syncMore = [];
  }

  // -------------------------------------------------------------------------------------------
  // Messages and gaps

  /**
   * Adds messages of one conversation from any source (live, sync, history, join, ack), dropping
   * those already held (same seq). `pickup`: when the conversation has no cursor yet, these
   * messages start it (everything from the first of them on is held); `history before` pages pass
   * false, they are older than what is held. Returns how many were added (or replaced by a newer copy).
   */
  ingest(convId, messages, { pickup = true } = {}) {
    const { chat, outbox, deliveries, activity, server } = this.app;
    const conv = chat.conversation(convId);
    let added = 0;
    let minSeq = Infinity;
    for (const message of messages) {
      minSeq = Math.min(minSeq, message.seq);
      if (message.from === chat.me && message.key) outbox.settle(message.key);
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
      if (message.from !== chat.me && conv.kind === 'dm' && server.loggedIn) deliveries.note(conv.id, message.seq);
      if (message.seq > conv.lastSeq) {
        if (message.from !== chat.me && message.seq > conv.readSeq) conv.unread += 1;
        conv.lastSeq = message.seq;
        activity.moveToTop(conv.id);
      }
      conv.maxSeq = Math.max(conv.maxSeq, message.seq);
      conv.typing.delete(message.from);
      notePreview(conv, message);
    }
    if (messages.length > 0) this.advanceCursor(conv, pickup ? minSeq - 1 : undefined);
    if (added > 0) {
      this.app.invalidate('sidebar');
      if (conv.id === chat.current) {
        this.app.invalidate('conv');
        this.app.reads.markRead(conv);
      }
    }
    return added;
  }

  /** Moves the cursor over the messages held without a hole, and fetches a hole when there is one. */
  advanceCursor(conv, pickupFrom) {
    let cursor = this.cursors.get(conv.id);
    if (cursor === undefined) {
      if (pickupFrom === undefined) return;
      cursor = pickupFrom;
    }
    const before = cursor;
    while (conv.messages.has(cursor + 1)) cursor += 1;
    if (cursor !== before || !this.cursors.has(conv.id)) {
      this.cursors.set(conv.id, cursor);
      this.saveCursorsSoon();
    }
    if (conv.maxSeq > cursor) this.fillForward(conv);
  }

  /**
   * Fetches what follows the cursor with `history after` until the conversation is whole: after a
   * gap in `seq`, after a sync that said `more: true`, or when the server knows newer messages.
   */
  async fillForward(conv) {
    const { chat, server } = this.app;
    if (conv.filling || !server.loggedIn) return;
    if (conv.kind === 'room' && chat.rooms.get(conv.name)?.joined === false) return;
    // While this runs, messages that arrive (and would start another fill) are covered by the loop.
    conv.filling = true;
    let progressed = false;
    try {
      for (;;) {
        const cursor = this.cursors.get(conv.id);
        if (cursor === undefined) break;
        const page = await server.request({ type: 'history', ...targetOf(conv), after: cursor, limit: FILL_PAGE });
        this.ingest(conv.id, page.messages);
        if ((this.cursors.get(conv.id) ?? 0) <= cursor) break;
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
    const cursor = this.cursors.get(conv.id);
    if (progressed && cursor !== undefined && conv.maxSeq > cursor) this.fillForward(conv);
  }

  // -------------------------------------------------------------------------------------------
  // Pages for the reader

  /** The newest page of a conversation, when it is first opened. */
  async loadLatest(conv) {
    const { chat, server, invalidate } = this.app;
    if (conv.loadedLatest || conv.loadingOlder || !server.loggedIn) return;
    if (conv.kind === 'room' && !chat.rooms.get(conv.name)?.joined) return;
    conv.loadingOlder = true;
    invalidate('conv');
    try {
      const page = await server.request({ type: 'history', ...targetOf(conv), limit: HISTORY_PAGE });
      conv.loadedLatest = true;
      conv.hasOlder = page.has_more;
      this.ingest(conv.id, page.messages);
    } catch (error) {
      if (error.code !== 'disconnected') this.app.toast(errorText(error));
    } finally {
      conv.loadingOlder = false;
      invalidate('conv');
    }
  }

  /** The page before the oldest message held (scrolling up). */
  async loadOlder(conv) {
    const { server, invalidate } = this.app;
    if (!conv.loadedLatest) return this.loadLatest(conv);
    if (!conv.hasOlder || conv.loadingOlder || !server.loggedIn) return;
    const oldest = Math.min(...conv.messages.keys());
    if (!Number.isFinite(oldest) || oldest <= 1) {
      conv.hasOlder = false;
      invalidate('conv');
      return;
    }
    conv.loadingOlder = true;
    invalidate('conv');
    try {
      const page = await server.request({ type: 'history', ...targetOf(conv), before: oldest, limit: HISTORY_PAGE });
      conv.hasOlder = page.has_more;
      this.ingest(conv.id, page.messages, { pickup: false });
    } catch (error) {
      if (error.code !== 'disconnected') this.app.toast(errorText(error));
    } finally {
      conv.loadingOlder = false;
      invalidate('conv');
    }
  }
}
