//! Who is online, on which nodes, and since when.
//!
//! Each node owns the connection counts of its own users and shares them over the bus; this table
//! holds every node's counts. A user is online while any node counts a connection for them, so
//! `user_offline` goes out only when their last connection anywhere closes.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

#[derive(Default)]
pub struct PresenceTable {
    users: RwLock<BTreeMap<Arc<str>, UserPresence>>,
}

struct UserPresence {
    /// When this online period began (ms since the Unix epoch).
    since: i64,
    /// Connection counts per node; usually one entry.
    nodes: Vec<(Arc<str>, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceInfo {
    pub since: i64,
    pub nodes: Vec<String>,
    pub connections: u32,
}

/// What a change did to a user's online state, cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceChange {
    CameOnline,
    WentOffline,
    Unchanged,
}

impl PresenceTable {
    /// Sets the number of connections `node` holds for `user`.
    pub fn set(&self, node: &str, user: &str, connections: u32, now: i64) -> PresenceChange {
        let mut users = self.users.write();
        match users.get_mut(user) {
            Some(presence) => {
                match presence.nodes.iter().position(|(n, _)| &**n == node) {
                    Some(index) if connections == 0 => {
                        presence.nodes.swap_remove(index);
                    }
                    Some(index) => presence.nodes[index].1 = connections,
                    None if connections > 0 => presence.nodes.push((Arc::from(node), connections)),
                    None => {}
                }
                if presence.nodes.is_empty() {
                    users.remove(user);
                    return PresenceChange::WentOffline;
                }
                PresenceChange::Unchanged
            }
            None if connections > 0 => {
                users.insert(Arc::from(user), UserPresence { since: now, nodes: vec![(Arc::from(node), connections)] });
                PresenceChange::CameOnline
            }
            None => PresenceChange::Unchanged,
        }
    }

    /// Replaces everything known about `node` with its snapshot; returns the users whose online
    /// state changed, cluster-wide.
    pub fn replace_node(&self, node: &str, counts: &[(String, u32)], since: i64) -> Vec<(Arc<str>, PresenceChange)> {
        let listed: std::collections::HashSet<&str> = counts.iter().map(|(user, _)| user.as_str()).collect();
        let stale: Vec<Arc<str>> = {
            let users = self.users.read();
            users
                .iter()
                .filter(|(user, presence)| {
                    !listed.contains(&***user) && presence.nodes.iter().any(|(n, _)| &**n == node)
                })
                .map(|(user, _)| user.clone())
                .collect()
        };
        let mut changes = Vec::new();
        for user in stale {
            let change = self.set(node, &user, 0, since);
            if change != PresenceChange::Unchanged {
                changes.push((user, change));
            }
        }
        for (user, connections) in counts {
            let change = self.set(node, user, *connections, since);
            if change != PresenceChange::Unchanged {
                changes.push((Arc::from(user.as_str()), change));
            }
        }
        changes
    }

    /// Forgets every count of a node (it left or died); returns the users that went offline.
    pub fn remove_node(&self, node: &str) -> Vec<Arc<str>> {
        let mut users = self.users.write();
        let mut gone = Vec::new();
        users.retain(|user, presence| {
            presence.nodes.retain(|(n, _)| &**n != node);
            if presence.nodes.is_empty() {
                gone.push(user.clone());
                return false;
            }
            true
        });
        gone
    }

    pub fn is_online(&self, user: &str) -> bool {
        self.users.read().contains_key(user)
    }

    pub fn info(&self, user: &str) -> Option<PresenceInfo> {
        let users = self.users.read();
        let presence = users.get(user)?;
        Some(PresenceInfo {
            since: presence.since,
            nodes: presence.nodes.iter().map(|(node, _)| node.to_string()).collect(),
            connections: presence.nodes.iter().map(|(_, count)| count).sum(),
        })
    }

    /// Every online user, sorted and unique.
    pub fn online(&self) -> Vec<Arc<str>> {
        self.users.read().keys().cloned().collect()
    }

    pub fn online_count(&self) -> usize {
        self.users.read().len()
    }

    /// The counts this node holds, for the snapshot it sends a joining node.
    pub fn counts_of_node(&self, node: &str) -> Vec<(String, u32)> {
        self.users
            .read()
            .iter()
            .filter_map(|(user, presence)| {
                presence.nodes.iter().find(|(n, _)| &**n == node).map(|(_, count)| (user.to_string(), *count))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_only_when_the_last_connection_anywhere_closes() {
        let table = PresenceTable::default();
        assert_eq!(table.set("n1", "a", 1, 10), PresenceChange::CameOnline);
        assert_eq!(table.set("n2", "a", 2, 20), PresenceChange::Unchanged);
        assert_eq!(table.set("n1", "a", 0, 30), PresenceChange::Unchanged);
        let info = table.info("a").unwrap();
        assert_eq!(info.since, 10);
        assert_eq!(info.connections, 2);
        assert_eq!(info.nodes, vec!["n2".to_string()]);
        assert_eq!(table.set("n2", "a", 0, 40), PresenceChange::WentOffline);
        assert!(!table.is_online("a"));
    }

    #[test]
    fn a_snapshot_replaces_what_was_known_of_its_node() {
        let table = PresenceTable::default();
        table.set("n2", "gone", 1, 0);
        table.set("n2", "stays", 1, 0);
        table.set("n1", "gone", 1, 0);
        let changes = table.replace_node("n2", &[("stays".into(), 2), ("new".into(), 1)], 5);
        assert_eq!(changes, vec![(Arc::<str>::from("new"), PresenceChange::CameOnline)]);
        assert_eq!(table.info("gone").unwrap().nodes, vec!["n1".to_string()], "gone is still on n1");
        assert_eq!(table.info("stays").unwrap().connections, 2);
    }

    #[test]
    fn the_online_list_is_sorted_and_a_dead_node_takes_its_users_away() {
        let table = PresenceTable::default();
        table.set("n1", "carol", 1, 0);
        table.set("n2", "alice", 1, 0);
        table.set("n1", "bob", 1, 0);
        table.set("n2", "bob", 1, 0);
        let online: Vec<String> = table.online().iter().map(|u| u.to_string()).collect();
        assert_eq!(online, ["alice", "bob", "carol"]);
        let gone: Vec<String> = table.remove_node("n2").iter().map(|u| u.to_string()).collect();
        assert_eq!(gone, ["alice"]);
    }
}
