// Presence: the set of users online, kept from `online` lists and events, as the server scopes it
// (docs/protocol.md, "Whose presence a connection hears"): the login brings the contacts (private
// conversations' peers); anyone else this client shows is asked about with `watch`; a big room's
// counts come from `room_size` instead of one event per join.

/** Most users watched beyond the contacts; the server's own bound is far higher. */
const WATCH_MAX = 100;

export class PresenceWatch {
  /** `request(frame)` returns a promise of the answer. */
  constructor(request) {
    this.request = request;
    /** Users this device asked about, oldest first: asked again after every login. */
    this.watched = [];
    /** The people a search shows, watched while shown (see `show`). */
    this.shown = new Set();
  }

  /**
   * The people a search shows now (none once it is cleared): the new ones are watched, in one
   * request, and those no longer shown unwatched, unless heard about anyway: watched above, or
   * `keep(user)` (contacts, whose presence the server sends unasked and `unwatch` would stop).
   * An unwatched user's state is no longer known: `apply(user, false)` drops it.
   */
  async show(users, apply, keep) {
    const now = new Set(users);
    const heard = (user) => this.watched.includes(user) || keep(user);
    const gone = [...this.shown].filter((user) => !now.has(user) && !heard(user));
    const added = users.filter((user) => !this.shown.has(user) && !this.watched.includes(user));
    this.shown = now;
    if (gone.length > 0) {
      for (const user of gone) apply(user, false);
      this.request({ type: 'unwatch', users: gone }).catch(() => {});
    }
    if (added.length > 0) await this.ask(added, apply);
  }

  /** Starts hearing about `user`; `apply(user, online)` takes their state now. */
  async watch(user, apply) {
    if (this.watched.includes(user)) return;
    this.watched.push(user);
    if (this.watched.length > WATCH_MAX) {
      const dropped = this.watched.shift();
      this.request({ type: 'unwatch', users: [dropped] }).catch(() => {});
    }
    await this.ask([user], apply);
  }

  /** After a login: the new connection watches what the last one did. */
  async rewatch(apply) {
    const users = [...new Set([...this.watched, ...this.shown])];
    if (users.length > 0) await this.ask(users, apply);
  }

  async ask(users, apply) {
    try {
      const answer = await this.request({ type: 'watch', users });
      for (const entry of answer.users) apply(entry.user, entry.online);
    } catch (error) {
      if (error.code !== 'disconnected') console.warn('watch', error);
    }
  }
}

/** Takes `users` or `members` entries' `online` flags: right when listed, live for contacts. */
export function applyListed(entries, apply) {
  for (const entry of entries) apply(entry.user, entry.online === true);
}

/** A `room_size` event: the room's member count and how many are online. */
export function applyRoomSize(room, frame) {
  room.members = frame.members;
  room.online = frame.online;
}

/**
 * Presence is a set: a new `online` list (in pages) replaces it once complete, and events apply
 * to both. Takes one page; returns whether the list is complete.
 */
export function takeOnlineList(chat, frame) {
  if (!chat.onlineNext) chat.onlineNext = new Set();
  for (const user of frame.users) chat.onlineNext.add(user);
  if (!frame.done) return false;
  chat.online = chat.onlineNext;
  chat.onlineNext = null;
  return true;
}

/** A user came online or went offline (an event, a listing, a `watch` answer). */
export function setOnline(chat, user, online) {
  for (const set of [chat.online, chat.onlineNext]) {
    if (!set) continue;
    if (online) set.add(user);
    else set.delete(user);
  }
}
