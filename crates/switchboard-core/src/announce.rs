//! `room_created`: a new room is announced to every logged-in connection in the cluster, so that
//! room lists grow without a refresh.
//!
//! It is a broadcast to every online user, so a node sends at most
//! [`ChatConfig::room_announcements_per_sec`](crate::config::ChatConfig) of them per second; the
//! rooms created beyond that are counted and announced together, at the next upkeep tick (within
//! a second), by one `rooms_created {count}` that asks clients to list `rooms` again.

use parking_lot::Mutex;
use switchboard_bus::Topic;
use switchboard_protocol::event::ServerFrame;
use switchboard_protocol::ws::WireFrame;

use crate::cluster::BusHeader;
use crate::node::NodeShared;

/// This node's announcements in the current second.
#[derive(Default)]
pub(crate) struct RoomAnnouncements {
    window: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    /// The second (since the Unix epoch) the count is for.
    second: i64,
    /// `room_created` sent in that second.
    sent: u32,
    /// Rooms created past the limit and not announced yet.
    coalesced: u32,
}

impl RoomAnnouncements {
    /// Whether a room created now may be announced by itself; if not, it is counted for the next
    /// `rooms_created`.
    fn admit(&self, now_ms: i64, per_second: u32) -> bool {
        let mut window = self.window.lock();
        let second = now_ms.div_euclid(1000);
        if window.second != second {
            window.second = second;
            window.sent = 0;
        }
        if window.sent < per_second {
            window.sent += 1;
            return true;
        }
        window.coalesced = window.coalesced.saturating_add(1);
        false
    }

    fn take_coalesced(&self) -> u32 {
        std::mem::take(&mut self.window.lock().coalesced)
    }
}

impl NodeShared {
    /// Tells every logged-in connection (here and on the other nodes) that `by` created `room`,
    /// or counts it for the next `rooms_created` when this second's announcements are spent.
    pub(crate) fn announce_room(&self, room: &str, by: &str) {
        if !self.room_announcements.admit(crate::now_millis(), self.config.room_announcements_per_sec) {
            return;
        }
        self.broadcast(&ServerFrame::RoomCreated { room, by }.encode());
    }

    /// Announces the rooms coalesced since the last call, if any; called every upkeep tick.
    pub(crate) fn announce_coalesced_rooms(&self) {
        let count = self.room_announcements.take_coalesced();
        if count > 0 {
            self.broadcast(&ServerFrame::RoomsCreated { count }.encode());
        }
    }

    fn broadcast(&self, frame: &WireFrame) {
        self.hub.event_to_everyone(frame);
        self.publish(Topic::Cluster, &BusHeader::Broadcast, Some(frame));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_limit_rooms_are_counted_for_one_announcement_then_a_new_second_starts_over() {
        let announcements = RoomAnnouncements::default();
        assert!(announcements.admit(5_000, 2));
        assert!(announcements.admit(5_400, 2));
        assert!(!announcements.admit(5_900, 2));
        assert!(!announcements.admit(5_999, 2));
        assert_eq!(announcements.take_coalesced(), 2);
        assert_eq!(announcements.take_coalesced(), 0, "taken once");
        assert!(announcements.admit(6_000, 2), "a new second");
    }
}
