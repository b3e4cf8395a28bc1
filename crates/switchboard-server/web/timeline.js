// The open conversation's message list: day separators, join/leave notices, the "New messages"
// line, each message with its menu, quote, reactions and receipt, and below them the sends still
// pending (outbox.js). List items are kept per conversation by key and rebuilt only when what they
// show changed. The reader's place is kept when older pages are added above (scroll.js), and
// reaching the top loads the next older page.

import { changeVersion, isChange, messageParts } from './changes.js';
import { h, byId, setChildren, formatTime, formatDay } from './dom.js';
import { receiptOf } from './receipts.js';
import { captureAnchor, nearTop, restoreAnchor } from './scroll.js';

/** Messages of one author closer together than this are drawn as one group. */
const GROUP_MS = 5 * 60_000;

export class Timeline {
  /**
   * `app`: `{chat, outbox (outbox.js), composer (composer.js), loadOlder(conv) (history.js),
   * invalidate(...parts)}`.
   */
  constructor(app) {
    this.app = app;
  }

  wire() {
    byId('messages').addEventListener('scroll', () => {
      const conv = this.app.chat.currentConv();
      if (conv && nearTop(byId('messages'))) this.app.loadOlder(conv);
    });
  }

  render(conv) {
    const { chat, outbox } = this.app;
    const box = byId('messages');
    const list = byId('message-list');
    const nearEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    // Keep the first visible message where it is when older ones are added above it.
    const anchor = !conv.scrollToEnd && !nearEnd && list.dataset.conv === conv.id ? captureAnchor(box, list) : null;

    const top = byId('history-top');
    if (conv.loadingOlder) top.textContent = 'Loading earlier messages…';
    else if (!chat.joined(conv)) top.textContent = '';
    else if (!conv.hasOlder || (conv.loadedLatest && conv.messages.size === 0)) {
      top.textContent =
        conv.messages.size === 0 && !outbox.of(conv).length
          ? 'No messages yet. Say hi!'
          : conv.kind === 'room'
            ? `This is the beginning of # ${conv.name}.`
            : `This is the beginning of your conversation${conv.name === chat.me ? '' : ` with ${conv.name}`}.`;
    } else top.textContent = '';

    const seqs = [...conv.messages.keys()].sort((a, b) => a - b);
    let lastOwnSeq = 0;
    for (const seq of seqs) {
      const message = conv.messages.get(seq);
      if (message.from === chat.me && !isChange(message)) lastOwnSeq = seq;
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
        items.push(this.cached(conv, `notice:${notice.key}`, 'n', () => h('li', { class: 'notice', text: notice.text })));
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
        items.push(this.cached(conv, dayKey, 'd', () => h('li', { class: 'day', text: day })));
        previousDay = day;
        previous = null;
      }
      pushNoticesUpTo(seq - 1);
      if (newAfter !== null && seq > newAfter && message.from !== chat.me) {
        items.push(this.cached(conv, `new:${newAfter}`, 'n', () => h('li', { class: 'new-line', text: 'New messages' })));
        newAfter = null;
        previous = null;
      }
      const continued = previous !== null && previous.from === message.from && message.ts - previous.ts < GROUP_MS;
      const receipt = conv.kind === 'dm' && conv.name !== chat.me && seq === lastOwnSeq ? receiptOf(conv, seq) : null;
      const version = `${continued}|${receipt}|${changeVersion(message)}`;
      items.push(this.cached(conv, `m:${seq}`, version, () => this.messageElement(conv, message, { continued, receipt })));
      previous = message;
    }
    pushNoticesUpTo(Infinity);
    for (const entry of outbox.of(conv)) {
      const version = `${entry.failed ?? 'pending'}`;
      items.push(this.cached(conv, `p:${entry.key}`, version, () => this.pendingElement(entry)));
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
    if (due && conv.hasOlder && conv.loadedLatest && !conv.loadingOlder) this.app.loadOlder(conv);
  }

  /** The list node for `key`, rebuilt when its `version` changed. */
  cached(conv, key, version, build) {
    const record = conv.nodes.get(key);
    if (record && record.version === version) return record.node;
    const node = build();
    conv.nodes.set(key, { version, node });
    return node;
  }

  /** What the per-message menu and the quotes and reactions of a message do. */
  actions(conv) {
    const { chat, composer } = this.app;
    const role = conv.kind === 'room' ? chat.rooms.get(conv.name)?.role : null;
    return {
      // A room's owner and moderators may delete anyone's message there.
      moderates: role === 'owner' || role === 'moderator',
      reply: (message) => composer.setMode({ kind: 'reply', conv: conv.id, message }),
      edit: (message) => composer.startEditing(conv, message),
      remove: (message) => composer.change(conv, { type: 'delete', seq: message.seq }),
      react: (message, emoji) => composer.change(conv, { type: 'react', seq: message.seq, emoji }),
      jump: (seq) => {
        const target = byId('message-list').querySelector(`li[data-seq="${seq}"]`);
        if (!target) return;
        target.scrollIntoView({ block: 'center' });
        target.classList.add('flash');
        setTimeout(() => target.classList.remove('flash'), 1200);
      },
    };
  }

  messageElement(conv, message, { continued, receipt }) {
    const me = this.app.chat.me;
    const mine = message.from === me;
    const parts = messageParts(message, me, this.actions(conv));
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

  /** A send not yet acknowledged: "sending…", or "not sent" with edit and discard. */
  pendingElement(entry) {
    const { outbox, composer, invalidate } = this.app;
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
                on: { click: () => composer.editFailed(entry) },
              })
            : null,
          failed
            ? h('button', {
                type: 'button',
                class: 'link',
                text: 'discard',
                on: {
                  click: () => {
                    outbox.remove(entry);
                    invalidate('conv');
                  },
                },
              })
            : null,
        ),
      ),
    );
  }
}
