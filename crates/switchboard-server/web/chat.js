// The chat as this client holds it, kept from the server's frames: who is logged in, who is online,
// the rooms, the conversations (one record each: its messages and what the other modules keep
// about it) and which one is open. The modules that read or change it are handed it as `chat`.

/** The id of the private conversation of `a` and `b`. */
export function dmId(a, b) {
  return a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
}

/** The `to` / `room` fields that address a conversation in requests. */
export function targetOf(conv) {
  return conv.kind === 'room' ? { room: conv.name } : { to: conv.name };
}

export class Chat {
  constructor() {
    /** The logged-in user's name. */
    this.me = null;
    this.reset();
  }

  /** Forgets everything but `me`: on logout, or when another user logs in. */
  reset() {
    /** Presence: the online set, and the one being rebuilt from a new `online` list (presence.js). */
    this.online = new Set();
    this.onlineNext = null;
    /** name -> {name, members, joined, private, role} from `rooms`, kept up to date by events (rooms.js). */
    this.rooms = new Map();
    /** conversation id -> its record (see `conversation`). */
    this.convs = new Map();
    /** The open conversation's id. */
    this.current = null;
  }

  /** The open conversation's record, or null. */
  currentConv() {
    return (this.current && this.convs.get(this.current)) || null;
  }

  /** The conversation with id `id`, created empty on first use. */
  conversation(id) {
    let conv = this.convs.get(id);
    if (conv) return conv;
    const [kind, first, second] = id.split(':');
    conv = {
      id,
      kind,
      /** The room's name, or the other user of a private conversation (yourself for `dm:me:me`). */
      name: kind === 'room' ? first : first === this.me ? second : first,
      /** seq -> message: everything held, from any source, deduplicated by seq (history.js). */
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
      /** Our read marker, and what we last sent in `read` (receipts.js). */
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
      /** user -> time their "typing" expires (typing.js). */
      typing: new Map(),
      /** Private conversations: the peer's read and delivered markers (see receipts.js). */
      peerRead: 0,
      peerDelivered: 0,
      /** Rooms: the member names (a Set), from `members` and membership events; null until loaded. */
      members: null,
      /** Rendered list items by key, reused across renders (timeline.js). */
      nodes: new Map(),
      /** When we last sent `typing` here (typing.js). */
      lastTypingSent: 0,
      scrollToEnd: true,
    };
    this.convs.set(id, conv);
    return conv;
  }

  /** The conversation is open and the page is visible: what arrives there is read. */
  isViewing(conv) {
    return this.current === conv.id && document.visibilityState === 'visible';
  }

  /** A private conversation, or a room this user is a member of. */
  joined(conv) {
    return conv.kind !== 'room' || Boolean(this.rooms.get(conv.name)?.joined);
  }
}
