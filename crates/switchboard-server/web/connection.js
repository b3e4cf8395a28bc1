// The link to the server: one WebSocket at a time, speaking Switchboard's native protocol
// (docs/protocol.md). Before every (re)connect it asks the gateway which node to use (gateway.js);
// it sends the login frame on every connect, matches answers to requests by `ref`, pings to notice
// a dead link, and reconnects by itself with backoff until it is stopped.

export const PROTOCOL = 1;

/** First reconnect delay; it doubles on every failed attempt up to the maximum. */
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10_000;
/** A connection that has not logged in this long after it was opened is given up and retried. */
const LOGIN_TIMEOUT_MS = 15_000;
/** While logged in, a `ping` request goes out this often; no `pong` in time means a dead link. */
const PING_EVERY_MS = 25_000;
const PING_TIMEOUT_MS = 10_000;

/** An `error` frame answering a request, or `disconnected` when the connection ended first. */
export class RequestError extends Error {
  constructor(frame) {
    super(frame.message || frame.code);
    this.code = frame.code;
    this.retryAfterMs = frame.retry_after_ms;
  }
}

/**
 * States, in `status.state`:
 * - `idle`: never started; `stopped`: stopped for good (logout, no session, incompatible server);
 * - `connecting`: asking the gateway for a node, the socket is opening, or the login frame is on
 *   its way;
 * - `syncing`: logged in (`session` received), missed messages are arriving;
 * - `ready`: `synced` received, live;
 * - `waiting`: the link is down, the next attempt is at `status.retryAt`;
 * - `offline`: the link is down and the browser says the network is too.
 */
export class Connection {
  /**
   * @param {{choose(): Promise<{url: string}>, failed(url: string): void, succeeded(url: string): void}} gateway
   *   picks the WebSocket URL before each connect (gateway.js) and hears how it went
   * @param {object} handlers
   *   loginFrame(): the login frame to send on each connect (`resume` with cursors, or `login`);
   *   onSession(session): a login succeeded;
   *   onFrame(frame): every server frame that is not the answer to a request of ours;
   *   onLoginError(error): a login failed; return 'stop' or 'retry';
   *   onStatus(status): the state changed;
   *   onStopped(reason): stopped for good by the server's answer (not by `stop()`).
   */
  constructor(gateway, handlers) {
    this.gateway = gateway;
    this.handlers = handlers;
    this.socket = null;
    /** The URL of the current (or last) socket. */
    this.url = null;
    /** Counts connect attempts; a gateway answer for an attempt that is no longer current is dropped. */
    this.attempt = 0;
    /** True while the gateway is being asked (no socket yet). */
    this.choosing = false;
    /** The current socket logged in: a close before that is a failed connect. */
    this.socketLoggedIn = false;
    this.status = { state: 'idle', node: null, url: null, retryAt: 0, closeCode: null };
    /** The longest message the server takes, in characters (its `hello` says; 4000 by default). */
    this.maxTextChars = 4000;
    /** Failed attempts since the last successful sync: the backoff exponent. */
    this.failures = 0;
    this.nextRef = 1;
    /** ref -> {resolve, reject, timer} of requests waiting for their answer. */
    this.pending = new Map();
    this.retryTimer = null;
    this.loginTimer = null;
    this.pingTimer = null;
    window.addEventListener('online', () => this.retryNow());
    window.addEventListener('offline', () => {
      if (this.status.state === 'waiting') this.setStatus({ state: 'offline' });
    });
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') this.retryNow();
    });
  }

  get ready() {
    return this.status.state === 'ready';
  }

  /** True while logged in (syncing or ready): requests may be sent. */
  get loggedIn() {
    return this.status.state === 'ready' || this.status.state === 'syncing';
  }

  /**
   * Connects (or reconnects) unless a connection is already up or opening: asks the gateway for the
   * node to use, then opens the socket.
   */
  start() {
    if (this.socket || this.choosing) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const attempt = ++this.attempt;
    this.choosing = true;
    this.setStatus({ state: 'connecting', retryAt: 0 });
    this.gateway.choose().then(({ url }) => {
      if (attempt !== this.attempt) return; // stopped (or restarted) meanwhile
      this.choosing = false;
      this.open(url);
    });
  }

  open(url) {
    this.url = url;
    this.socketLoggedIn = false;
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (error) {
      console.warn('cannot open the websocket', url, error);
      this.gateway.failed(url);
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    this.setStatus({ state: 'connecting', url, retryAt: 0 });
    // The server closes a connection that does not log in within its auth timeout; this guards
    // against a node that never answers the connect (dropped packets) or the login.
    this.loginTimer = setTimeout(() => socket === this.socket && this.drop(), LOGIN_TIMEOUT_MS);
    socket.addEventListener('open', () => socket === this.socket && this.onOpen());
    socket.addEventListener('message', (event) => socket === this.socket && this.onMessage(event.data));
    socket.addEventListener('close', (event) => socket === this.socket && this.onClosed(event.code));
    // An `error` event is followed by `close`, which does the work; except when the browser blocked
    // the connect (Chromium, for a URL the Content-Security-Policy refuses): then the socket is
    // closed without a `close` event.
    socket.addEventListener('error', () => {
      setTimeout(() => socket === this.socket && socket.readyState === WebSocket.CLOSED && this.onClosed(1006), 0);
    });
  }

  /** Skips the backoff wait (after the network came back, the tab became visible, or a click). */
  retryNow() {
    if (this.status.state === 'waiting' || this.status.state === 'offline') this.start();
  }

  /** Stops for good: no reconnect until `start()` is called again. */
  stop() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.attempt += 1;
    this.choosing = false;
    const socket = this.socket;
    this.socket = null;
    this.cleanUp();
    if (socket) socket.close(1000);
    this.failures = 0;
    this.setStatus({ state: 'stopped', node: null, retryAt: 0 });
  }

  /**
   * Sends a request and resolves with its answer (rejects with a RequestError for an `error`
   * answer, a lost connection or a timeout).
   */
  request(frame, { timeoutMs = 0 } = {}) {
    return new Promise((resolve, reject) => {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) {
        reject(new RequestError({ code: 'disconnected', message: 'not connected' }));
        return;
      }
      const ref = `r${this.nextRef++}`;
      const entry = { resolve, reject, timer: null };
      if (timeoutMs > 0) {
        entry.timer = setTimeout(() => {
          this.pending.delete(ref);
          reject(new RequestError({ code: 'timeout', message: 'no answer in time' }));
        }, timeoutMs);
      }
      this.pending.set(ref, entry);
      this.socket.send(JSON.stringify({ ...frame, ref }));
    });
  }

  /** Sends a frame that needs no answer (`typing`); false when not logged in. */
  send(frame) {
    if (!this.loggedIn || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  onOpen() {
    const socket = this.socket;
    const frame = this.handlers.loginFrame();
    if (!frame) {
      this.stop();
      return;
    }
    this.request(frame).then(
      (session) => {
        if (socket !== this.socket) return;
        clearTimeout(this.loginTimer);
        this.socketLoggedIn = true;
        this.setStatus({ state: 'syncing', node: session.node });
        this.handlers.onSession(session);
      },
      (error) => {
        if (socket !== this.socket || error.code === 'disconnected') return;
        clearTimeout(this.loginTimer);
        const decision = this.handlers.onLoginError(error);
        if (decision === 'retry') this.drop(error.retryAfterMs ?? 0, { nodeFailed: false });
        else this.stop();
      },
    );
  }

  onMessage(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      console.warn('unreadable frame from the server', data);
      return;
    }
    if (frame === null || typeof frame !== 'object') return;
    if (frame.type === 'hello') {
      if (typeof frame.max_text_chars === 'number') this.maxTextChars = frame.max_text_chars;
      if (frame.protocol !== PROTOCOL) {
        console.error(`the server speaks protocol ${frame.protocol}, this client ${PROTOCOL}`);
        this.stop();
        this.handlers.onStopped('incompatible');
      }
      return;
    }
    if (frame.ref !== undefined && this.pending.has(frame.ref)) {
      const entry = this.pending.get(frame.ref);
      this.pending.delete(frame.ref);
      clearTimeout(entry.timer);
      if (frame.type === 'error') entry.reject(new RequestError(frame));
      else entry.resolve(frame);
      return;
    }
    if (frame.type === 'synced') {
      this.failures = 0;
      this.gateway.succeeded(this.url);
      this.setStatus({ state: 'ready' });
      this.schedulePing();
    }
    this.handlers.onFrame(frame);
  }

  onClosed(code) {
    this.socket = null;
    this.cleanUp();
    // Refused, dropped (1006), or the node going away (1001, 1012): the next attempts avoid this
    // node for a while, even if the gateway still names it. Other closes (4008 slow consumer, 4029
    // flooding...) say nothing against the node.
    if (!this.socketLoggedIn || [1001, 1006, 1012].includes(code)) this.gateway.failed(this.url);
    this.setStatus({ closeCode: code });
    // 1000 comes after our own logout (then `stop()` ran first and this is not reached) or in
    // answer to a close of ours; everything else (1012 restart, 4008 slow consumer, 4001 ping
    // timeout, 1006 dropped link, 4000 login timeout, 4029 flooding) means: come back and resume.
    this.scheduleRetry(code === 4029 ? BACKOFF_MAX_MS : 0);
  }

  /**
   * Abandons the current socket and schedules a new attempt; `nodeFailed` (a dead link, a login
   * timeout) makes the next attempt avoid this node, unlike a login the server asked to retry.
   */
  drop(minDelayMs = 0, { nodeFailed = true } = {}) {
    const socket = this.socket;
    this.socket = null;
    this.cleanUp();
    if (socket && nodeFailed) this.gateway.failed(this.url);
    if (socket) socket.close(1000);
    this.scheduleRetry(minDelayMs);
  }

  cleanUp() {
    clearTimeout(this.loginTimer);
    clearTimeout(this.pingTimer);
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(new RequestError({ code: 'disconnected', message: 'the connection closed' }));
    }
    this.pending.clear();
  }

  /** Backoff: 0.5 s doubling to 10 s, each delay drawn from its upper half (jitter). */
  scheduleRetry(minDelayMs = 0) {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.failures);
    const delay = Math.max(minDelayMs, ceiling / 2 + Math.random() * (ceiling / 2));
    this.failures += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.start(), delay);
    this.setStatus({ state: navigator.onLine === false ? 'offline' : 'waiting', retryAt: Date.now() + delay });
  }

  schedulePing() {
    clearTimeout(this.pingTimer);
    const socket = this.socket;
    this.pingTimer = setTimeout(() => {
      if (socket !== this.socket) return;
      this.request({ type: 'ping' }, { timeoutMs: PING_TIMEOUT_MS }).then(
        () => socket === this.socket && this.schedulePing(),
        (error) => {
          if (socket !== this.socket) return;
          if (error.code === 'timeout') this.drop();
          else this.schedulePing();
        },
      );
    }, PING_EVERY_MS);
  }

  setStatus(changes) {
    this.status = { ...this.status, ...changes };
    this.handlers.onStatus(this.status);
  }
}
