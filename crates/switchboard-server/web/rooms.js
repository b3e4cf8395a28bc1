// Rooms: the room list (`rooms`), creating one (public or private), joining and leaving, a room's
// member list (`members`), and the membership events that keep member counts right and put
// "X joined" / "X left" notices among the messages.

import { byId } from './dom.js';
import { errorText } from './errors.js';
import { applyListed } from './presence.js';

export class Rooms {
  /**
   * `app`: `{chat, server: {request(frame), eachPage(frame, onPage), loggedIn},
   * messageHistory (history.js), moderation (moderation.js), onPresence(user, online), openConversation(id),
   * openedConversation(conv), invalidate(...parts), toast(text)}`.
   */
  constructor(app) {
    this.app = app;
    /** Numbers the join/leave notices. */
    this.noticeCounter = 0;
  }

  wire() {
    byId('leave-button').addEventListener('click', () => {
      const conv = this.app.chat.currentConv();
      if (conv && conv.kind === 'room') this.leave(conv);
    });
    byId('join-button').addEventListener('click', () => {
      const conv = this.app.chat.currentConv();
      if (conv && conv.kind === 'room') this.join(conv.name);
    });
    byId('room-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const name = byId('room-name').value.trim().toLowerCase();
      if (name) this.create(name);
    });
    byId('rooms-refresh').addEventListener('click', () => this.app.server.loggedIn && this.refresh());
  }

  /** `member_joined` / `member_left`. */
  onMembership(roomName, user, joined) {
    const { chat, messageHistory, invalidate } = this.app;
    const conv = chat.conversation(`room:${roomName}`);
    let room = chat.rooms.get(roomName);
    if (!room) {
      room = { name: roomName, members: 0, joined: false };
      chat.rooms.set(roomName, room);
    }
    const wasMember = conv.members ? conv.members.has(user) : user === chat.me ? room.joined : !joined;
    if (joined !== wasMember) room.members = Math.max(0, room.members + (joined ? 1 : -1));
    if (conv.members) {
      if (joined) conv.members.add(user);
      else conv.members.delete(user);
    }
    if (user === chat.me) {
      room.joined = joined;
      if (!joined) {
        messageHistory.dropCursor(conv.id);
        conv.loadedLatest = false;
      }
    }
    if (joined !== wasMember) {
      const who = user === chat.me ? 'You' : user;
      conv.notices.push({
        key: `n${++this.noticeCounter}`,
        afterSeq: conv.maxSeq,
        text: `${who} ${joined ? 'joined' : 'left'} the room`,
      });
    }
    invalidate('sidebar');
    if (conv.id === chat.current) invalidate('conv');
  }

  /** Someone created a room (its creator is its one member): it joins the list, not joined. */
  onCreated(name) {
    const { chat } = this.app;
    if (chat.rooms.has(name)) return;
    chat.rooms.set(name, { name, members: 1, joined: false });
    this.app.invalidate('sidebar');
  }

  async refresh() {
    const { chat, server } = this.app;
    try {
      const fresh = new Map();
      await server.eachPage({ type: 'rooms' }, (page) => {
        for (const room of page.rooms) {
          fresh.set(room.name, { name: room.name, members: room.members, joined: room.joined, private: room.private, role: room.role });
        }
      });
      chat.rooms = fresh;
      this.app.invalidate('sidebar', 'conv');
      const conv = chat.currentConv();
      if (conv && conv.kind === 'room' && fresh.get(conv.name)?.joined) this.app.openedConversation(conv);
    } catch (error) {
      if (error.code !== 'disconnected') console.warn('rooms', error);
    }
  }

  async loadMembers(conv) {
    const { chat, server, moderation } = this.app;
    try {
      const members = new Set();
      moderation.resetMembers(conv);
      await server.eachPage({ type: 'members', room: conv.name }, (page) => {
        for (const member of page.members) {
          members.add(member.user);
        }
        moderation.takeMembers(conv, page.members);
        applyListed(page.members, this.app.onPresence);
      });
      conv.members = members;
      const room = chat.rooms.get(conv.name);
      if (room) room.members = conv.members.size;
      this.app.invalidate('conv', 'sidebar');
    } catch (error) {
      if (error.code !== 'disconnected') console.warn('members', error);
    }
  }

  async join(name) {
    const { chat, server } = this.app;
    const conv = chat.conversation(`room:${name}`);
    try {
      const answer = await server.request({ type: 'join', room: name });
      this.onAnswer(answer);
    } catch (error) {
      this.app.toast(errorText(error));
      return;
    }
    if (chat.current !== conv.id) this.app.openConversation(conv.id);
  }

  /** The answer to `join` / `create_room`: the room, joined, with its recent history. */
  onAnswer(answer) {
    const { chat, messageHistory } = this.app;
    const room = chat.rooms.get(answer.room) ?? { name: answer.room, members: 0, joined: false };
    if (!room.joined) room.members = Math.max(room.members, 1);
    room.joined = true;
    room.private = answer.private;
    room.role = answer.role;
    chat.rooms.set(answer.room, room);
    const conv = chat.conversation(`room:${answer.room}`);
    conv.loadedLatest = true;
    if (answer.history.length === 0) {
      // Nothing before the join: everything from seq 1 on is held.
      conv.hasOlder = false;
      messageHistory.holdFromStart(conv.id);
    } else {
      conv.hasOlder = answer.history[0].seq > 1;
      messageHistory.ingest(conv.id, answer.history);
    }
    this.loadMembers(conv);
    this.app.invalidate('sidebar', 'conv');
  }

  async create(name) {
    const errorLine = byId('room-error');
    errorLine.textContent = '';
    try {
      const answer = await this.app.server.request({ type: 'create_room', room: name, private: byId('room-private').checked });
      this.onAnswer(answer);
      byId('room-name').value = '';
      byId('room-private').checked = false;
      this.app.openConversation(`room:${answer.room}`);
    } catch (error) {
      errorLine.textContent = errorText(error);
      if (error.code === 'room_exists') this.refresh();
    }
  }

  async leave(conv) {
    try {
      await this.app.server.request({ type: 'leave', room: conv.name });
    } catch (error) {
      if (error.code !== 'not_a_member') {
        this.app.toast(errorText(error));
        return;
      }
    }
    this.left(conv);
  }

  /** This user is out of the room (left it, or was removed). */
  left(conv) {
    const { chat, messageHistory } = this.app;
    const room = chat.rooms.get(conv.name);
    if (room && room.joined) {
      room.joined = false;
      room.members = Math.max(0, room.members - 1);
    }
    messageHistory.dropCursor(conv.id);
    messageHistory.saveCursorsSoon();
    conv.members = null;
    conv.loadedLatest = false;
    this.app.invalidate('sidebar', 'conv');
  }
}
