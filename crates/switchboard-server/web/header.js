// The open conversation's header: its name, the peer's presence or the room's member count, the
// padlock of a private room, the buttons (members, leave, block), and the room's member list it
// unfolds, with the moderators' tools and the invite form.

import { h, byId, setChildren } from './dom.js';

export class Header {
  /** `app`: `{chat, moderation (moderation.js), invalidate(...parts)}`. */
  constructor(app) {
    this.app = app;
    /** The room's member list is unfolded. */
    this.membersShown = false;
  }

  wire() {
    const { chat, moderation } = this.app;
    byId('members-button').addEventListener('click', () => {
      this.membersShown = !this.membersShown;
      this.app.invalidate('conv');
    });
    byId('block-button').addEventListener('click', () => {
      const conv = chat.currentConv();
      if (conv && conv.kind === 'dm') moderation.toggleBlock(conv.name);
    });
    byId('invite-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      const conv = chat.currentConv();
      const name = byId('invite-name').value.trim().toLowerCase();
      if (conv && conv.kind === 'room' && name && (await moderation.act('invite', conv.name, name))) {
        byId('invite-name').value = '';
      }
    });
  }

  /** Draws the header and the member list of `conv`; `isMember`: a private conversation or a joined room. */
  render(conv, isMember) {
    const { chat, moderation } = this.app;
    const room = conv.kind === 'room' ? chat.rooms.get(conv.name) : null;
    if (conv.kind === 'room') {
      byId('conv-name').textContent = room?.private ? conv.name : `# ${conv.name}`;
      const members = conv.members ? [...conv.members] : [];
      // Big rooms say how many are online (`room_size`); small ones: the members we hear about.
      const online = room?.online ?? members.filter((user) => chat.online.has(user)).length;
      byId('conv-sub').textContent = isMember
        ? `${room?.members ?? members.length} members · ${online} online`
        : 'not a member';
    } else {
      const self = conv.name === chat.me;
      byId('conv-name').textContent = self ? `${conv.name} (you)` : conv.name;
      byId('conv-sub').textContent = self ? 'notes to yourself' : chat.online.has(conv.name) ? 'online' : 'offline';
    }
    byId('conv-lock').hidden = !room?.private;
    const dot = byId('conv-dot');
    dot.hidden = conv.kind !== 'dm';
    dot.className = `dot ${chat.online.has(conv.name) ? 'online' : 'offline'}`;
    byId('members-button').hidden = conv.kind !== 'room' || !isMember;
    byId('members-button').setAttribute('aria-expanded', String(this.membersShown));
    byId('leave-button').hidden = conv.kind !== 'room' || !isMember;
    const blockButton = byId('block-button');
    blockButton.hidden = conv.kind !== 'dm' || conv.name === chat.me;
    blockButton.textContent = moderation.blocked.has(conv.name) ? 'Unblock' : 'Block';
    this.renderMembers(conv, isMember);
  }

  renderMembers(conv, isMember) {
    const { chat, moderation } = this.app;
    const membersList = byId('members');
    membersList.hidden = !(conv.kind === 'room' && isMember && this.membersShown);
    byId('invite-form').hidden = membersList.hidden || !moderation.mayInvite(conv);
    if (membersList.hidden) return;
    const members = conv.members ? [...conv.members].sort() : [];
    setChildren(
      membersList,
      members.map((user) =>
        h(
          'li',
          { class: 'member', dataset: { user } },
          h('span', { class: `dot ${chat.online.has(user) ? 'online' : 'offline'}` }),
          h('span', { class: 'member-name', text: user === chat.me ? `${user} (you)` : user }),
          ...moderation.memberTools(conv, user),
        ),
      ),
    );
  }
}
