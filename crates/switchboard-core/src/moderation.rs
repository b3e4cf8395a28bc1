//! `invite`, `remove`, `ban`, `unban`, `mute`, `unmute`, `promote` and `demote`: what a room's
//! owner and moderators may do, and how each change reaches the cluster at once.
//!
//! Also `block` and `unblock`, which a user does to another.
//!
//! Rank decides: the owner over moderators over members. Nobody acts on someone of their own rank
//! or above, and only the owner appoints or dismisses moderators.

use switchboard_protocol::event::ServerFrame;
use switchboard_protocol::ModAction;
use switchboard_store::Role;

use crate::error::ChatError;
use crate::node::NodeShared;
use crate::now_millis;

impl NodeShared {
    /// Carries out `action` by `me` on `user` in `room`.
    pub(crate) async fn moderate(&self, me: &str, action: ModAction, room: &str, user: &str) -> Result<(), ChatError> {
        let rules = self.room_rules(room).await?;
        let mine = rules.role_of(me);
        let theirs = rules.role_of(user);
        if mine < Role::Moderator {
            return Err(ChatError::Forbidden(format!(
                "only the owner and moderators of {room} may {}",
                action.as_str()
            )));
        }
        let ranked = matches!(action, ModAction::Remove | ModAction::Ban | ModAction::Mute | ModAction::Unmute);
        let appointing = matches!(action, ModAction::Promote | ModAction::Demote);
        if (ranked && theirs >= mine) || (appointing && (mine != Role::Owner || theirs == Role::Owner)) {
            return Err(ChatError::Forbidden(format!("you may not {} {user} in {room}", action.as_str())));
        }
        if !self.user_exists(user).await? {
            return Err(ChatError::UserNotFound(user.to_owned()));
        }
        match action {
            ModAction::Invite => self.invite(me, room, user).await?,
            ModAction::Remove => {
                if !self.store.remove_member(room, user).await? {
                    return Err(ChatError::NotAMember(room.to_owned()));
                }
                self.take_out(me, room, user, false).await?;
            }
            ModAction::Ban => {
                let was_member = self.store.ban(room, user, me, now_millis()).await?;
                self.room_rules_changed(room);
                if was_member {
                    self.take_out(me, room, user, true).await?;
                }
            }
            ModAction::Unban => {
                if !self.store.unban(room, user).await? {
                    return Err(ChatError::InvalidField(format!("{user} is not banned from {room}")));
                }
                self.room_rules_changed(room);
            }
            ModAction::Mute | ModAction::Unmute => {
                let muted = action == ModAction::Mute;
                if self.store.set_muted(room, user, muted).await? {
                    self.room_rules_changed(room);
                    let frame = ServerFrame::MuteChanged { room, user, muted }.encode();
                    self.event_to_room(room, &frame, None);
                    // A member of a room they no longer listen to here still hears it.
                    self.event_to_user(user, &frame, None);
                }
            }
            ModAction::Promote | ModAction::Demote => {
                let promoted = action == ModAction::Promote;
                if promoted && !self.is_member(user, room).await? {
                    return Err(ChatError::NotAMember(room.to_owned()));
                }
                if self.store.set_moderator(room, user, promoted).await? {
                    self.room_rules_changed(room);
                    let role = if promoted { Role::Moderator } else { Role::Member };
                    let frame = ServerFrame::RoleChanged { room, user, role: role.as_str() }.encode();
                    self.event_to_room(room, &frame, None);
                }
            }
        }
        tracing::info!(%room, by = me, %user, action = action.as_str(), "room moderated");
        Ok(())
    }

    /// Makes `user` a member, their devices on every node listening to the room from now on.
    async fn invite(&self, me: &str, room: &str, user: &str) -> Result<(), ChatError> {
        if self.store.is_banned(room, user).await? {
            return Err(ChatError::Banned(room.to_owned()));
        }
        if !self.store.add_member(room, user, now_millis()).await? {
            return Ok(());
        }
        if self.hub.join_room(user, room) {
            self.room_listeners_changed(room);
        }
        self.publish_membership(user, room, true, None);
        if self.membership_changed(room, true).await? {
            let joined = ServerFrame::MemberJoined { room, user }.encode();
            self.member_event(room, &joined);
        }
        self.event_to_user(user, &ServerFrame::Invited { room, by: me }.encode(), None);
        Ok(())
    }

    /// After the store took `user` out of `room`: their devices here and on every other node leave
    /// the room's fan-out now, and are told why.
    async fn take_out(&self, me: &str, room: &str, user: &str, banned: bool) -> Result<(), ChatError> {
        if self.hub.leave_room(user, room) {
            self.room_listeners_changed(room);
        }
        // To the nodes holding the user, ahead of the event on the same topic: when a device hears
        // `removed`, its node no longer delivers the room to it.
        self.publish_membership(user, room, false, None);
        self.event_to_user(user, &ServerFrame::Removed { room, by: me, banned }.encode(), None);
        if self.membership_changed(room, false).await? {
            let left = ServerFrame::MemberLeft { room, user }.encode();
            self.member_event(room, &left);
        }
        Ok(())
    }

    /// `block` and `unblock`: whether `me` receives private messages from `user`.
    pub(crate) async fn set_block(&self, me: &str, user: &str, block: bool) -> Result<(), ChatError> {
        if user == me {
            return Err(ChatError::InvalidField("you cannot block yourself".into()));
        }
        if !self.user_exists(user).await? {
            return Err(ChatError::UserNotFound(user.to_owned()));
        }
        let changed =
            if block { self.store.block(me, user, now_millis()).await? } else { self.store.unblock(me, user).await? };
        if changed {
            self.blocks_changed(me);
        }
        Ok(())
    }
}
