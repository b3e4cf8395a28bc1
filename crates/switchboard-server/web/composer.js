// The message box: it grows with its text, checks the length limit while typing (an over-long
// message is flagged and kept, never sent only to be refused and lost), sends, replies to and edits
// messages (Up in an empty box edits one's last), and sends the changes the message menu asks for
// (edit, delete, react).

import { lastOwn, modeBar, ownEntry } from './changes.js';
import { targetOf } from './chat.js';
import { byId, setChildren } from './dom.js';
import { errorText } from './errors.js';

/** How many characters (Unicode scalar values, as the server counts) `text` is over `max`. */
export function charactersOver(text, max) {
  if (text.length <= max) return 0;
  return Math.max(0, [...text].length - max);
}

/** The warning under the composer, and whether sending is allowed. */
export function showLimit(element, button, text, max) {
  const over = charactersOver(text, max);
  element.hidden = over === 0;
  element.textContent = over === 0 ? '' : `${over} character${over === 1 ? '' : 's'} too long: messages hold up to ${max}.`;
  button.disabled = over > 0;
  return over === 0;
}

export class Composer {
  /**
   * `app`: `{chat, server: {request(frame), maxTextChars}, outbox (outbox.js), typing (typing.js),
   * ingest(convId, messages) (history.js), openConversation(id), invalidate(...parts), toast(text)}`.
   */
  constructor(app) {
    this.app = app;
    /** Replying to or editing a message: `{kind: 'reply' | 'edit', conv, message}`, or null. */
    this.mode = null;
  }

  wire() {
    const textarea = byId('composer-text');
    textarea.addEventListener('input', () => this.onInput());
    textarea.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        byId('composer').requestSubmit();
      } else if (event.key === 'ArrowUp' && textarea.value === '' && !this.mode) {
        const conv = this.app.chat.currentConv();
        if (conv && this.editLastOwn(conv)) event.preventDefault();
      } else if (event.key === 'Escape' && this.mode) {
        this.cancelMode();
      }
    });
    byId('composer').addEventListener('submit', (event) => this.submit(event));
  }

  /** The text changed: the box's height, the limit, and `typing` for the others. */
  onInput() {
    const textarea = byId('composer-text');
    textarea.style.height = 'auto';
    textarea.style.height = `${Math.min(textarea.scrollHeight, 160)}px`;
    showLimit(byId('composer-limit'), byId('send-button'), textarea.value, this.app.server.maxTextChars);
    const conv = this.app.chat.currentConv();
    if (!conv || textarea.value.trim() === '') return;
    this.app.typing.typed(conv);
  }

  submit(event) {
    event.preventDefault();
    const conv = this.app.chat.currentConv();
    const textarea = byId('composer-text');
    const text = textarea.value;
    if (!conv || text.trim() === '') return;
    // Over the limit: the warning is up and the text stays in the box to be shortened.
    if (!showLimit(byId('composer-limit'), byId('send-button'), text, this.app.server.maxTextChars)) return;
    const mode = this.mode?.conv === conv.id ? this.mode : null;
    this.mode = null;
    if (mode?.kind === 'edit') this.change(conv, { type: 'edit', seq: mode.message.seq, text });
    else this.app.outbox.send(conv, text, mode?.kind === 'reply' ? mode.message.seq : null);
    this.app.typing.sent(conv);
    textarea.value = '';
    this.onInput();
    textarea.focus();
  }

  /** Sends an `edit`, `delete` or `react`; the change shows when its entry comes back. */
  async change(conv, frame) {
    try {
      const ack = await this.app.server.request({ ...frame, ...targetOf(conv) });
      // The connection that made a change gets only the ack: apply the change here.
      this.app.ingest(conv.id, [ownEntry(frame, ack, this.app.chat.me, conv.messages)]);
      this.app.invalidate('conv');
    } catch (error) {
      this.app.toast(errorText(error));
    }
  }

  setMode(mode) {
    this.mode = mode;
    this.app.invalidate('conv');
    byId('composer-text').focus();
  }

  startEditing(conv, message) {
    const textarea = byId('composer-text');
    textarea.value = message.text;
    this.onInput();
    this.setMode({ kind: 'edit', conv: conv.id, message });
  }

  cancelMode() {
    if (this.mode?.kind === 'edit') byId('composer-text').value = '';
    this.mode = null;
    this.onInput();
    this.app.invalidate('conv');
  }

  /** Up in an empty message box edits one's last message. */
  editLastOwn(conv) {
    const last = lastOwn(conv.messages, this.app.chat.me);
    if (last) this.startEditing(conv, last);
    return Boolean(last);
  }

  /** A send the server refused: its text goes back into the box, to be changed and sent anew. */
  editFailed(entry) {
    this.app.outbox.remove(entry);
    if (this.app.chat.current !== entry.conv) this.app.openConversation(entry.conv);
    const textarea = byId('composer-text');
    textarea.value = entry.text;
    this.onInput();
    textarea.focus();
    this.app.invalidate('conv');
  }

  /** The bar above the box while replying to or editing a message of `conv`. */
  renderMode(conv, isMember) {
    const mode = this.mode?.conv === conv.id ? this.mode : null;
    byId('composer-mode').hidden = !mode || !isMember;
    setChildren(byId('composer-mode'), modeBar(mode, () => this.cancelMode()));
  }
}
