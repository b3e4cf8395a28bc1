// Typing indicators: "X is typing…" from the others' `typing` events, shown for a few seconds after
// the last one (or until their message comes), and our own `typing`, sent at most every couple of
// seconds while the message box changes.

import { targetOf } from './chat.js';

/** `typing` goes out at most this often while the user types. */
const TYPING_EVERY_MS = 2000;
/** How long "X is typing" stays up after the last `typing` event. */
const TYPING_SHOWN_MS = 4000;

/** Who is typing in a conversation now. */
export function activeTypers(conv) {
  const now = Date.now();
  return [...conv.typing].filter(([, until]) => until > now).map(([user]) => user);
}

/** The line under the open conversation's messages. */
export function typingText(conv) {
  const typers = activeTypers(conv);
  if (typers.length === 0) return '';
  if (typers.length === 1) return `${typers[0]} is typing…`;
  if (typers.length === 2) return `${typers[0]} and ${typers[1]} are typing…`;
  return 'several people are typing…';
}

export class Typing {
  /** `app`: `{chat, send(frame) (false when not sent), invalidate(...parts)}`. */
  constructor(app) {
    this.app = app;
    this.expiryTimer = null;
  }

  /** A `typing` event. */
  onTyping(frame) {
    const { chat, invalidate } = this.app;
    if (frame.from === chat.me) return;
    const conv = chat.conversation(frame.conv);
    conv.typing.set(frame.from, Date.now() + TYPING_SHOWN_MS);
    invalidate('sidebar');
    if (conv.id === chat.current) invalidate('conv');
    this.scheduleExpiry();
  }

  /** Redraws when the earliest "is typing" expires. */
  scheduleExpiry() {
    const { chat, invalidate } = this.app;
    clearTimeout(this.expiryTimer);
    let earliest = Infinity;
    for (const conv of chat.convs.values()) for (const until of conv.typing.values()) earliest = Math.min(earliest, until);
    if (earliest === Infinity) return;
    this.expiryTimer = setTimeout(
      () => {
        const now = Date.now();
        for (const conv of chat.convs.values()) {
          for (const [user, until] of conv.typing) if (until <= now) conv.typing.delete(user);
        }
        invalidate('sidebar', 'conv');
        this.scheduleExpiry();
      },
      Math.max(50, earliest - Date.now()),
    );
  }

  /** The message box of `conv` changed and is not empty: the others hear we are typing. */
  typed(conv) {
    const now = Date.now();
    if (now - conv.lastTypingSent < TYPING_EVERY_MS) return;
    if (this.app.send({ type: 'typing', ...targetOf(conv) })) conv.lastTypingSent = now;
  }

  /** A message went out: the next key press says "typing" again at once. */
  sent(conv) {
    conv.lastTypingSent = 0;
  }
}
