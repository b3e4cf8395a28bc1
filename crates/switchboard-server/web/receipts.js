// Read and delivered markers. Ours: the open conversation is reported read (`read`), and reads on
// our other devices clear the unread count here. The peer's, in a private conversation: how far
// they have received and read it, kept from the `conversations` listing, the login's `sync` and live
// `delivered` / `read` events, so the receipt under one's newest message is right after a reload and
// on every device. And what this device reports it received, with `delivered`.

import { isChange } from './changes.js';
import { targetOf } from './chat.js';

/** Takes a private conversation's peer markers from a `conversations` or `sync` entry. */
export function takePeerMarkers(conv, entry) {
  if (typeof entry.peer_read_seq === 'number') conv.peerRead = Math.max(conv.peerRead, entry.peer_read_seq);
  if (typeof entry.peer_delivered_seq === 'number') {
    conv.peerDelivered = Math.max(conv.peerDelivered, entry.peer_delivered_seq);
  }
  // What was read was delivered.
  conv.peerDelivered = Math.max(conv.peerDelivered, conv.peerRead);
}

/** The receipt under our message `seq` of a private conversation: seen, delivered or sent. */
export function receiptOf(conv, seq) {
  if (conv.peerRead >= seq) return 'seen';
  if (conv.peerDelivered >= seq) return 'delivered';
  return 'sent';
}

/**
 * Reports how far this device holds each private conversation, one `delivered` per conversation
 * at a time: what arrives meanwhile goes in the next report, so a sync of many messages costs one.
 */
export class DeliveryReports {
  /** `send(convId, seq)` returns a promise, settled when the server answered. */
  constructor(send) {
    this.send = send;
    /** conv id -> the highest seq reported (or being reported). */
    this.reported = new Map();
    /** conv id -> the highest seq waiting for the report in flight. */
    this.waiting = new Map();
    this.inFlight = new Set();
  }

  note(convId, seq) {
    if (seq <= (this.reported.get(convId) ?? 0) || seq <= (this.waiting.get(convId) ?? 0)) return;
    if (this.inFlight.has(convId)) {
      this.waiting.set(convId, seq);
      return;
    }
    this.report(convId, seq);
  }

  report(convId, seq) {
    this.inFlight.add(convId);
    this.reported.set(convId, seq);
    const next = () => {
      this.inFlight.delete(convId);
      const waiting = this.waiting.get(convId);
      this.waiting.delete(convId);
      if (waiting !== undefined) this.note(convId, waiting);
    };
    this.send(convId, seq).then(next, (error) => {
      // Not reported (a reconnect): the next message, or the resume's sync, reports it again.
      if (this.reported.get(convId) === seq) this.reported.delete(convId);
      if (error?.code !== 'disconnected') console.warn('delivered', error);
      next();
    });
  }
}

/** Messages from others after the read marker among those held; changes do not count. */
function unreadHeld(conv, me) {
  let unread = 0;
  for (const message of conv.messages.values()) {
    if (message.seq > conv.readSeq && message.from !== me && !isChange(message)) unread += 1;
  }
  return unread;
}

/** Our read marker, and the `read` / `delivered` events that move either side's. */
export class ReadMarkers {
  /** `app`: `{chat, server: {request(frame), loggedIn}, invalidate(...parts)}`. */
  constructor(app) {
    this.app = app;
  }

  /** Tells the server (and our other devices) that the open conversation was read. */
  markRead(conv) {
    const { chat, server, invalidate } = this.app;
    if (!chat.isViewing(conv) || !server.loggedIn) return;
    if (conv.kind === 'room' && !chat.rooms.get(conv.name)?.joined) return;
    const seq = conv.maxSeq;
    if (conv.unread !== 0 || conv.readSeq < seq) {
      conv.unread = 0;
      conv.readSeq = Math.max(conv.readSeq, seq);
      invalidate('sidebar');
    }
    if (seq <= conv.readSent) return;
    conv.readSent = seq;
    server.request({ type: 'read', ...targetOf(conv), seq }).catch((error) => {
      if (error.code !== 'disconnected') console.warn('read', error);
      if (conv.readSent === seq) conv.readSent = 0;
    });
  }

  /** A `read` event: ours from another device, or the peer's in a private conversation. */
  onRead(frame) {
    const { chat, invalidate } = this.app;
    const conv = chat.conversation(frame.conv);
    if (frame.user === chat.me) {
      // Read on another of our devices.
      conv.readSeq = Math.max(conv.readSeq, frame.seq);
      conv.readSent = Math.max(conv.readSent, frame.seq);
      conv.unread = unreadHeld(conv, chat.me);
      invalidate('sidebar');
    } else if (conv.kind === 'dm') {
      takePeerMarkers(conv, { peer_read_seq: frame.seq });
      if (conv.id === chat.current) invalidate('conv');
    }
  }

  /** A `delivered` event: the peer's device received up to `seq`. */
  onDelivered(frame) {
    const { chat, invalidate } = this.app;
    if (frame.user === chat.me) return;
    const conv = chat.conversation(frame.conv);
    conv.peerDelivered = Math.max(conv.peerDelivered, frame.seq);
    if (conv.id === chat.current) invalidate('conv');
  }
}
