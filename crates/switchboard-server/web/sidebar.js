// The sidebar: people and rooms, most recent conversation first (the server's order, kept live),
// each with the start of its last message, and a search box that finds anyone by the start of
// their name (`users` with `prefix`, answered by the server from an index, so it works the same
// with sixty users or a million); the people a search shows are watched while shown, so their
// online dots stay right.
//
// Without a search the people list holds yourself, the people you have a conversation with and
// the people online: not every registered user, which is what the search is for.

import { h, byId, setChildren } from './dom.js';

/** A search waits this long after the last key press before asking the server. */
const SEARCH_DELAY_MS = 150;
/** How many people a search shows. */
const SEARCH_LIMIT = 20;

/**
 * The people search. `request(frame)` returns a promise of the answer; `onChange()` is called
 * when the results change, `onShown(names)` with the people shown (none once the search is
 * cleared). Answers to an older query than the current one are dropped.
 */
export class UserSearch {
  constructor(request, onChange, onShown = () => {}) {
    this.request = request;
    this.onChange = onChange;
    this.onShown = onShown;
    /** The normalised query ('' when not searching). */
    this.query = '';
    /** The server's answer for `query`: `[{user, online}]`, or null while it is awaited. */
    this.results = null;
    this.error = null;
    this.timer = null;
  }

  /** The box's text changed. */
  set(text) {
    const query = text.trim().toLowerCase();
    if (query === this.query) return;
    this.query = query;
    this.results = null;
    this.error = null;
    clearTimeout(this.timer);
    if (query !== '') this.timer = setTimeout(() => this.ask(query), SEARCH_DELAY_MS);
    else this.onShown([]);
    this.onChange();
  }

  async ask(query) {
    try {
      const answer = await this.request({ type: 'users', prefix: query, limit: SEARCH_LIMIT });
      if (query !== this.query) return;
      this.results = answer.users;
      this.onShown(answer.users);
    } catch (error) {
      if (query !== this.query) return;
      this.results = [];
      this.error = error.code === 'invalid_name' ? 'Names have only a–z, 0–9, _ - and .' : 'Search failed.';
    }
    this.onChange();
  }
}

/** The newest message of a conversation, kept for its preview. */
export function notePreview(conv, message) {
  if (message.seq < (conv.last?.seq ?? 0)) return;
  conv.last = { seq: message.seq, from: message.from, text: message.text };
}

/** Takes the preview of a `conversations` entry (its place comes from `ActivityOrder`). */
export function takeListing(conv, entry) {
  if (entry.last) notePreview(conv, entry.last);
}

/**
 * The conversations in the server's order: `conversations` lists them newest activity first, and
 * a conversation that gets a new message moves to the top. While a listing is paged, the
 * conversations that move are remembered and put above the listing when it is taken: the
 * server's cursor skips them (docs/protocol.md, `conversations`), and they are the newest.
 */
export class ActivityOrder {
  constructor() {
    /** Conversation ids, top first. */
    this.ids = [];
    /** The listing being paged: `{ids, moved}`; null when none. */
    this.listing = null;
    this.ranks = null;
  }

  /** A new message in `id`: to the top. */
  moveToTop(id) {
    if (this.ids[0] !== id) {
      this.ids = [id, ...this.ids.filter((other) => other !== id)];
      this.ranks = null;
    }
    this.listing?.moved.push(id);
  }

  /** A listing starts; returns it, for `page` and `finish`. */
  begin() {
    this.listing = { ids: [], moved: [] };
    return this.listing;
  }

  page(listing, entries) {
    for (const entry of entries) listing.ids.push(entry.conv);
  }

  /** The listing is complete: it becomes the order, under what moved meanwhile. */
  finish(listing) {
    if (listing !== this.listing) return;
    this.listing = null;
    const order = [];
    const seen = new Set();
    for (const id of [...listing.moved.reverse(), ...listing.ids, ...this.ids]) {
      if (!seen.has(id)) {
        seen.add(id);
        order.push(id);
      }
    }
    this.ids = order;
    this.ranks = null;
  }

  /** The listing failed (a disconnect): the next one starts over. */
  abandon(listing) {
    if (listing === this.listing) this.listing = null;
  }

  /** Where `id` stands (0 at the top); conversations never listed nor moved come last. */
  rank(id) {
    if (!this.ranks) this.ranks = new Map(this.ids.map((each, index) => [each, index]));
    return this.ranks.get(id) ?? Infinity;
  }
}

/** The server's order; conversations it has not placed after, by name. */
function byActivity(order) {
  return (a, b) => order.rank(a.id) - order.rank(b.id) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/**
 * Draws both lists. `app`: `{state, search, order, dmId, activeTypers, openConversation, joinRoom}`.
 */
export function renderSidebar(app) {
  const { state, search } = app;
  const byRecency = byActivity(app.order);
  const query = search.query;
  const itemOf = (name) => personItem(app, name);

  let people;
  if (query !== '') {
    people = (search.results ?? []).map((user) => user.user);
  } else {
    const others = new Map();
    for (const conv of state.convs.values()) {
      if (conv.kind === 'dm' && conv.name !== state.me && (conv.lastSeq > 0 || conv.id === state.current)) {
        others.set(conv.name, conv);
      }
    }
    const talked = [...others.values()].sort(byRecency).map((conv) => conv.name);
    const online = [...state.online].filter((name) => name !== state.me && !others.has(name)).sort();
    people = [state.me, ...talked, ...online].filter(Boolean);
  }
  const userList = byId('user-list');
  let note = null;
  if (query !== '') {
    if (search.error) note = search.error;
    else if (search.results === null) note = 'Searching…';
    else if (people.length === 0) note = `No one's name starts with "${query}".`;
  }
  setChildren(userList, [
    ...people.map(itemOf),
    ...(note ? [h('li', { class: 'list-empty', text: note })] : []),
  ]);

  const roomList = byId('room-list');
  const rooms = [...state.rooms.values()].filter((room) => room.name.startsWith(query));
  const joined = rooms
    .filter((room) => room.joined)
    .map((room) => state.convs.get(`room:${room.name}`) ?? { id: `room:${room.name}`, name: room.name });
  const others = rooms.filter((room) => !room.joined).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const ordered = [...joined.sort(byRecency).map((conv) => state.rooms.get(conv.name)), ...others];
  setChildren(
    roomList,
    ordered.length === 0
      ? [h('li', { class: 'list-empty', text: query ? `No room's name starts with "${query}".` : 'No rooms yet: create one.' })]
      : ordered.map((room) => roomItem(app, room)),
  );

  let total = 0;
  for (const conv of state.convs.values()) total += conv.unread;
  document.title = total > 0 ? `(${total}) Switchboard` : 'Switchboard';
}

function personItem(app, name) {
  const { state } = app;
  const id = app.dmId(state.me, name);
  const conv = state.convs.get(id);
  // Search results are watched while shown (and their `online` taken), so this stays right.
  const online = state.online.has(name);
  return listItem({
    avatarOf: name,
    label: name,
    suffix: name === state.me ? ' (you)' : '',
    preview: previewOf(state, conv),
    dot: online ? 'online' : 'offline',
    dotLabel: online ? 'online' : 'offline',
    unread: conv?.unread ?? 0,
    typing: conv ? app.activeTypers(conv).length > 0 : false,
    selected: state.current === id,
    data: { user: name },
    onClick: () => {
      clearSearch(app);
      app.openConversation(id);
    },
  });
}

function roomItem(app, room) {
  const { state } = app;
  const id = `room:${room.name}`;
  const conv = state.convs.get(id);
  return listItem({
    avatarOf: room.name,
    room: true,
    label: room.name,
    suffix: '',
    lock: Boolean(room.private),
    preview: room.joined ? previewOf(state, conv) : null,
    detail: room.joined ? null : 'join',
    unread: room.joined ? (conv?.unread ?? 0) : 0,
    typing: conv ? app.activeTypers(conv).length > 0 : false,
    selected: state.current === id,
    muted: !room.joined,
    data: { room: room.name, joined: String(room.joined), private: String(Boolean(room.private)) },
    onClick: () => {
      clearSearch(app);
      if (room.joined) app.openConversation(id);
      else app.joinRoom(room.name);
    },
  });
}

function clearSearch(app) {
  if (app.search.query === '') return;
  byId('search').value = '';
  app.search.set('');
}

/** `You: text` for one's own last message, the text alone otherwise (and the author in rooms). */
function previewOf(state, conv) {
  const last = conv?.last;
  if (!last) return null;
  const who = last.from === state.me ? 'You: ' : conv.kind === 'room' ? `${last.from}: ` : '';
  return `${who}${last.text}`;
}

/** One entry of the people or room list (rebuilt each time; the lists are short). */
function listItem({ avatarOf, room, label, suffix, lock = false, preview, dot, dotLabel, detail, unread, typing, selected, muted, data, onClick }) {
  const button = h(
    'button',
    { type: 'button', class: `item${selected ? ' selected' : ''}${muted ? ' muted' : ''}`, dataset: data },
    avatar(avatarOf, { room, dot, dotLabel }),
    h(
      'span',
      { class: 'item-name' },
      h('span', { class: 'name', text: label }),
      suffix ? h('span', { class: 'you', text: suffix }) : null,
      lock ? h('span', { class: 'lock', title: 'Private room', 'aria-label': 'private' }) : null,
      typing ? h('span', { class: 'preview item-typing', text: 'typing…' }) : preview ? h('span', { class: 'preview', text: preview }) : null,
    ),
    detail ? h('span', { class: 'item-detail', text: detail }) : null,
    unread > 0 ? h('span', { class: 'badge', text: unread > 99 ? '99+' : String(unread), 'aria-label': `${unread} unread` }) : null,
  );
  button.addEventListener('click', onClick);
  return h('li', {}, button);
}

/** A round badge with the name's first letter (a room's: `#`), its colour drawn from the name. */
function avatar(name, { room = false, dot = null, dotLabel = '' } = {}) {
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  const element = h(
    'span',
    { class: `avatar${room ? ' room' : ''}`, 'aria-hidden': room ? 'true' : null },
    room ? '#' : [...name][0].toUpperCase(),
    dot ? h('span', { class: `dot ${dot}`, title: dotLabel, 'aria-label': dotLabel }) : null,
  );
  // CSSOM, not a style attribute: the page's Content-Security-Policy forbids inline styles.
  element.style.setProperty('--hue', String(hash % 360));
  return element;
}
