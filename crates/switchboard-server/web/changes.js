// Edits, deletions, replies and reactions: applying change entries to the messages held, and
// what a message shows of them (the quote, "(edited)", the tombstone, the reactions, the menu).
//
// A change is a `message` frame with `kind` and `target`. It is kept among the messages (its seq
// moves the cursor like any other) but never shown; it is applied to its target only when newer
// than the target's `changed_seq`, so replayed entries never undo a newer state.

import { h, linkify } from './dom.js';

/** The reactions the menu offers; any other can come from other clients. */
export const QUICK_REACTIONS = ['👍', '❤️', '😂', '🎉', '👀'];

/** Whether a message frame is a change to another message, not a message to show. */
export function isChange(message) {
  return Boolean(message.kind);
}

/** Whether a copy of a message (from `history`) is newer than the one held. */
export function isNewerCopy(held, incoming) {
  if (isChange(incoming)) return false;
  // A reply acknowledged before the message it answers was loaded (an outbox sent after a
  // reload) is held without its quote: the server's copy has it.
  const quoteFound = held.reply_to != null && !held.reply && Boolean(incoming.reply);
  return quoteFound || (incoming.changed_seq ?? 0) > (held.changed_seq ?? 0);
}

/** Applies a change entry to its target if held; returns whether the target changed. */
export function applyChange(messages, entry) {
  const target = messages.get(entry.target);
  if (!target || isChange(target) || entry.seq <= (target.changed_seq ?? 0)) return false;
  target.changed_seq = entry.seq;
  if (entry.kind === 'edit') {
    target.text = entry.text;
    target.edited_at = entry.edited_at ?? entry.ts;
  } else if (entry.kind === 'delete') {
    target.deleted = true;
    target.text = '';
    target.reactions = [];
  } else if (entry.kind === 'react') {
    target.reactions = entry.reactions ?? [];
  }
  // Replies quoting it show the change too.
  for (const message of messages.values()) {
    if (message.reply_to !== entry.target || !message.reply) continue;
    message.reply = entry.kind === 'delete'
      ? { from: message.reply.from, text: '', deleted: true }
      : entry.kind === 'edit' ? { ...message.reply, text: entry.text } : message.reply;
    message.quoteVersion = entry.seq;
  }
  return true;
}

/**
 * The change entry an acknowledged `edit`, `delete` or `react` of ours made: the connection that
 * makes a change gets only the ack, so it applies the change itself.
 */
export function ownEntry(frame, ack, me, messages) {
  const entry = { kind: frame.type, target: frame.seq, seq: ack.seq, ts: ack.ts, from: me, text: frame.text ?? frame.emoji ?? '' };
  if (frame.type === 'edit') entry.edited_at = ack.ts;
  if (frame.type === 'react') entry.reactions = reactedBy(messages.get(frame.seq), frame.emoji, me);
  return entry;
}

/** A message's reactions after `me`'s reaction became `emoji` ("" for none), as the server does. */
function reactedBy(message, emoji, me) {
  const reactions = (message?.reactions ?? [])
    .map((reaction) => ({ emoji: reaction.emoji, users: reaction.users.filter((user) => user !== me) }))
    .filter((reaction) => reaction.users.length > 0);
  if (!emoji) return reactions;
  const existing = reactions.find((reaction) => reaction.emoji === emoji);
  if (existing) existing.users.push(me);
  else reactions.push({ emoji, users: [me] });
  return reactions;
}

/** One's newest message that can still be edited (Up in an empty message box). */
export function lastOwn(messages, me) {
  let last = null;
  for (const message of messages.values()) {
    if (message.from === me && !isChange(message) && !message.deleted && (!last || message.seq > last.seq)) last = message;
  }
  return last;
}

/** What a reply shows of the message it answers, from the message held. */
export function quoteOf(message) {
  if (!message) return undefined;
  const chars = [...message.text];
  const text = chars.length > 100 ? `${chars.slice(0, 100).join('')}…` : message.text;
  return { from: message.from, text, deleted: Boolean(message.deleted) };
}

/** A version of what a message shows, for the render cache. */
export function changeVersion(message) {
  return `${message.changed_seq ?? 0}:${message.quoteVersion ?? 0}:${message.reply ? 1 : 0}`;
}

/**
 * The parts of a message bubble: `quote` (null if not a reply), `text`, `edited` (null if not),
 * `reactions` (null if none) and `menu` (the actions button and its list). `actions` has
 * `reply(message)`, `edit(message)`, `remove(message)`, `react(message, emoji)`, `jump(seq)`, and
 * `moderates` (the user may delete others' messages here).
 */
export function messageParts(message, me, actions) {
  const mine = message.from === me;
  const quote = message.reply
    ? h(
        'button',
        {
          type: 'button',
          class: 'quote',
          title: 'Show the original',
          on: { click: () => actions.jump(message.reply_to) },
        },
        h('span', { class: 'quote-from', text: message.reply.from }),
        h('span', {
          class: `quote-text${message.reply.deleted ? ' tombstone' : ''}`,
          text: message.reply.deleted ? 'deleted message' : message.reply.text,
        }),
      )
    : null;
  const text = message.deleted
    ? h('p', { class: 'text tombstone', text: 'This message was deleted.' })
    : h('p', { class: 'text' }, ...linkify(message.text));
  const edited =
    message.edited_at && !message.deleted
      ? h('span', {
          class: 'edited',
          text: '(edited)',
          title: `edited ${new Date(message.edited_at).toLocaleString([], { dateStyle: 'full', timeStyle: 'medium' })}`,
        })
      : null;
  const reactions =
    message.reactions?.length && !message.deleted
      ? h(
          'div',
          { class: 'reactions' },
          ...message.reactions.map((reaction) => {
            const own = reaction.users.includes(me);
            return h('button', {
              type: 'button',
              class: `reaction${own ? ' own' : ''}`,
              title: reaction.users.join(', '),
              'aria-pressed': String(own),
              text: `${reaction.emoji} ${reaction.users.length}`,
              on: { click: () => actions.react(message, own ? '' : reaction.emoji) },
            });
          }),
        )
      : null;
  return { quote, text, edited, reactions, menu: message.deleted ? null : menuOf(message, mine, actions) };
}

/** The "⋯" button and the small menu it opens: reply, react, and for one's own edit and delete. */
function menuOf(message, mine, actions) {
  const list = h('div', { class: 'msg-menu', role: 'menu', hidden: true });
  const close = () => {
    list.hidden = true;
  };
  const item = (label, run, extra = {}) =>
    h('button', {
      type: 'button',
      role: 'menuitem',
      text: label,
      ...extra,
      on: {
        click: () => {
          close();
          run();
        },
      },
    });
  list.append(
    item('Reply', () => actions.reply(message)),
    h(
      'div',
      { class: 'menu-reactions' },
      ...QUICK_REACTIONS.map((emoji) => item(emoji, () => actions.react(message, emoji), { 'aria-label': `React ${emoji}` })),
    ),
  );
  if (mine) list.append(item('Edit', () => actions.edit(message)));
  if (mine || actions.moderates) list.append(item('Delete', () => actions.remove(message), { class: 'danger' }));
  const button = h('button', {
    type: 'button',
    class: 'msg-menu-button',
    'aria-label': 'Message actions',
    'aria-haspopup': 'menu',
    text: '⋯',
    on: {
      click: (event) => {
        event.stopPropagation();
        list.hidden = !list.hidden;
      },
    },
  });
  return h('div', { class: 'msg-actions' }, button, list);
}

/** The bar above the composer while replying to or editing a message. */
export function modeBar(mode, onCancel) {
  if (!mode) return [];
  const label = mode.kind === 'edit' ? 'Editing your message' : `Replying to ${mode.message.from}`;
  const excerpt = mode.kind === 'edit' ? '' : quoteOf(mode.message)?.text ?? '';
  return [
    h('span', { class: 'mode-label', text: label }),
    h('span', { class: 'mode-text', text: excerpt }),
    h('button', { type: 'button', class: 'ghost', 'aria-label': 'Cancel', text: '✕', on: { click: onCancel } }),
  ];
}
