//! [`RoomAccess`] on PostgreSQL: private rooms, moderators, mutes, bans and blocks.

use async_trait::async_trait;

use super::{store_error, PostgresStore};
use crate::{Millis, RoomAccess, RoomRules, StoreResult};

impl PostgresStore {
    /// Runs one statement with two text parameters; returns the rows it changed.
    async fn execute(&self, sql: &str, first: &str, second: &str) -> StoreResult<u64> {
        let result = sqlx::query(sql).bind(first).bind(second).execute(&self.pool).await.map_err(store_error)?;
        Ok(result.rows_affected())
    }

    async fn names(&self, sql: &str, key: &str) -> StoreResult<Vec<String>> {
        sqlx::query_scalar::<_, String>(sql).bind(key).fetch_all(&self.pool).await.map_err(store_error)
    }
}

#[async_trait]
impl RoomAccess for PostgresStore {
    async fn create_room_with(&self, room: &str, creator: &str, private: bool, now: Millis) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO rooms (name, created_by, created_at, private) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(room)
        .bind(creator)
        .bind(now)
        .bind(private)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn room_rules(&self, room: &str) -> StoreResult<Option<RoomRules>> {
        let head = sqlx::query_as::<_, (bool, String)>("SELECT private, created_by FROM rooms WHERE name = $1")
            .bind(room)
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)?;
        let Some((private, owner)) = head else { return Ok(None) };
        let moderators =
            self.names("SELECT \"user\" FROM room_moderators WHERE room = $1 ORDER BY \"user\"", room).await?;
        let muted = self.names("SELECT \"user\" FROM room_mutes WHERE room = $1 ORDER BY \"user\"", room).await?;
        let banned = self.names("SELECT \"user\" FROM room_bans WHERE room = $1 ORDER BY \"user\"", room).await?;
        Ok(Some(RoomRules { private, owner, moderators, muted, banned }))
    }

    async fn set_moderator(&self, room: &str, user: &str, on: bool) -> StoreResult<bool> {
        let sql = if on {
            "INSERT INTO room_moderators (room, \"user\") SELECT room, \"user\" FROM room_members \
             WHERE room = $1 AND \"user\" = $2 ON CONFLICT (room, \"user\") DO NOTHING"
        } else {
            "DELETE FROM room_moderators WHERE room = $1 AND \"user\" = $2"
        };
        Ok(self.execute(sql, room, user).await? > 0)
    }

    async fn set_muted(&self, room: &str, user: &str, on: bool) -> StoreResult<bool> {
        let sql = if on {
            "INSERT INTO room_mutes (room, \"user\") VALUES ($1, $2) ON CONFLICT (room, \"user\") DO NOTHING"
        } else {
            "DELETE FROM room_mutes WHERE room = $1 AND \"user\" = $2"
        };
        Ok(self.execute(sql, room, user).await? > 0)
    }

    async fn ban(&self, room: &str, user: &str, by: &str, now: Millis) -> StoreResult<bool> {
        let mut transaction = self.pool.begin().await.map_err(store_error)?;
        sqlx::query(
            "INSERT INTO room_bans (room, \"user\", banned_by, banned_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (room, \"user\") DO NOTHING",
        )
        .bind(room)
        .bind(user)
        .bind(by)
        .bind(now)
        .execute(&mut *transaction)
        .await
        .map_err(store_error)?;
        sqlx::query("DELETE FROM room_moderators WHERE room = $1 AND \"user\" = $2")
            .bind(room)
            .bind(user)
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        let removed = sqlx::query("DELETE FROM room_members WHERE room = $1 AND \"user\" = $2")
            .bind(room)
            .bind(user)
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        transaction.commit().await.map_err(store_error)?;
        Ok(removed.rows_affected() > 0)
    }

    async fn unban(&self, room: &str, user: &str) -> StoreResult<bool> {
        Ok(self.execute("DELETE FROM room_bans WHERE room = $1 AND \"user\" = $2", room, user).await? > 0)
    }

    async fn is_banned(&self, room: &str, user: &str) -> StoreResult<bool> {
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM room_bans WHERE room = $1 AND \"user\" = $2)")
            .bind(room)
            .bind(user)
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)
    }

    async fn block(&self, user: &str, blocked: &str, now: Millis) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO blocks (\"user\", blocked, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (\"user\", blocked) DO NOTHING",
        )
        .bind(user)
        .bind(blocked)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn unblock(&self, user: &str, blocked: &str) -> StoreResult<bool> {
        Ok(self.execute("DELETE FROM blocks WHERE \"user\" = $1 AND blocked = $2", user, blocked).await? > 0)
    }

    async fn blocks_of(&self, user: &str) -> StoreResult<Vec<String>> {
        self.names("SELECT blocked FROM blocks WHERE \"user\" = $1 ORDER BY blocked", user).await
    }
}
