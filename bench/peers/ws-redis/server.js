'use strict';
// A plain `ws` chat server speaking the subset of Switchboard's native protocol that
// `switchboard bench` uses (seeds 003/004's design): one process per node; with REDIS_URL, users
// and rooms on other nodes are reached over Redis pub/sub, a channel per user (`u:<user>`) and per
// room (`r:<room>`), each subscribed by the nodes that hold a connection of that user or a member
// of that room. Nothing is persisted.
//
//   PORT=3001 NODE_ID=ws-1 JWT_SECRET=s [REDIS_URL=redis://127.0.0.1:6379] node ws-redis/server.js

const http = require('node:http');
const { WebSocketServer } = require('ws');
const common = require('../common');

const config = common.settings('ws-redis', 3001);
const metrics = new common.Metrics();
const messages = new common.Messages();
const jwtKey = common.jwtKey(config.jwtSecret);
const TEXT = { binary: false };
const HEARTBEAT_MS = 30_000;

/** Logged-in connections on this node, by user. */
const users = new Map();
/** Members on this node, by room (membership is the user's and outlives its connections). */
const rooms = new Map();
let nextConn = 0;

// Redis pub/sub between nodes: a message is `<origin node> <m|e>\n<frame JSON>`.
let pub = null;
let sub = null;
if (config.redisUrl) {
  const Redis = require('ioredis');
  pub = new Redis(config.redisUrl);
  sub = new Redis(config.redisUrl);
  metrics.withBus = true;
  sub.on('messageBuffer', onBusMessage);
  for (const client of [pub, sub]) client.on('error', (error) => console.error(`redis: ${error.message}`));
}
const origin = Buffer.from(config.nodeId);

function redisFailed(error) {
  console.error(`redis: ${error.message}`);
}

function publish(channel, kind, json) {
  metrics.busSent++;
  pub.publish(channel, Buffer.concat([origin, Buffer.from(` ${kind}\n`), Buffer.from(json)])).catch(redisFailed);
}

function onBusMessage(channelBuffer, message) {
  metrics.busReceived++;
  const newline = message.indexOf(10);
  if (newline < 2) return;
  // Our own publications come back when we also subscribe to the channel: already delivered.
  if (newline - 2 === origin.length && message.compare(origin, 0, origin.length, 0, origin.length) === 0) return;
  const isMessage = message[newline - 1] === 0x6d; // 'm'
  const frame = message.subarray(newline + 1);
  const channel = channelBuffer.toString();
  if (channel.startsWith('u:')) {
    deliverToUser(channel.slice(2), frame, null, isMessage);
  } else if (channel.startsWith('r:')) {
    deliverToRoom(channel.slice(2), frame, null, isMessage);
  }
}

function deliverToUser(user, data, except, isMessage) {
  const conns = users.get(user);
  if (!conns) return;
  for (const ws of conns) {
    if (ws === except) continue;
    ws.send(data, TEXT);
    if (isMessage) metrics.deliveries++;
  }
}

function deliverToRoom(room, data, except, isMessage) {
  const members = rooms.get(room);
  if (!members) return;
  for (const user of members) deliverToUser(user, data, except, isMessage);
}

function send(ws, frame) {
  ws.send(JSON.stringify(frame));
}

function fail(ws, ref, code, message) {
  send(ws, common.errorFrame(ref, code, message));
}

async function login(ws, frame, ref) {
  if (ws.user !== undefined) return fail(ws, ref, 'already_authenticated', 'already logged in');
  const checked = common.verifyJwt(jwtKey, frame.jwt);
  if (!checked.user) return fail(ws, ref, checked.code, checked.message);
  const user = checked.user;
  ws.user = user;
  let conns = users.get(user);
  if (!conns) {
    conns = new Set();
    users.set(user, conns);
    // Subscribed before `synced`, so that nothing sent to the user after it is missed.
    if (sub) {
      try {
        await sub.subscribe(`u:${user}`);
      } catch (error) {
        redisFailed(error);
        users.delete(user);
        ws.user = undefined;
        return fail(ws, ref, 'internal', 'the bus is unavailable');
      }
    }
  }
  conns.add(ws);
  metrics.connections++;
  metrics.connectionsTotal++;
  if (ws.readyState !== ws.OPEN) return forget(ws); // closed while subscribing
  for (const answer of common.loginFrames(config, ref, user, ws.conn)) send(ws, answer);
}

/** A closed connection: out of its user's set; the user's channel goes with its last one. */
function forget(ws) {
  const conns = users.get(ws.user);
  if (!conns || !conns.delete(ws)) return;
  metrics.connections--;
  if (conns.size === 0) {
    users.delete(ws.user);
    if (sub) sub.unsubscribe(`u:${ws.user}`).catch(redisFailed);
  }
}

function sendMessage(ws, frame, ref) {
  const target = common.readSend(frame);
  if (target.code) return fail(ws, ref, target.code, target.message);
  const from = ws.user;
  if (target.room !== undefined) {
    const members = rooms.get(target.room);
    if (!members) return fail(ws, ref, 'room_not_found', `no room ${target.room}`);
    if (!members.has(from)) return fail(ws, ref, 'not_a_member', `not a member of ${target.room}`);
  }
  const { ack, message } = messages.accept(from, target, target.text, ref);
  const json = JSON.stringify(message);
  const data = Buffer.from(json); // encoded once for every recipient
  send(ws, ack);
  if (target.room !== undefined) {
    deliverToRoom(target.room, data, ws, true);
    if (pub) publish(`r:${target.room}`, 'm', json);
  } else {
    deliverToUser(target.to, data, null, true);
    if (target.to !== from) deliverToUser(from, data, ws, true);
    if (pub) publish(`u:${target.to}`, 'm', json);
  }
}

async function join(ws, frame, ref) {
  const room = common.normName(frame.room, 64);
  if (!room) return fail(ws, ref, 'invalid_name', 'bad room name');
  let members = rooms.get(room);
  const created = !members;
  if (!members) {
    members = new Set();
    rooms.set(room, members);
    if (sub) {
      try {
        await sub.subscribe(`r:${room}`);
      } catch (error) {
        redisFailed(error);
        rooms.delete(room);
        return fail(ws, ref, 'internal', 'the bus is unavailable');
      }
    }
  }
  if (!members.has(ws.user)) {
    members.add(ws.user);
    const json = JSON.stringify({ type: 'member_joined', room, user: ws.user });
    deliverToRoom(room, Buffer.from(json), null, false);
    if (pub) publish(`r:${room}`, 'e', json);
  }
  const answer = { type: 'room' };
  if (ref !== undefined) answer.ref = ref;
  Object.assign(answer, { room, created, joined: true, history: [] });
  send(ws, answer);
}

function onFrame(ws, data, isBinary) {
  if (isBinary) return fail(ws, undefined, 'binary_unsupported', 'send JSON text');
  let frame;
  try {
    frame = JSON.parse(data);
  } catch {
    return fail(ws, undefined, 'bad_frame', 'not JSON');
  }
  if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
    return fail(ws, undefined, 'bad_frame', 'not a JSON object');
  }
  const ref = common.validRef(frame.ref) ? frame.ref : undefined;
  if (frame.protocol !== undefined && frame.protocol !== common.PROTOCOL) {
    return fail(ws, ref, 'unsupported_protocol', 'protocol 1 only');
  }
  const type = frame.type;
  if (typeof type !== 'string') return fail(ws, ref, 'invalid_field', "missing field 'type'");
  if (type === 'login_jwt') return login(ws, frame, ref);
  if (ws.user === undefined) {
    return fail(ws, ref, type === 'login' || type === 'resume' || type === 'register' ? 'auth_method_disabled' : 'not_authenticated', 'log in with login_jwt first');
  }
  switch (type) {
    case 'send':
      return sendMessage(ws, frame, ref);
    case 'join':
      return join(ws, frame, ref);
    case 'ping':
      return send(ws, ref === undefined ? { type: 'pong' } : { type: 'pong', ref });
    default:
      return fail(ws, ref, 'unknown_type', `unknown type ${type}`);
  }
}

const server = http.createServer(common.httpHandler(metrics));
const wss = new WebSocketServer({ noServer: true, maxPayload: common.MAX_FRAME_BYTES, perMessageDeflate: false });
server.on('upgrade', (request, socket, head) => {
  const path = request.url.split('?')[0];
  if (path !== '/ws') {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(request, socket, head, (ws) => {
    ws.conn = ++nextConn;
    ws.alive = true;
    ws.on('pong', heartbeat);
    ws.on('message', (data, isBinary) => onFrame(ws, data, isBinary));
    ws.on('close', () => forget(ws));
    ws.on('error', () => {});
    send(ws, common.helloFrame(config));
  });
});

function heartbeat() {
  this.alive = true;
}

// The usual `ws` keep-alive: ping every connection, drop those that did not answer the last ping.
const pinger = setInterval(() => {
  for (const ws of wss.clients) {
    if (!ws.alive) {
      ws.terminate();
      continue;
    }
    ws.alive = false;
    ws.ping();
  }
}, HEARTBEAT_MS);

server.listen(config.port, config.host, () => {
  console.log(`${config.server} node ${config.nodeId} on ws://${config.host}:${config.port}/ws${pub ? `, redis ${config.redisUrl}` : ''}`);
});

common.onSignals(() => {
  clearInterval(pinger);
  for (const ws of wss.clients) ws.terminate();
  server.close();
  if (pub) pub.disconnect();
  if (sub) sub.disconnect();
  setImmediate(() => process.exit(0));
});
