// Delivered and seen: how far the peer of a private conversation has received and read it, kept
// from the `conversations` listing, the login's `sync` and live `delivered` / `read` events, so the
// receipt under one's newest message is right after a reload and on every device; and what this
// device reports it received, with `delivered`.

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
