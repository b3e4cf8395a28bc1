//! Who hears about whose presence on this node. A connection watches its contacts (itself and the
//! users it has private conversations with) plus those it asked about with `watch`, so presence
//! traffic grows with what users look at, not with the cluster: a user coming online costs one
//! frame per connection watching them, not one per connection online. The compatibility dialects
//! whose protocols show the whole online list watch everyone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;
use switchboard_protocol::ws::WireFrame;

use crate::outbound::{ConnId, Connection};

#[derive(Default)]
pub struct Watchers {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Watched user -> the connections here watching them.
    by_user: HashMap<Arc<str>, HashMap<ConnId, Arc<Connection>>>,
    /// Connection -> the users it watches; an entry (maybe empty) for every connection that hears
    /// presence.
    of_conn: HashMap<ConnId, HashSet<Arc<str>>>,
    /// Connections that hear about every user.
    everyone: HashMap<ConnId, Arc<Connection>>,
}

/// A `watch` would pass the connection's limit: nothing was added.
#[derive(Debug, PartialEq, Eq)]
pub struct TooMany {
    pub max: usize,
}

impl Watchers {
    pub fn watch_everyone(&self, connection: &Arc<Connection>) {
        self.inner.write().everyone.insert(connection.id, connection.clone());
    }

    pub fn watches_everyone(&self, id: ConnId) -> bool {
        self.inner.read().everyone.contains_key(&id)
    }

    /// Adds `users` to what `connection` watches (registering it as a presence listener even when
    /// `users` is empty). Returns the users newly watched, or [`TooMany`] when it would then watch
    /// more than `max`.
    pub fn watch<'a>(
        &self,
        connection: &Arc<Connection>,
        users: impl IntoIterator<Item = &'a str>,
        max: usize,
    ) -> Result<Vec<Arc<str>>, TooMany> {
        let mut inner = self.inner.write();
        let watched = inner.of_conn.entry(connection.id).or_default();
        let mut fresh: Vec<Arc<str>> = Vec::new();
        for user in users {
            if !watched.contains(user) && !fresh.iter().any(|other| &**other == user) {
                fresh.push(Arc::from(user));
            }
        }
        if watched.len() + fresh.len() > max {
            return Err(TooMany { max });
        }
        watched.extend(fresh.iter().cloned());
        for user in &fresh {
            inner.by_user.entry(user.clone()).or_default().insert(connection.id, connection.clone());
        }
        Ok(fresh)
    }

    /// Stops watching `users`; the connection keeps hearing about the others.
    pub fn unwatch(&self, id: ConnId, users: &[String]) {
        let mut inner = self.inner.write();
        let Some(watched) = inner.of_conn.get_mut(&id) else {
            return;
        };
        let removed: Vec<Arc<str>> = users.iter().filter_map(|user| watched.take(user.as_str())).collect();
        for user in removed {
            Self::drop_watcher(&mut inner, &user, id);
        }
    }

    /// Whether the connection hears presence (of its contacts, or of everyone).
    pub fn hears_presence(&self, id: ConnId) -> bool {
        let inner = self.inner.read();
        inner.of_conn.contains_key(&id) || inner.everyone.contains_key(&id)
    }

    /// The users a connection watches, sorted.
    pub fn watched_by(&self, id: ConnId) -> Vec<Arc<str>> {
        let mut users: Vec<Arc<str>> =
            self.inner.read().of_conn.get(&id).map(|watched| watched.iter().cloned().collect()).unwrap_or_default();
        users.sort();
        users
    }

    /// Forgets a closed connection.
    pub fn remove(&self, id: ConnId) {
        let mut inner = self.inner.write();
        inner.everyone.remove(&id);
        if let Some(watched) = inner.of_conn.remove(&id) {
            for user in watched {
                Self::drop_watcher(&mut inner, &user, id);
            }
        }
    }

    fn drop_watcher(inner: &mut Inner, user: &str, id: ConnId) {
        if let Some(watchers) = inner.by_user.get_mut(user) {
            watchers.remove(&id);
            if watchers.is_empty() {
                inner.by_user.remove(user);
            }
        }
    }

    /// Sends a presence event about `user` to the connections watching them (or everyone).
    pub fn event_about(&self, user: &str, frame: &WireFrame) -> usize {
        let inner = self.inner.read();
        let watching = inner.by_user.get(user).into_iter().flat_map(|watchers| watchers.values());
        watching.chain(inner.everyone.values()).filter(|connection| connection.push(frame.clone())).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(id: ConnId, user: &str) -> Arc<Connection> {
        Arc::new(Connection::new(id, user.into(), 0, 100, 1 << 20))
    }

    #[test]
    fn events_reach_the_watchers_of_their_user_and_those_watching_everyone() {
        let watchers = Watchers::default();
        let a = connection(1, "a");
        let b = connection(2, "b");
        let compat = connection(3, "c");
        assert_eq!(watchers.watch(&a, ["a", "bob"], 10).unwrap().len(), 2);
        watchers.watch(&b, [], 10).unwrap();
        watchers.watch_everyone(&compat);
        assert_eq!(watchers.event_about("bob", &WireFrame::text(b"x")), 2, "a and the compat connection");
        assert_eq!(b.queued_frames(), 0);
        assert!(watchers.hears_presence(2));
        watchers.unwatch(1, &["bob".into()]);
        assert_eq!(watchers.event_about("bob", &WireFrame::text(b"x")), 1);
        watchers.remove(1);
        watchers.remove(3);
        assert_eq!(watchers.event_about("a", &WireFrame::text(b"x")), 0);
        assert!(watchers.inner.read().by_user.is_empty(), "nothing left behind");
    }

    #[test]
    fn a_watch_past_the_limit_adds_nothing() {
        let watchers = Watchers::default();
        let a = connection(1, "a");
        watchers.watch(&a, ["x", "y"], 3).unwrap();
        assert_eq!(watchers.watch(&a, ["x", "z", "w"], 3), Err(TooMany { max: 3 }));
        assert_eq!(watchers.watched_by(1), vec![Arc::<str>::from("x"), Arc::from("y")]);
        assert_eq!(watchers.watch(&a, ["x", "z", "z"], 3).unwrap(), vec![Arc::<str>::from("z")]);
    }
}
