//! [`RoomAccess`] on SQLite: private rooms, moderators, mutes, bans and blocks.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::SqliteStore;
use crate::{Millis, RoomAccess, RoomRules, StoreResult};

/// Runs one statement with two text parameters; returns the rows it changed.
fn execute(conn: &Connection, sql: &str, first: &str, second: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params![first, second])
}

fn names(conn: &Connection, sql: &str, key: &str) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare_cached(sql)?;
    let names = statement.query_map([key], |row| row.get(0))?.collect();
    names
}

#[async_trait]
impl RoomAccess for SqliteStore {
    async fn create_room_with(&self, room: &str, creator: &str, private: bool, now: Millis) -> StoreResult<bool> {
        let (room, creator) = (room.to_owned(), creator.to_owned());
        self.write(move |worker| {
            let inserted = worker
                .conn
                .prepare_cached(
                    "INSERT INTO rooms (name, created_by, created_at, private) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (name) DO NOTHING",
                )?
                .execute(params![room, creator, now, private])?;
            Ok(inserted > 0)
        })
        .await
    }

    async fn room_rules(&self, room: &str) -> StoreResult<Option<RoomRules>> {
        let room = room.to_owned();
        self.read(move |worker| {
            let conn = &worker.conn;
            let head = conn
                .prepare_cached("SELECT private, created_by FROM rooms WHERE name = ?1")?
                .query_row([&room], |row| Ok((row.get::<_, bool>(0)?, row.get::<_, String>(1)?)))
                .optional()?;
            let Some((private, owner)) = head else { return Ok(None) };
            let moderators = names(conn, "SELECT user FROM room_moderators WHERE room = ?1 ORDER BY user", &room)?;
            let muted = names(conn, "SELECT user FROM room_mutes WHERE room = ?1 ORDER BY user", &room)?;
            let banned = names(conn, "SELECT user FROM room_bans WHERE room = ?1 ORDER BY user", &room)?;
            Ok(Some(RoomRules { private, owner, moderators, muted, banned }))
        })
        .await
    }

    async fn set_moderator(&self, room: &str, user: &str, on: bool) -> StoreResult<bool> {
        let (room, user) = (room.to_owned(), user.to_owned());
        self.write(move |worker| {
            let sql = if on {
                "INSERT INTO room_moderators (room, user) SELECT room, user FROM room_members \
                 WHERE room = ?1 AND user = ?2 ON CONFLICT (room, user) DO NOTHING"
            } else {
                "DELETE FROM room_moderators WHERE room = ?1 AND user = ?2"
            };
            Ok(execute(&worker.conn, sql, &room, &user)? > 0)
        })
        .await
    }

    async fn set_muted(&self, room: &str, user: &str, on: bool) -> StoreResult<bool> {
        let (room, user) = (room.to_owned(), user.to_owned());
        self.write(move |worker| {
            let sql = if on {
                "INSERT INTO room_mutes (room, user) VALUES (?1, ?2) ON CONFLICT (room, user) DO NOTHING"
            } else {
                "DELETE FROM room_mutes WHERE room = ?1 AND user = ?2"
            };
            Ok(execute(&worker.conn, sql, &room, &user)? > 0)
        })
        .await
    }

    async fn ban(&self, room: &str, user: &str, by: &str, now: Millis) -> StoreResult<bool> {
        let (room, user, by) = (room.to_owned(), user.to_owned(), by.to_owned());
        self.write(move |worker| {
            let conn = &worker.conn;
            conn.prepare_cached(
                "INSERT INTO room_bans (room, user, banned_by, banned_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (room, user) DO NOTHING",
            )?
            .execute(params![room, user, by, now])?;
            execute(conn, "DELETE FROM room_moderators WHERE room = ?1 AND user = ?2", &room, &user)?;
            Ok(execute(conn, "DELETE FROM room_members WHERE room = ?1 AND user = ?2", &room, &user)? > 0)
        })
        .await
    }

    async fn unban(&self, room: &str, user: &str) -> StoreResult<bool> {
        let (room, user) = (room.to_owned(), user.to_owned());
        self.write(move |worker| {
            Ok(execute(&worker.conn, "DELETE FROM room_bans WHERE room = ?1 AND user = ?2", &room, &user)? > 0)
        })
        .await
    }

    async fn is_banned(&self, room: &str, user: &str) -> StoreResult<bool> {
        let (room, user) = (room.to_owned(), user.to_owned());
        self.read(move |worker| {
            let mut statement =
                worker.conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM room_bans WHERE room = ?1 AND user = ?2)")?;
            Ok(statement.query_row([room, user], |row| row.get(0))?)
        })
        .await
    }

    async fn block(&self, user: &str, blocked: &str, now: Millis) -> StoreResult<bool> {
        let (user, blocked) = (user.to_owned(), blocked.to_owned());
        self.write(move |worker| {
            let inserted = worker
                .conn
                .prepare_cached(
                    "INSERT INTO blocks (user, blocked, created_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (user, blocked) DO NOTHING",
                )?
                .execute(params![user, blocked, now])?;
            Ok(inserted > 0)
        })
        .await
    }

    async fn unblock(&self, user: &str, blocked: &str) -> StoreResult<bool> {
        let (user, blocked) = (user.to_owned(), blocked.to_owned());
        self.write(move |worker| {
            Ok(execute(&worker.conn, "DELETE FROM blocks WHERE user = ?1 AND blocked = ?2", &user, &blocked)? > 0)
        })
        .await
    }

    async fn blocks_of(&self, user: &str) -> StoreResult<Vec<String>> {
        let user = user.to_owned();
        self.read(move |worker| {
            Ok(names(&worker.conn, "SELECT blocked FROM blocks WHERE user = ?1 ORDER BY blocked", &user)?)
        })
        .await
    }
}
