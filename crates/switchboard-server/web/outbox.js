// Messages sent and not yet acknowledged. Each has an idempotency key and is kept in
// sessionStorage (per tab, survives a reload) until its ack turns it into a message; it is sent
// again with the same key after a reconnect or a retryable error, so it never shows or arrives
// twice. A send the server refuses stays, marked "not sent", to be edited or discarded.

import { quoteOf } from './changes.js';
import { targetOf } from './chat.js';
import { errorText } from './errors.js';
import { loadJson } from './storage.js';

/** sessionStorage (per tab, survives a reload): messages sent and not yet acknowledged. */
const OUTBOX_KEY = 'switchboard.outbox';
/** Send errors after which the same message is sent again (with the same key). */
const RETRYABLE_SEND_ERRORS = new Set(['store_unavailable', 'overloaded', 'rate_limited', 'internal', 'timeout']);

/** A random UUID (v4): the idempotency key of a send. */
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Pages served over plain http from another host are not a secure context: no randomUUID.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export class Outbox {
  /**
   * `app`: `{chat, server: {request(frame), loggedIn}, ingest(convId, messages) (history.js),
   * invalidate(...parts)}`.
   */
  constructor(app) {
    this.app = app;
    /** key -> {key, conv, text, replyTo, createdAt, failed, inFlight} of sends not yet acknowledged. */
    this.entries = new Map();
  }

  save() {
    const entries = [...this.entries.values()].map(({ key, conv, text, replyTo, createdAt, failed }) => ({
      key,
      conv,
      text,
      replyTo,
      createdAt,
      failed,
    }));
    sessionStorage.setItem(OUTBOX_KEY, JSON.stringify({ user: this.app.chat.me, entries }));
  }

  load(user) {
    const stored = loadJson(sessionStorage, OUTBOX_KEY);
    this.entries = new Map();
    if (!stored || stored.user !== user) return;
    for (const entry of stored.entries) this.entries.set(entry.key, { ...entry, inFlight: false });
  }

  /** Logged out: the stored entries go (the ones in memory go with `clear`). */
  forgetStored() {
    sessionStorage.removeItem(OUTBOX_KEY);
  }

  clear() {
    this.entries = new Map();
  }

  /** The pending sends of a conversation, oldest first. */
  of(conv) {
    return [...this.entries.values()].filter((entry) => entry.conv === conv.id).sort((a, b) => a.createdAt - b.createdAt);
  }

  /**
   * A message of ours carrying the key of a pending send (its ack was lost to a reconnect): the send
   * is done, so it must neither show twice nor be sent again.
   */
  settle(key) {
    const entry = this.entries.get(key);
    if (!entry || entry.inFlight) return;
    this.entries.delete(key);
    this.save();
  }

  send(conv, text, replyTo = null) {
    const entry = { key: newKey(), conv: conv.id, text, replyTo, createdAt: Date.now(), failed: null, inFlight: false };
    this.entries.set(entry.key, entry);
    this.save();
    conv.scrollToEnd = true;
    this.app.invalidate('conv');
    this.transmit(entry);
  }

  /** Sends an entry (again, with the same key); the ack turns it into a message. */
  async transmit(entry) {
    const { chat, server } = this.app;
    if (entry.inFlight || entry.failed || !server.loggedIn) return;
    const conv = chat.conversation(entry.conv);
    entry.inFlight = true;
    try {
      const frame = { type: 'send', ...targetOf(conv), text: entry.text, key: entry.key };
      if (entry.replyTo) frame.reply_to = entry.replyTo;
      const ack = await server.request(frame);
      this.entries.delete(entry.key);
      this.save();
      const message = { conv: ack.conv, id: ack.id, seq: ack.seq, ts: ack.ts, from: chat.me, text: entry.text };
      if (entry.replyTo) {
        message.reply_to = entry.replyTo;
        message.reply = quoteOf(conv.messages.get(entry.replyTo));
      }
      if (conv.kind === 'room') message.room = conv.name;
      else message.to = conv.name;
      this.app.ingest(ack.conv, [message]);
      this.app.invalidate('conv');
    } catch (error) {
      if (error.code === 'disconnected') return; // resent after the next `synced`
      if (RETRYABLE_SEND_ERRORS.has(error.code)) {
        const delay = error.retryAfterMs ?? 2000;
        setTimeout(() => this.entries.get(entry.key) === entry && this.transmit(entry), delay);
        return;
      }
      // Sent again unchanged it would fail the same way (too long, not a member...): the page offers
      // to edit it instead of a retry.
      entry.failed = errorText(error);
      this.save();
      this.app.invalidate('conv');
    } finally {
      entry.inFlight = false;
    }
  }

  /** After `synced`: everything still pending goes out again, oldest first. */
  resend() {
    const entries = [...this.entries.values()].sort((a, b) => a.createdAt - b.createdAt);
    for (const entry of entries) this.transmit(entry);
  }

  /** Takes a send out of the outbox (its text went back into the message box, or it was discarded). */
  remove(entry) {
    this.entries.delete(entry.key);
    this.save();
  }
}
