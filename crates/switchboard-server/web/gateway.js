// Where to connect: before every connect and reconnect the page asks the cluster's gateway
// (`GET /api/connect` on the server that served the page, docs/protocol.md §12) for the
// least-loaded live node, and connects to the WebSocket URL it names. Without a usable answer (no
// gateway, an error, a URL this page cannot open) it connects to the page's own server at `/ws`.
//
// A node whose connection just failed is avoided for a while even if the gateway still names it
// (a node killed without a word stays listed until its heartbeats time out): the page's own server
// is used instead, since it has just answered. Behind a proxy the nodes' `--public-url`s must be
// URLs browsers can reach, or the page spends a failed attempt before it uses its own server.

/** How long the page waits for the gateway before using its own server. */
const GATEWAY_TIMEOUT_MS = 3000;
/** How long a node URL whose connection failed is avoided. */
const AVOID_FAILED_MS = 15_000;
/** Loopback host names: in a URL they mean the browser's own machine, not the node's. */
const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/;

export class Gateway {
  constructor() {
    /** node URL -> when a connection to it last failed. */
    this.failedAt = new Map();
  }

  /** The page's own server's WebSocket endpoint: the fallback. */
  get ownUrl() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${location.host}/ws`;
  }

  /**
   * The URL to connect to now, and which node the gateway named (null when it named none usable).
   * Never rejects: every failure ends in `{url: ownUrl, node: null}`.
   */
  async choose() {
    const named = await this.ask();
    if (named && !this.recentlyFailed(named.url)) return named;
    return { url: this.ownUrl, node: null };
  }

  /** `{url, node}` from `/api/connect`, or null. */
  async ask() {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), GATEWAY_TIMEOUT_MS);
    try {
      const response = await fetch('/api/connect', { cache: 'no-store', signal: abort.signal });
      if (!response.ok) return null;
      const answer = await response.json();
      const url = usableUrl(answer?.url);
      return url ? { url, node: typeof answer.node === 'string' ? answer.node : null } : null;
    } catch {
      // The page's server is down or too slow, or the answer is not JSON.
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  /** A connection to `url` failed (refused, dropped, or closed before logging in). */
  failed(url) {
    this.failedAt.set(url, Date.now());
  }

  /** A connection to `url` logged in and synced. */
  succeeded(url) {
    this.failedAt.delete(url);
  }

  recentlyFailed(url) {
    const at = this.failedAt.get(url);
    return at !== undefined && Date.now() - at < AVOID_FAILED_MS;
  }
}

/**
 * `text` as a WebSocket URL this page can open, or null: `ws:` or `wss:` (only `wss:` from an
 * https page, which may not open plain sockets), and a host this browser can reach: not the
 * unspecified address of a node listening on all interfaces without a `--public-url`, and not a
 * loopback address unless the page itself came from one (a node's 127.0.0.1 is the browser's own
 * machine only when both are the same machine).
 */
export function usableUrl(text) {
  if (typeof text !== 'string' || text === '') return null;
  let url;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if (url.protocol !== 'wss:' && !(url.protocol === 'ws:' && location.protocol !== 'https:')) return null;
  if (['0.0.0.0', '[::]', ''].includes(url.hostname)) return null;
  if (LOOPBACK.test(url.hostname) && !LOOPBACK.test(location.hostname)) return null;
  if (url.username || url.password) return null;
  url.hash = '';
  return url.href;
}
