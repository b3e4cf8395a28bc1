// Private rooms, moderation and blocking: the member menu of a room's owner and moderators
// (invite by name, remove, ban, mute, promote), the block button of a private conversation, and
// the events that tell this client what others did (`invited`, `removed`, `role_changed`,
// `mute_changed`).

import { h } from './dom.js';

/** Ranks: nobody acts on a user of their own rank or above (protocol: moderation). */
const RANK = { member: 0, moderator: 1, owner: 2 };

export class Moderation {
  /**
   * `app`: `{state, request(frame), invalidate(...parts), toast(text), errorText(error),
   * conversation(id), refreshRooms(), leftRoom(conv)}`.
   */
  constructor(app) {
    this.app = app;
    /** The users this user blocks. */
    this.blocked = new Set();
  }

  /** This user's role in a room: `owner`, `moderator`, `member`, or null when not a member. */
  roleIn(roomName) {
    const room = this.app.state.rooms.get(roomName);
    return room?.joined ? (room.role ?? 'member') : null;
  }

  /** Whether this user may remove, ban or mute `user` in the room. */
  mayActOn(conv, user) {
    const mine = RANK[this.roleIn(conv.name)] ?? 0;
    const theirs = RANK[conv.roles?.get(user) ?? 'member'];
    return mine >= RANK.moderator && theirs < mine && user !== this.app.state.me;
  }

  mayInvite(conv) {
    return (RANK[this.roleIn(conv.name)] ?? 0) >= RANK.moderator;
  }

  /** A `members` listing starts over. */
  resetMembers(conv) {
    conv.roles = new Map();
    conv.muted = new Set();
  }

  /** One page of `members`: who moderates and who is muted. */
  takeMembers(conv, members) {
    for (const member of members) {
      if (member.role) conv.roles.set(member.user, member.role);
      if (member.muted) conv.muted.add(member.user);
    }
  }

  /** Handles a moderation event; returns whether `frame` was one. */
  onEvent(frame) {
    const { state } = this.app;
    const conv = this.app.conversation(`room:${frame.room}`);
    switch (frame.type) {
      case 'invited':
        this.app.toast(`${frame.by} added you to # ${frame.room}`);
        this.app.refreshRooms();
        return true;
      case 'removed': {
        const verb = frame.banned ? 'banned' : 'removed';
        this.app.toast(`${frame.by} ${verb} you from # ${frame.room}`);
        const room = state.rooms.get(frame.room);
        this.app.leftRoom(conv);
        // A private room is not listed to non-members.
        if (room?.private) state.rooms.delete(frame.room);
        this.app.invalidate('sidebar', 'conv');
        return true;
      }
      case 'role_changed': {
        if (!conv.roles) this.resetMembers(conv);
        if (frame.role === 'member') conv.roles.delete(frame.user);
        else conv.roles.set(frame.user, frame.role);
        const room = state.rooms.get(frame.room);
        if (room && frame.user === state.me) room.role = frame.role;
        this.app.invalidate('conv');
        return true;
      }
      case 'mute_changed':
        if (!conv.muted) this.resetMembers(conv);
        if (frame.muted) conv.muted.add(frame.user);
        else conv.muted.delete(frame.user);
        if (frame.user === state.me) this.app.toast(frame.muted ? `You are muted in # ${frame.room}` : `You are unmuted in # ${frame.room}`);
        this.app.invalidate('conv');
        return true;
      default:
        return false;
    }
  }

  /** Sends a moderation request; says what happened. */
  async act(type, room, user) {
    try {
      await this.app.request({ type, room, user });
    } catch (error) {
      this.app.toast(this.app.errorText(error));
      return false;
    }
    const done = {
      invite: `${user} is now a member of # ${room}`,
      remove: `${user} was removed from # ${room}`,
      ban: `${user} is banned from # ${room}`,
      mute: `${user} is muted in # ${room}`,
      unmute: `${user} is unmuted in # ${room}`,
      promote: `${user} now moderates # ${room}`,
      demote: `${user} no longer moderates # ${room}`,
    }[type];
    if (done) this.app.toast(done);
    return true;
  }

  /** The menu after a member's name: what this user may do to them. */
  memberTools(conv, user) {
    const muted = conv.muted?.has(user) ?? false;
    const role = conv.roles?.get(user) ?? 'member';
    const tools = [];
    const button = (label, type) =>
      h('button', {
        type: 'button',
        class: 'ghost member-action',
        text: label,
        dataset: { action: type },
        on: { click: () => this.act(type, conv.name, user) },
      });
    if (this.mayActOn(conv, user)) {
      tools.push(button('Remove', 'remove'), button('Ban', 'ban'), button(muted ? 'Unmute' : 'Mute', muted ? 'unmute' : 'mute'));
    }
    if (this.roleIn(conv.name) === 'owner' && role !== 'owner') {
      tools.push(role === 'moderator' ? button('Demote', 'demote') : button('Promote', 'promote'));
    }
    const badges = [role !== 'member' ? role : null, muted ? 'muted' : null].filter(Boolean);
    return [
      badges.length ? h('span', { class: 'member-role', text: badges.join(', ') }) : null,
      tools.length ? h('span', { class: 'member-tools' }, ...tools) : null,
    ];
  }

  async loadBlocked() {
    try {
      const answer = await this.app.request({ type: 'blocked' });
      this.blocked = new Set(answer.users);
      this.app.invalidate('conv');
    } catch (error) {
      if (error.code !== 'disconnected') console.warn('blocked', error);
    }
  }

  /** Blocks or unblocks the other user of a private conversation. */
  async toggleBlock(user) {
    const type = this.blocked.has(user) ? 'unblock' : 'block';
    try {
      await this.app.request({ type, user });
    } catch (error) {
      this.app.toast(this.app.errorText(error));
      return;
    }
    if (type === 'block') this.blocked.add(user);
    else this.blocked.delete(user);
    this.app.toast(type === 'block' ? `${user} is blocked: no private messages from them` : `${user} is unblocked`);
    this.app.invalidate('conv');
  }
}
