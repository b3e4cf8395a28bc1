//! What a send or a join checks about rooms and users: a room's rules (private, owner,
//! moderators, muted members) and whom a user blocks. Kept in memory, loaded from the store the
//! first time a node needs them, and dropped on every node when they change (a `RoomRules` or
//! `Blocks` bus header), so a `send` costs no store read for them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use switchboard_bus::Topic;
use switchboard_store::{Role, RoomRules};

use crate::cluster::BusHeader;
use crate::error::ChatError;
use crate::node::NodeShared;

/// Entries per table at most: past it the table starts over (it is a cache, the store has all).
const MAX_CACHED: usize = 100_000;

#[derive(Default)]
pub(crate) struct AccessCache {
    rooms: RwLock<HashMap<Arc<str>, Arc<RoomRules>>>,
    /// Whom each user blocks.
    blocks: RwLock<HashMap<Arc<str>, Arc<HashSet<String>>>>,
    /// Bumped by every change heard: a load that began before one does not keep what it read.
    generation: AtomicU64,
}

fn remember<T>(
    table: &RwLock<HashMap<Arc<str>, Arc<T>>>,
    generation: &AtomicU64,
    began: u64,
    key: &str,
    value: Arc<T>,
) {
    let mut table = table.write();
    if generation.load(Ordering::Acquire) != began {
        return;
    }
    if table.len() >= MAX_CACHED {
        table.clear();
    }
    table.insert(Arc::from(key), value);
}

impl AccessCache {
    fn forget_room(&self, room: &str) {
        let mut rooms = self.rooms.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        rooms.remove(room);
    }

    /// Forgets everything: changes published while a bus link was down may have been missed.
    pub(crate) fn clear(&self) {
        let mut rooms = self.rooms.write();
        let mut blocks = self.blocks.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        rooms.clear();
        blocks.clear();
    }

    fn forget_blocks(&self, user: &str) {
        let mut blocks = self.blocks.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        blocks.remove(user);
    }
}

impl NodeShared {
    /// The room's rules; `RoomNotFound` when it does not exist.
    pub(crate) async fn room_rules(&self, room: &str) -> Result<Arc<RoomRules>, ChatError> {
        let cache = &self.access;
        if let Some(rules) = cache.rooms.read().get(room) {
            return Ok(rules.clone());
        }
        let began = cache.generation.load(Ordering::Acquire);
        let rules = self.store.room_rules(room).await?.ok_or_else(|| ChatError::RoomNotFound(room.to_owned()))?;
        let rules = Arc::new(rules);
        remember(&cache.rooms, &cache.generation, began, room, rules.clone());
        Ok(rules)
    }

    /// Whom `user` blocks.
    pub(crate) async fn blocks_of(&self, user: &str) -> Result<Arc<HashSet<String>>, ChatError> {
        let cache = &self.access;
        if let Some(blocks) = cache.blocks.read().get(user) {
            return Ok(blocks.clone());
        }
        let began = cache.generation.load(Ordering::Acquire);
        let blocks: Arc<HashSet<String>> = Arc::new(self.store.blocks_of(user).await?.into_iter().collect());
        remember(&cache.blocks, &cache.generation, began, user, blocks.clone());
        Ok(blocks)
    }

    /// A room's rules changed in the store: every node reloads them when next needed.
    pub(crate) fn room_rules_changed(&self, room: &str) {
        self.access.forget_room(room);
        self.publish(Topic::Cluster, &BusHeader::RoomRules { room: room.to_owned() }, None);
    }

    /// Whom `user` blocks changed in the store.
    pub(crate) fn blocks_changed(&self, user: &str) {
        self.access.forget_blocks(user);
        self.publish(Topic::Cluster, &BusHeader::Blocks { user: user.to_owned() }, None);
    }

    /// Another node changed these rules.
    pub(crate) fn access_heard(&self, header: &BusHeader) {
        match header {
            BusHeader::RoomRules { room } => self.access.forget_room(room),
            BusHeader::Blocks { user } => self.access.forget_blocks(user),
            _ => {}
        }
    }

    /// Whether `user` is a member of `room`: known here, else as the store says.
    pub(crate) async fn is_member(&self, user: &str, room: &str) -> Result<bool, ChatError> {
        if self.hub.is_member_here(user, room) {
            return Ok(true);
        }
        Ok(self.store.is_member(room, user).await?)
    }

    /// May `user` join `room` (which exists)? Not when banned; a private room only by invitation
    /// (a member coming back, or its owner).
    pub(crate) async fn check_join(&self, room: &str, user: &str) -> Result<Arc<RoomRules>, ChatError> {
        let rules = self.room_rules(room).await?;
        if rules.is_banned(user) {
            return Err(ChatError::Banned(room.to_owned()));
        }
        if rules.private && rules.role_of(user) != Role::Owner && !self.is_member(user, room).await? {
            return Err(ChatError::Forbidden(format!("room {room} is invite-only")));
        }
        Ok(rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_that_began_before_a_change_is_not_kept() {
        let cache = AccessCache::default();
        let rules = Arc::new(RoomRules { owner: "alice".into(), ..RoomRules::default() });
        let began = cache.generation.load(Ordering::Acquire);
        cache.forget_room("lobby");
        remember(&cache.rooms, &cache.generation, began, "lobby", rules.clone());
        assert!(cache.rooms.read().get("lobby").is_none(), "read before the change: stale");
        let began = cache.generation.load(Ordering::Acquire);
        remember(&cache.rooms, &cache.generation, began, "lobby", rules);
        assert!(cache.rooms.read().get("lobby").is_some());
        cache.clear();
        assert!(cache.rooms.read().is_empty());
    }
}
