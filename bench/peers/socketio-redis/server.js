'use strict';
// A Socket.IO 4 chat server speaking the subset of Switchboard's native protocol that
// `switchboard bench` uses (seed 002's design): one process per node; with REDIS_URL, the
// `@socket.io/redis-adapter` carries every broadcast to every node. Each user's sockets are in the
// room `user:<name>`, each chat room's in `room:<name>`; messages go out with `to(room).emit`.
// The native JSON frames travel as the one argument of a `frame` event in both directions
// (`42["frame",{...}]` on the wire). Nothing is persisted.
//
//   PORT=3101 NODE_ID=sio-1 JWT_SECRET=s [REDIS_URL=redis://127.0.0.1:6379] node socketio-redis/server.js

const http = require('node:http');
const { Server } = require('socket.io');
const { Adapter } = require('socket.io-adapter');
const common = require('../common');

const config = common.settings('socketio-redis', 3101);
const metrics = new common.Metrics();
const messages = new common.Messages();
const jwtKey = common.jwtKey(config.jwtSecret);
const EVENT = 'frame';
let nextConn = 0;

/**
 * Counts the recipients of broadcast `message` frames (local and from other nodes) as
 * deliveries: the adapter encodes a broadcast once (`_encode`), then writes it to each socket it
 * selects (`apply`).
 */
function counting(Base) {
  return class extends Base {
    _encode(packet, packetOpts) {
      const data = packet.data;
      this.countNext = Array.isArray(data) && data[1] !== null && typeof data[1] === 'object' && data[1].type === 'message';
      return super._encode(packet, packetOpts);
    }

    apply(opts, callback) {
      if (!this.countNext) return super.apply(opts, callback);
      this.countNext = false;
      return super.apply(opts, (socket) => {
        metrics.deliveries++;
        callback(socket);
      });
    }
  };
}

const server = http.createServer(common.httpHandler(metrics));
const io = new Server(server, {
  serveClient: false,
  maxHttpBufferSize: common.MAX_FRAME_BYTES,
  perMessageDeflate: false,
});
let redis = [];
if (config.redisUrl) {
  const Redis = require('ioredis');
  const { RedisAdapter } = require('@socket.io/redis-adapter');
  const pub = new Redis(config.redisUrl);
  const sub = pub.duplicate();
  redis = [pub, sub];
  metrics.withBus = true;
  const publish = pub.publish.bind(pub);
  pub.publish = (...args) => {
    metrics.busSent++;
    return publish(...args);
  };
  sub.on('pmessageBuffer', () => metrics.busReceived++);
  sub.on('messageBuffer', () => metrics.busReceived++);
  for (const client of redis) client.on('error', (error) => console.error(`redis: ${error.message}`));
  const CountingRedisAdapter = counting(RedisAdapter);
  io.adapter(function (nsp) {
    return new CountingRedisAdapter(nsp, pub, sub);
  });
} else {
  io.adapter(counting(Adapter));
}

function fail(socket, ref, code, message) {
  socket.emit(EVENT, common.errorFrame(ref, code, message));
}

function login(socket, frame, ref) {
  if (socket.data.user !== undefined) return fail(socket, ref, 'already_authenticated', 'already logged in');
  const checked = common.verifyJwt(jwtKey, frame.jwt);
  if (!checked.user) return fail(socket, ref, checked.code, checked.message);
  const user = checked.user;
  socket.data.user = user;
  socket.join(`user:${user}`);
  metrics.connections++;
  metrics.connectionsTotal++;
  for (const answer of common.loginFrames(config, ref, user, socket.data.conn)) socket.emit(EVENT, answer);
}

function sendMessage(socket, frame, ref) {
  const target = common.readSend(frame);
  if (target.code) return fail(socket, ref, target.code, target.message);
  const from = socket.data.user;
  if (target.room !== undefined && !socket.rooms.has(`room:${target.room}`)) {
    return fail(socket, ref, 'not_a_member', `not a member of ${target.room}`);
  }
  const { ack, message } = messages.accept(from, target, target.text, ref);
  socket.emit(EVENT, ack);
  if (target.room !== undefined) {
    socket.to(`room:${target.room}`).emit(EVENT, message);
  } else {
    // The recipient's sockets and the sender's other ones, on every node; not this socket.
    socket.to([`user:${target.to}`, `user:${from}`]).emit(EVENT, message);
  }
}

function join(socket, frame, ref) {
  const room = common.normName(frame.room, 64);
  if (!room) return fail(socket, ref, 'invalid_name', 'bad room name');
  const name = `room:${room}`;
  const created = !io.of('/').adapter.rooms.has(name);
  if (!socket.rooms.has(name)) {
    socket.join(name);
    io.to(name).emit(EVENT, { type: 'member_joined', room, user: socket.data.user });
  }
  const answer = { type: 'room' };
  if (ref !== undefined) answer.ref = ref;
  Object.assign(answer, { room, created, joined: true, history: [] });
  socket.emit(EVENT, answer);
}

function onFrame(socket, frame) {
  if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
    return fail(socket, undefined, 'bad_frame', 'not a JSON object');
  }
  const ref = common.validRef(frame.ref) ? frame.ref : undefined;
  if (frame.protocol !== undefined && frame.protocol !== common.PROTOCOL) {
    return fail(socket, ref, 'unsupported_protocol', 'protocol 1 only');
  }
  const type = frame.type;
  if (typeof type !== 'string') return fail(socket, ref, 'invalid_field', "missing field 'type'");
  if (type === 'login_jwt') return login(socket, frame, ref);
  if (socket.data.user === undefined) {
    return fail(socket, ref, type === 'login' || type === 'resume' || type === 'register' ? 'auth_method_disabled' : 'not_authenticated', 'log in with login_jwt first');
  }
  switch (type) {
    case 'send':
      return sendMessage(socket, frame, ref);
    case 'join':
      return join(socket, frame, ref);
    case 'ping':
      return socket.emit(EVENT, ref === undefined ? { type: 'pong' } : { type: 'pong', ref });
    default:
      return fail(socket, ref, 'unknown_type', `unknown type ${type}`);
  }
}

io.on('connection', (socket) => {
  socket.data.conn = ++nextConn;
  socket.on(EVENT, (frame) => onFrame(socket, frame));
  socket.on('disconnect', () => {
    if (socket.data.user !== undefined) metrics.connections--;
  });
  socket.emit(EVENT, common.helloFrame(config));
});

server.listen(config.port, config.host, () => {
  console.log(`${config.server} node ${config.nodeId} on ws://${config.host}:${config.port}/socket.io/${redis.length ? `, redis ${config.redisUrl}` : ''}`);
});

common.onSignals(() => {
  io.close();
  for (const client of redis) client.disconnect();
  setImmediate(() => process.exit(0));
});
