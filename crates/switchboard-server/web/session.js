// Being logged in: the login screen (log in or register), the session token kept in localStorage
// across reloads, the live connection (a new one for every login; it resumes with the token on
// every reconnect), logout, and following other tabs that log out or in. The other modules send
// their requests through this object (`server`), whichever connection is live.

import { Connection } from './connection.js';
import { byId } from './dom.js';
import { ERROR_TEXT, errorText } from './errors.js';
import { showFatal } from './status.js';
import { loadJson } from './storage.js';

/** localStorage: `{token, user}` of the logged-in session. */
const SESSION_KEY = 'switchboard.session';

export class Session {
  /**
   * `app`: `{gateway (gateway.js), cursors() (sent with `resume`), onSession(session),
   * onFrame(frame), onStatus(), load(user) (the cursors and outbox kept for `user`), forget()
   * (clears everything else kept about the session, in this tab and in storage)}`.
   */
  constructor(app) {
    this.app = app;
    /** `{token, user}` of the logged-in session, or null. */
    this.current = null;
    /** The live connection (connection.js); null before the first login. */
    this.connection = null;
  }

  wire() {
    byId('login-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const kind = event.submitter?.value === 'register' ? 'register' : 'login';
      this.submitLogin(kind);
    });
    byId('logout-button').addEventListener('click', () => this.logout());
    byId('status-retry').addEventListener('click', () => this.connection?.retryNow());
    window.addEventListener('storage', (event) => this.onStorage(event));
  }

  // -------------------------------------------------------------------------------------------
  // The live connection, for the other modules

  /** True while logged in (syncing or ready): requests may be sent. */
  get loggedIn() {
    return Boolean(this.connection?.loggedIn);
  }

  /** The longest message the server takes, in characters. */
  get maxTextChars() {
    return this.connection?.maxTextChars ?? 4000;
  }

  get status() {
    return this.connection?.status ?? { state: 'idle' };
  }

  /** Sends a request; a promise of its answer (connection.js). */
  request(frame, options) {
    return this.connection.request(frame, options);
  }

  /** Sends a frame that needs no answer; false when not logged in. */
  send(frame) {
    return this.connection.send(frame);
  }

  /** Listings come in pages: asks for each next one until the answer's `next_cursor` is null. */
  async eachPage(request, onPage) {
    let cursor = null;
    do {
      const page = await this.request(cursor ? { ...request, cursor } : request);
      onPage(page);
      cursor = page.next_cursor;
    } while (cursor);
  }

  // -------------------------------------------------------------------------------------------
  // The session

  /** The session kept from an earlier visit (or another tab), or null. */
  stored() {
    return loadJson(localStorage, SESSION_KEY);
  }

  save(session) {
    this.current = session;
    localStorage.setItem(SESSION_KEY, JSON.stringify(session));
  }

  /** Connects with a new connection; `overrides` replace its default handlers (a first login's). */
  start(overrides = {}) {
    this.connection?.stop();
    this.connection = new Connection(this.app.gateway, {
      loginFrame: () => this.resumeFrame(),
      onSession: (session) => this.app.onSession(session),
      onFrame: (frame) => this.app.onFrame(frame),
      onLoginError: (error) => this.onResumeError(error),
      onStatus: () => this.app.onStatus(),
      onStopped: (reason) => {
        if (reason === 'incompatible') showFatal('This server speaks another protocol version. Reload the page.');
      },
      ...overrides,
    });
    this.connection.start();
  }

  resumeFrame() {
    if (!this.current) return null;
    return { type: 'resume', token: this.current.token, cursors: this.app.cursors() };
  }

  /** A `resume` failed: an ended session shows the login form, anything else is retried. */
  onResumeError(error) {
    if (error.code === 'invalid_token') {
      this.forget();
      this.showLogin(ERROR_TEXT.invalid_token);
      return 'stop';
    }
    // store_unavailable, login_throttled (after retry_after_ms), internal: try again later.
    return 'retry';
  }

  /** Clears everything kept about the session, in this tab and in storage. */
  forget() {
    localStorage.removeItem(SESSION_KEY);
    this.current = null;
    this.app.forget();
  }

  async logout() {
    const current = this.connection;
    if (current?.loggedIn) {
      try {
        await current.request({ type: 'logout' }, { timeoutMs: 3000 });
      } catch (error) {
        console.warn('logout', error);
      }
    }
    current?.stop();
    this.forget();
    this.showLogin();
  }

  /** Another tab logged out (the token is gone from storage): follow. Or logged in: adopt it. */
  onStorage(event) {
    if (event.key !== SESSION_KEY && event.key !== null) return;
    const stored = this.stored();
    if (this.current && !stored) {
      this.connection?.stop();
      this.forget();
      this.showLogin('You logged out in another tab.');
    } else if (!this.current && stored && !byId('login').hidden) {
      this.current = stored;
      this.app.load(stored.user);
      this.showApp();
      this.start();
    }
  }

  // -------------------------------------------------------------------------------------------
  // The login screen

  showLogin(message = '') {
    byId('app').hidden = true;
    byId('login').hidden = false;
    byId('login-error').textContent = message;
    byId('login-status').textContent = '';
    this.setLoginBusy(false);
    document.title = 'Switchboard';
    byId('login-username').focus();
  }

  showApp() {
    byId('login').hidden = true;
    byId('app').hidden = false;
  }

  setLoginBusy(busy) {
    for (const id of ['login-button', 'register-button', 'login-username', 'login-password']) byId(id).disabled = busy;
  }

  /** Logs in (or registers) on a connection of its own; on success it becomes the live connection. */
  submitLogin(kind) {
    const username = byId('login-username').value.trim().toLowerCase();
    const password = byId('login-password').value;
    const errorLine = byId('login-error');
    errorLine.textContent = '';
    if (!username) {
      errorLine.textContent = 'Enter a user name.';
      return;
    }
    if (kind === 'register' && password.length < 6) {
      errorLine.textContent = ERROR_TEXT.invalid_password;
      return;
    }
    this.setLoginBusy(true);
    byId('login-status').textContent = 'Connecting…';
    let frame = { type: kind, username, password };
    this.start({
      loginFrame: () => {
        // The first connect sends the credentials; any later reconnect resumes with the token.
        const first = frame;
        frame = null;
        return first ?? this.resumeFrame();
      },
      onLoginError: (error) => {
        // After the first login succeeded, reconnects resume: their errors are handled as usual.
        if (this.current) return this.onResumeError(error);
        this.setLoginBusy(false);
        byId('login-status').textContent = '';
        errorLine.textContent = errorText(error);
        return 'stop';
      },
    });
  }
}
