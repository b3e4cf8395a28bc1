//! Big rooms' size and online count. One `member_joined` per join to every member costs the
//! square of the room (5 billion frames for 100k joins); above `room_events_max_members` members a
//! room gets instead one `room_size` event per interval at most, whatever the number of joins.
//!
//! Each node counts the members (one store count per interval, and only after a join or leave
//! through it) and its own members online in the room, and shares both on the room's topic: one
//! bus message per node per room per interval. The members count with the newest time wins; the
//! online count is the sum of the nodes' counts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use switchboard_bus::Topic;
use switchboard_protocol::event::ServerFrame;

use crate::cluster::BusHeader;
use crate::error::ChatError;
use crate::node::NodeShared;
use crate::now_millis;

/// A `room_size` goes to every member, so at 100k members one a second would be as much traffic
/// as a message a second, for as long as members come and go. A room therefore waits one more
/// round per started this many members between two announcements (and two recounts): a room's
/// size events cost about this many frames per interval whatever its size.
const MEMBERS_PER_ROUND: u64 = 10_000;

/// Rounds between two announcements (or recounts) of a room of `members`.
fn rounds_between(members: u64) -> u64 {
    members.div_ceil(MEMBERS_PER_ROUND).max(1)
}

#[derive(Default)]
pub struct RoomSizes {
    rooms: Mutex<HashMap<Arc<str>, RoomCount>>,
    /// Rounds run so far.
    round: AtomicU64,
}

#[derive(Default)]
struct RoomCount {
    members: u64,
    /// When `members` was counted (ms); a newer count replaces it.
    counted_at: i64,
    /// A join or leave went through this node since the last count.
    recount: bool,
    /// This node's numbers go on the bus at the next round even if unchanged: it recounted, or
    /// heard a node it did not know (which has not heard ours).
    share: bool,
    /// The counts last sent in `room_size` to this node's listeners, and in which round: an
    /// unchanged room sends nothing (each round sending them anyway would be a second message
    /// stream to every member).
    announced: Option<(u64, u64)>,
    announced_round: Option<u64>,
    /// The round of the last recount.
    counted_round: Option<u64>,
    /// Members online per node, as each last said; this node's own entry too.
    online: HashMap<Arc<str>, u64>,
}

impl RoomSizes {
    /// The cached member count, if this node knows the room.
    fn cached(&self, room: &str) -> Option<u64> {
        self.rooms.lock().get(room).map(|count| count.members)
    }

    /// A member joined (`delta` 1) or left (-1) through this node, the room having `members`
    /// before (`counted_at` when the store counted them now, 0 for the cached count). Returns the
    /// new count.
    fn changed(&self, room: &str, members: u64, counted_at: i64, delta: i64) -> u64 {
        let mut rooms = self.rooms.lock();
        let count = rooms.entry(Arc::from(room)).or_default();
        if count.counted_at == 0 || counted_at > count.counted_at {
            count.members = members;
            count.counted_at = counted_at;
        }
        count.members = count.members.saturating_add_signed(delta);
        count.recount = true;
        count.members
    }

    /// What another node said about a room. Only a node not heard before is answered with this
    /// node's numbers: answering every message would keep the nodes telling each other forever.
    fn heard(&self, room: &str, node: &str, members: u64, counted_at: i64, online: u64) {
        let mut rooms = self.rooms.lock();
        let count = rooms.entry(Arc::from(room)).or_default();
        if counted_at > count.counted_at {
            count.members = members;
            count.counted_at = counted_at;
        }
        if count.online.insert(Arc::from(node), online).is_none() {
            count.share = true;
        }
    }

    /// Forgets what a gone node said.
    pub(crate) fn forget_node(&self, node: &str) {
        for count in self.rooms.lock().values_mut() {
            count.online.remove(node);
        }
    }
}

impl NodeShared {
    /// The room's member count before a change of `delta` members that the store has already
    /// made, and when the store counted it (0: this node's cached count). A cached count misses
    /// the joins through other nodes since the last round: above the threshold that changes
    /// nothing (the room stays big), but at or below it every node would go on fanning
    /// `member_joined` out to every member until its own joins passed the threshold, up to a round
    /// later (six nodes: six times as many such joins). So a room that may be small is counted by
    /// the store, a count bounded by the threshold.
    async fn members_before(&self, room: &str, delta: i64) -> Result<(u64, i64), ChatError> {
        match self.room_sizes.cached(room) {
            Some(members) if members > self.config.room_events_max_members => Ok((members, 0)),
            _ => {
                let after = self.store.members(room, None, 1).await?.total;
                Ok((after.saturating_add_signed(-delta), now_millis()))
            }
        }
    }

    /// Records a join (`joined`) or leave through this node, after the store made it; returns
    /// whether the room is small enough for `member_joined` / `member_left`.
    pub(crate) async fn membership_changed(&self, room: &str, joined: bool) -> Result<bool, ChatError> {
        let delta = if joined { 1 } else { -1 };
        let (before, counted_at) = self.members_before(room, delta).await?;
        let after = self.room_sizes.changed(room, before, counted_at, delta);
        Ok(after.max(before) <= self.config.room_events_max_members)
    }

    /// Records `joined` new members through this node at once; returns the count before them.
    pub(crate) async fn members_joined(&self, room: &str, joined: u64) -> Result<u64, ChatError> {
        let (before, counted_at) = self.members_before(room, joined as i64).await?;
        self.room_sizes.changed(room, before, counted_at, joined as i64);
        Ok(before)
    }

    /// Sends a small room's `member_joined` or `member_left` to its members: here at once, on
    /// the other nodes to the connections logged in when it was sent (see `for_logins_until`).
    pub(crate) fn member_event(&self, room: &str, frame: &switchboard_protocol::ws::WireFrame) {
        self.metrics.member_events.fetch_add(1, Ordering::Relaxed);
        let until = now_millis() + crate::link::CLOCK_SKEW_MARGIN_MS;
        self.room_event(room, frame, None, Some(until));
    }

    pub(crate) fn room_size_heard(&self, room: &str, node: &str, members: u64, counted_at: i64, online: u64) {
        self.room_sizes.heard(room, node, members, counted_at, online);
    }

    /// One round: recounts the rooms that changed here, shares this node's counts, and sends
    /// `room_size` to the local listeners of big rooms that changed (each room when due, see
    /// [`MEMBERS_PER_ROUND`]). Rooms with no listener here
    /// and nothing to do are forgotten, so the table holds the rooms in use here only.
    async fn room_size_round(&self) {
        let me: Arc<str> = Arc::from(self.config.node_id.as_str());
        let round = self.room_sizes.round.fetch_add(1, Ordering::Relaxed) + 1;
        let due = |last: Option<u64>, members: u64| last.is_none_or(|last| round >= last + rounds_between(members));
        let recount: Vec<Arc<str>> = {
            let rooms = self.room_sizes.rooms.lock();
            rooms
                .iter()
                .filter(|(_, count)| count.recount && due(count.counted_round, count.members))
                .map(|(room, _)| room.clone())
                .collect()
        };
        let mut counted = HashMap::new();
        for room in recount {
            match self.store.members(&room, None, 1).await {
                Ok(page) => {
                    counted.insert(room, (page.total, now_millis()));
                }
                Err(error) => tracing::warn!(%room, %error, "room size count failed"),
            }
        }
        let mut publish = Vec::new();
        let mut announce = Vec::new();
        {
            let mut rooms = self.room_sizes.rooms.lock();
            rooms.retain(|room, count| {
                if let Some((members, at)) = counted.remove(room) {
                    count.members = members;
                    count.counted_at = at;
                    count.recount = false;
                    count.share = true;
                    count.counted_round = Some(round);
                }
                let online = self.hub.room_online_users(room) as u64;
                // Small rooms have member events: only big ones share and announce counts.
                let big = count.members > self.config.room_events_max_members;
                let was_online = count.online.get(&me).copied().unwrap_or(0);
                if big && (was_online != online || count.share) {
                    count.online.insert(me.clone(), online);
                    publish.push((room.clone(), count.members, count.counted_at, online));
                }
                count.share = false;
                let counts = (count.members, count.online.values().sum::<u64>());
                if big && count.announced != Some(counts) && due(count.announced_round, counts.0) {
                    count.announced = Some(counts);
                    count.announced_round = Some(round);
                    announce.push((room.clone(), counts.0, counts.1));
                }
                count.recount || online > 0
            });
        }
        if self.has_peers() {
            for (room, members, counted_at, online) in publish {
                let header = BusHeader::RoomSize { room: room.to_string(), members, counted_at, online };
                self.publish(Topic::Room(room.to_string()), &header, None);
            }
        }
        self.metrics.room_size_rounds.fetch_add(1, Ordering::Relaxed);
        self.metrics.room_size_announced.fetch_add(announce.len() as u64, Ordering::Relaxed);
        for (room, members, online) in announce {
            let frame = ServerFrame::RoomSize { room: &room, members, online }.encode();
            self.hub.event_to_room(&room, &frame, None, None);
        }
    }
}

/// Runs [`NodeShared::room_size_round`] every `room_size_interval` while the node lives.
pub(crate) async fn run_room_sizes(shared: Weak<NodeShared>) {
    let Some(interval) = shared.upgrade().map(|shared| shared.config.room_size_interval) else {
        return;
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.room_size_round().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_waits_a_round_more_per_started_ten_thousand_members() {
        assert_eq!(rounds_between(0), 1);
        assert_eq!(rounds_between(5_000), 1);
        assert_eq!(rounds_between(10_000), 1);
        assert_eq!(rounds_between(10_001), 2);
        assert_eq!(rounds_between(100_000), 10);
    }

    #[test]
    fn the_newest_count_wins_and_online_adds_up_over_nodes() {
        let sizes = RoomSizes::default();
        assert_eq!(sizes.changed("big", 10, 0, 1), 11);
        sizes.heard("big", "n2", 50, 20, 7);
        sizes.heard("big", "n3", 40, 10, 3);
        let rooms = sizes.rooms.lock();
        let count = &rooms["big"];
        assert_eq!(count.members, 50, "counted at 20, after n3's count at 10");
        assert_eq!(count.online.values().sum::<u64>(), 10);
        drop(rooms);
        sizes.forget_node("n2");
        assert_eq!(sizes.rooms.lock()["big"].online.values().sum::<u64>(), 3);
    }
}
