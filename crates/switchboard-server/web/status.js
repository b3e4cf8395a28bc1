// The status line at the top (connected, catching up, reconnecting in N s, offline), and the toasts
// that report an action the server refused.

import { h, byId } from './dom.js';

/** How long a toast stays up. */
const TOAST_MS = 4000;

export class StatusLine {
  /** `status()`: the connection's status (connection.js); `me()`: the logged-in user's name. */
  constructor(status, me) {
    this.status = status;
    this.me = me;
    this.timer = null;
  }

  render() {
    const status = this.status();
    const line = byId('status');
    const text = byId('status-text');
    const retry = byId('status-retry');
    clearTimeout(this.timer);
    line.dataset.state = status.state;
    retry.hidden = true;
    text.title = '';
    switch (status.state) {
      case 'ready':
      case 'syncing':
        // People want to know they are connected; which node, and where, is for whoever asks.
        text.textContent = status.state === 'ready' ? 'Connected' : 'Catching up…';
        text.title = `node ${status.node} · ${status.url ?? ''}`;
        text.dataset.node = status.node ?? '';
        text.dataset.url = status.url ?? '';
        break;
      case 'connecting':
        // Any close seen before (a socket closed with no code reports 0) makes this a reconnect.
        text.textContent = status.closeCode !== null ? 'reconnecting…' : 'connecting…';
        break;
      case 'waiting': {
        const seconds = Math.max(1, Math.ceil((status.retryAt - Date.now()) / 1000));
        text.textContent = `reconnecting in ${seconds} s…`;
        retry.hidden = false;
        this.timer = setTimeout(() => this.render(), 250);
        break;
      }
      case 'offline':
        text.textContent = 'offline';
        retry.hidden = false;
        break;
      default:
        text.textContent = 'not connected';
    }
    byId('me-name').textContent = this.me() ?? '';
  }
}

/** Stopped for good (the server speaks another protocol): the status line says why. */
export function showFatal(text) {
  byId('status-text').textContent = text;
  byId('status').dataset.state = 'error';
}

let toastTimer = null;
export function showToast(text) {
  let toast = document.getElementById('toast');
  if (!toast) {
    toast = h('div', { id: 'toast', class: 'toast', role: 'alert' });
    document.body.append(toast);
  }
  toast.textContent = text;
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (toast.hidden = true), TOAST_MS);
}
