//! Who may do what in a room, and who blocks whom: private rooms, moderators, mutes, bans and
//! blocks. A supertrait of [`crate::Store`], so every store has it and `dyn Store` offers it.

use async_trait::async_trait;

use crate::{Millis, StoreResult};

/// A user's standing in a room, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    Moderator,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Moderator => "moderator",
            Role::Member => "member",
        }
    }
}

/// What a room's checks need, read in one go and cached by the core: small (a room has a few
/// moderators and muted members, not thousands).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomRules {
    pub private: bool,
    /// The creator.
    pub owner: String,
    /// By name.
    pub moderators: Vec<String>,
    /// By name.
    pub muted: Vec<String>,
    /// By name: kept with the rules so a `join` checks them without a store read.
    pub banned: Vec<String>,
}

impl RoomRules {
    /// The user's role as far as the rules tell (membership itself is not in them).
    pub fn role_of(&self, user: &str) -> Role {
        if self.owner == user {
            Role::Owner
        } else if self.moderators.iter().any(|moderator| moderator == user) {
            Role::Moderator
        } else {
            Role::Member
        }
    }

    pub fn is_banned(&self, user: &str) -> bool {
        self.banned.iter().any(|banned| banned == user)
    }

    pub fn is_muted(&self, user: &str) -> bool {
        self.muted.iter().any(|muted| muted == user)
    }
}

/// A listing's role of the viewer: none when not a member.
pub(crate) fn member_role(joined: bool, owner: bool, moderator: bool) -> Option<Role> {
    match (joined, owner, moderator) {
        (false, _, _) => None,
        (true, true, _) => Some(Role::Owner),
        (true, false, true) => Some(Role::Moderator),
        (true, false, false) => Some(Role::Member),
    }
}

#[async_trait]
pub trait RoomAccess {
    /// Creates a room as [`crate::Store::create_room`] does, invite-only when `private`.
    async fn create_room_with(&self, room: &str, creator: &str, private: bool, now: Millis) -> StoreResult<bool>;
    /// The room's rules; `None` when it does not exist.
    async fn room_rules(&self, room: &str) -> StoreResult<Option<RoomRules>>;
    /// Makes a member a moderator or takes it back. Returns false, changing nothing, when the user
    /// is not a member (for `on`) or already had that standing.
    async fn set_moderator(&self, room: &str, user: &str, on: bool) -> StoreResult<bool>;
    /// Mutes or unmutes a user in the room. Returns false when nothing changed.
    async fn set_muted(&self, room: &str, user: &str, on: bool) -> StoreResult<bool>;
    /// Bans a user: records the ban, and takes them out of the members and moderators, in one
    /// transaction. Returns whether they were a member.
    async fn ban(&self, room: &str, user: &str, by: &str, now: Millis) -> StoreResult<bool>;
    /// Returns false when the user was not banned.
    async fn unban(&self, room: &str, user: &str) -> StoreResult<bool>;
    async fn is_banned(&self, room: &str, user: &str) -> StoreResult<bool>;
    /// `user` blocks `blocked`. Returns false when they did already.
    async fn block(&self, user: &str, blocked: &str, now: Millis) -> StoreResult<bool>;
    /// Returns false when `user` did not block `blocked`.
    async fn unblock(&self, user: &str, blocked: &str) -> StoreResult<bool>;
    /// Whom `user` blocks, by name.
    async fn blocks_of(&self, user: &str) -> StoreResult<Vec<String>>;
}
