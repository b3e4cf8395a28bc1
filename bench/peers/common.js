'use strict';
// What both peer servers share: settings, the subset of Switchboard's native protocol the load
// generator (`switchboard bench`) uses, and /metrics. Nothing is persisted: sequence numbers are
// in-memory counters per conversation on the node that accepts the message.

const crypto = require('node:crypto');
const jsonwebtoken = require('jsonwebtoken');

const PROTOCOL = 1;
const MAX_FRAME_BYTES = 65536;
const MAX_TEXT_CHARS = 4000;
const SESSION_TTL_MS = 30 * 24 * 3600 * 1000;
const JWT_LEEWAY_SECS = 60;

/**
 * Settings from flags (`--port 3001`), then environment variables (`PORT`), then defaults:
 * port, host, node id, the HS256 secret of `login_jwt`, and the Redis URL (none: a single node
 * that talks to no broker).
 */
function settings(name, defaultPort) {
  const flags = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!match) throw new Error(`unexpected argument ${argv[i]}`);
    flags[match[1]] = match[2] !== undefined ? match[2] : argv[++i];
  }
  const env = process.env;
  const port = Number(flags.port || env.PORT || defaultPort);
  const out = {
    port,
    host: flags.host || env.HOST || '127.0.0.1',
    nodeId: flags['node-id'] || env.NODE_ID || `${name}-${port}`,
    jwtSecret: flags['jwt-secret'] || env.JWT_SECRET || env.SWITCHBOARD_JWT_SECRET,
    redisUrl: flags.redis || env.REDIS_URL || '',
    server: `${name}/0.1.0`,
  };
  if (!out.jwtSecret) throw new Error('set the HS256 secret: --jwt-secret S or JWT_SECRET');
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`bad port ${port}`);
  return out;
}

const NAME = /^[a-z0-9_][a-z0-9_.-]*$/;

/** A user (max 32) or room (max 64) name, trimmed and lowercased; `null` if invalid. */
function normName(value, max) {
  if (typeof value !== 'string') return null;
  const name = value.trim().toLowerCase();
  return name.length >= 1 && name.length <= max && NAME.test(name) ? name : null;
}

function dmConv(a, b) {
  return a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
}

/** A `ref` worth echoing: a string of at most 64 bytes or a non-negative integer. */
function validRef(ref) {
  return (typeof ref === 'string' && Buffer.byteLength(ref) <= 64) || (Number.isSafeInteger(ref) && ref >= 0);
}

function errorFrame(ref, code, message) {
  const frame = { type: 'error' };
  if (ref !== undefined) frame.ref = ref;
  frame.code = code;
  frame.message = message;
  return frame;
}

function helloFrame(config) {
  return {
    type: 'hello',
    protocol: PROTOCOL,
    server: config.server,
    node: config.nodeId,
    max_frame_bytes: MAX_FRAME_BYTES,
    max_text_chars: MAX_TEXT_CHARS,
    auth: ['login_jwt'],
  };
}

/**
 * The HS256 key for [`verifyJwt`]: a KeyObject made once (given a string, jsonwebtoken first tries
 * it as a public key on every call and catches the failure, which costs more than the HMAC).
 */
function jwtKey(secret) {
  return crypto.createSecretKey(Buffer.from(secret, 'utf8'));
}

/** Checks a `login_jwt` frame's JWT against a [`jwtKey`]: `{user}` or `{code, message}`. */
function verifyJwt(key, jwt) {
  if (typeof jwt !== 'string') return { code: 'invalid_field', message: 'jwt must be a string' };
  let claims;
  try {
    claims = jsonwebtoken.verify(jwt, key, { algorithms: ['HS256'], clockTolerance: JWT_LEEWAY_SECS });
  } catch (error) {
    return { code: 'invalid_jwt', message: `the jwt does not verify: ${error.message}` };
  }
  if (typeof claims !== 'object' || typeof claims.exp !== 'number') {
    return { code: 'invalid_jwt', message: 'the jwt has no exp' };
  }
  if (claims.aud !== undefined) return { code: 'invalid_jwt', message: 'the jwt has an aud' };
  const user = normName(claims.sub, 32);
  if (!user) return { code: 'invalid_jwt', message: 'the jwt sub is not a valid user name' };
  return { user };
}

/** The frames that answer a login: `session`, an empty `sync`, `synced`. */
function loginFrames(config, ref, user, conn) {
  const session = { type: 'session' };
  if (ref !== undefined) session.ref = ref;
  session.user = user;
  session.token = crypto.randomBytes(32).toString('base64url');
  session.expires_at = Date.now() + SESSION_TTL_MS;
  session.resumed = false;
  session.node = config.nodeId;
  session.conn = conn;
  return [session, { type: 'sync', conversations: [] }, { type: 'synced', messages: 0 }];
}

/**
 * Reads a `send` frame: `{to}` or `{room}` with `text`, or `{code, message}`.
 */
function readSend(frame) {
  const hasTo = frame.to !== undefined;
  const hasRoom = frame.room !== undefined;
  if (hasTo === hasRoom) return { code: 'invalid_field', message: 'exactly one of to and room' };
  const target = hasTo ? normName(frame.to, 32) : normName(frame.room, 64);
  if (!target) return { code: 'invalid_name', message: hasTo ? 'bad user name' : 'bad room name' };
  const text = frame.text;
  if (typeof text !== 'string') return { code: 'invalid_field', message: 'text must be a string' };
  if (text.trim() === '') return { code: 'empty_text', message: 'the text is empty' };
  if (text.length > MAX_TEXT_CHARS && [...text].length > MAX_TEXT_CHARS) {
    return { code: 'text_too_long', message: `at most ${MAX_TEXT_CHARS} characters` };
  }
  if (text.includes('\u0000')) return { code: 'invalid_field', message: 'text holds a NUL character' };
  return hasTo ? { to: target, text } : { room: target, text };
}

/** In-memory sequence numbers per conversation, and message ids (32 hex characters). */
class Messages {
  constructor() {
    this.seqs = new Map();
    this.tag = crypto.randomBytes(2).toString('hex');
    this.count = 0;
  }

  /**
   * The `ack` for the sender and the `message` for everyone else, as objects.
   * `target` is `{to}` or `{room}`.
   */
  accept(from, target, text, ref) {
    const conv = target.room !== undefined ? `room:${target.room}` : dmConv(from, target.to);
    const seq = (this.seqs.get(conv) || 0) + 1;
    this.seqs.set(conv, seq);
    const ts = Date.now();
    const id = ts.toString(16).padStart(12, '0') + this.tag + (++this.count).toString(16).padStart(16, '0');
    const ack = { type: 'ack' };
    if (ref !== undefined) ack.ref = ref;
    Object.assign(ack, { conv, id, seq, ts, duplicate: false });
    const message = { type: 'message', conv, id, seq, from };
    if (target.room !== undefined) message.room = target.room;
    else message.to = target.to;
    message.text = text;
    message.ts = ts;
    return { ack, message };
  }
}

/** Counters shown on /metrics, named like Switchboard's so that the bench reads them alike. */
class Metrics {
  constructor() {
    this.connections = 0; // logged in
    this.connectionsTotal = 0;
    this.deliveries = 0; // message frames queued to recipient connections
    this.busSent = 0;
    this.busReceived = 0;
    this.withBus = false;
  }

  render() {
    const cpu = process.cpuUsage();
    const lines = [];
    const metric = (name, type, help, value) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`);
    };
    metric('process_cpu_seconds_total', 'counter', 'User and system CPU time spent in seconds.', (cpu.user + cpu.system) / 1e6);
    metric('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes.', process.memoryUsage.rss());
    metric('switchboard_connections', 'gauge', 'Logged-in connections.', this.connections);
    metric('switchboard_connections_total', 'counter', 'Connections logged in since start.', this.connectionsTotal);
    metric('switchboard_deliveries_total', 'counter', 'Message frames queued to recipient connections.', this.deliveries);
    if (this.withBus) {
      metric('switchboard_bus_messages_sent_total', 'counter', 'Messages published on Redis.', this.busSent);
      metric('switchboard_bus_messages_received_total', 'counter', 'Messages received from Redis.', this.busReceived);
    }
    return lines.join('\n') + '\n';
  }
}

/** The HTTP handler beside the WebSocket endpoint: /metrics and /healthz. */
function httpHandler(metrics) {
  return (request, response) => {
    const path = request.url.split('?')[0];
    if (request.method === 'GET' && path === '/metrics') {
      response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      response.end(metrics.render());
    } else if (request.method === 'GET' && path === '/healthz') {
      response.writeHead(200, { 'content-type': 'text/plain' });
      response.end('ok\n');
    } else {
      response.writeHead(404, { 'content-type': 'text/plain' });
      response.end('not found\n');
    }
  };
}

function onSignals(stop) {
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, stop);
}

module.exports = {
  PROTOCOL,
  MAX_FRAME_BYTES,
  settings,
  normName,
  validRef,
  errorFrame,
  helloFrame,
  jwtKey,
  verifyJwt,
  loginFrames,
  readSend,
  Messages,
  Metrics,
  httpHandler,
  onSignals,
};
