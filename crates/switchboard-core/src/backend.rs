//! What the server API (`/api/` in switchboard-server) asks of the node for an application's
//! backend: publishing as a user or as the system, disconnecting a user, presence, members, users
//! and their session tokens, history.
//!
//! Publishing goes through the message pipeline exactly as a session's `send` does (same checks,
//! same commit, same fan-out to this node and the others); the ack comes back on a connection that
//! exists only for that answer and is never registered with the hub. Disconnecting reaches the
//! user's connections on every node over the bus.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_protocol::request::Target;
use switchboard_protocol::{CloseCode, ConvId};
use switchboard_store::{EntryKind, NewMessage, SessionRecord, StoredMessage};

use crate::auth;
use crate::cluster::BusHeader;
use crate::error::ChatError;
use crate::node::{ChatNode, NodeShared};
use crate::now_millis;
use crate::outbound::Connection;
use crate::pipeline::{Origin, PendingMessage};
use crate::presence::PresenceInfo;

/// The sender of messages the API publishes as the system. Reserved: nobody registers, is
/// created or signs in under it.
pub const SYSTEM_SENDER: &str = "system";

/// How long a publish waits for its message to be committed.
const PUBLISH_WAIT: Duration = Duration::from_secs(10);

/// Who a published message is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publisher {
    /// A user, who must exist and, for a room, be a member, as when sending themselves.
    User(String),
    /// The system ([`SYSTEM_SENDER`]): any existing room or user.
    System,
}

/// A page of a room's members.
#[derive(Debug, Clone)]
pub struct MemberPage {
    /// Names with whether each is online anywhere in the cluster.
    pub members: Vec<(String, bool)>,
    pub next_cursor: Option<String>,
    pub total: u64,
}

impl ChatNode {
    /// Publishes a message and returns the pipeline's answer as a session gets it: the `ack`
    /// frame's JSON (id, seq, conv, ts), or an `error` frame's (code, message) when the commit
    /// failed. Checks before the pipeline fail with the error itself.
    pub async fn publish(
        &self,
        from: Publisher,
        target: Target,
        text: String,
        key: Option<String>,
    ) -> Result<serde_json::Value, ChatError> {
        let shared = &self.shared;
        let sender = match &from {
            Publisher::User(user) => {
                require_user(shared, user).await?;
                user.clone()
            }
            Publisher::System => SYSTEM_SENDER.to_owned(),
        };
        if text.trim().is_empty() {
            return Err(ChatError::EmptyText);
        }
        if text.contains('\0') || key.as_deref().is_some_and(|key| key.contains('\0')) {
            return Err(ChatError::InvalidField("text and key must not contain the NUL character".into()));
        }
        let max = shared.config.max_text_chars;
        if text.chars().count() > max {
            return Err(ChatError::TextTooLong { max });
        }
        let (recipient, room, conv) = match target {
            Target::User(peer) => {
                require_user(shared, &peer).await?;
                if matches!(from, Publisher::User(_)) && shared.blocks_of(&peer).await?.contains(&sender) {
                    return Err(ChatError::Blocked(peer));
                }
                let conv = ConvId::direct(&sender, &peer);
                (Some(peer), None, conv)
            }
            Target::Room(room) => {
                match &from {
                    Publisher::User(user) => {
                        require_member(shared, user, &room).await?;
                        if shared.room_rules(&room).await?.is_muted(user) {
                            return Err(ChatError::Muted(room));
                        }
                    }
                    Publisher::System if !shared.store.room_exists(&room).await? => {
                        return Err(ChatError::RoomNotFound(room));
                    }
                    Publisher::System => {}
                }
                let conv = ConvId::room(&room);
                (None, Some(room), conv)
            }
        };
        let text = shared.filter.mask(&text).unwrap_or(text);
        let ts = now_millis();
        let message = NewMessage {
            conv: conv.to_string(),
            id: shared.new_message_id(ts),
            sender: sender.clone(),
            recipient,
            room,
            text,
            ts,
            idempotency_key: key,
            kind: EntryKind::Message,
            target: None,
        };
        // The answer's connection: not in the hub, so it gets the ack and nothing else.
        let answer = Arc::new(Connection::new(
            shared.next_conn_id.fetch_add(1, Ordering::Relaxed),
            Arc::from(sender.as_str()),
            ts,
            4,
            64 * 1024,
        ));
        let origin = Origin::new(answer.clone(), None);
        shared
            .pipeline
            .submit(shared, PendingMessage { message, origin: Some(origin), received_at: Instant::now() })?;
        let frame = tokio::time::timeout(PUBLISH_WAIT, async {
            let mut frames = Vec::new();
            loop {
                answer.drain_into(&mut frames, 1);
                if let Some(frame) = frames.pop() {
                    return frame;
                }
                answer.ready().await;
            }
        })
        .await
        .map_err(|_| ChatError::Overloaded)?;
        serde_json::from_slice(&frame.payload())
            .map_err(|error| ChatError::Internal(format!("undecodable answer: {error}")))
    }

    /// Closes every connection of `user` on every node with close code 4010; returns how many
    /// were on this node.
    pub fn disconnect_user(&self, user: &str) -> usize {
        let shared = &self.shared;
        shared.publish(
            switchboard_bus::Topic::User(user.to_owned()),
            &BusHeader::Disconnect { user: user.to_owned() },
            None,
        );
        shared.disconnect_local(user)
    }

    /// The queue of events for the application's webhook.
    pub fn hooks(&self) -> &crate::hooks::HookQueue {
        &self.shared.hooks
    }

    /// Where a user is online, cluster-wide; `None` when offline.
    pub fn presence_of(&self, user: &str) -> Option<PresenceInfo> {
        self.shared.presence.info(user)
    }

    /// Whether a user exists.
    pub async fn user_exists(&self, user: &str) -> Result<bool, ChatError> {
        self.shared.user_exists(user).await
    }

    /// A page of a room's members, in name order after `after`.
    pub async fn room_members(&self, room: &str, after: Option<&str>, limit: u32) -> Result<MemberPage, ChatError> {
        let shared = &self.shared;
        if !shared.store.room_exists(room).await? {
            return Err(ChatError::RoomNotFound(room.to_owned()));
        }
        let page = shared.store.members(room, after, limit + 1).await?;
        let mut members: Vec<(String, bool)> =
            page.items.into_iter().map(|user| (user.clone(), shared.presence.is_online(&user))).collect();
        let next_cursor = if members.len() > limit as usize {
            members.truncate(limit as usize);
            members.last().map(|(user, _)| user.clone())
        } else {
            None
        };
        Ok(MemberPage { members, next_cursor, total: page.total })
    }

    /// Creates a user, with a password (hashed as at registration) or without one (then only
    /// the tokens the API issues sign them in).
    pub async fn create_user(&self, user: &str, password: Option<String>) -> Result<(), ChatError> {
        let shared = &self.shared;
        if user == SYSTEM_SENDER {
            return Err(ChatError::UserExists);
        }
        let hash = match password {
            Some(password) => {
                let chars = password.chars().count();
                if chars < shared.config.min_password_chars || chars > auth::MAX_PASSWORD_CHARS {
                    return Err(ChatError::InvalidPassword { min: shared.config.min_password_chars });
                }
                Some(shared.password_checks.hash(password).await?)
            }
            None => None,
        };
        if !shared.store.create_user(user, hash.as_deref(), now_millis()).await? {
            return Err(ChatError::UserExists);
        }
        shared.remember_user(user);
        tracing::info!(%user, "user created through the api");
        Ok(())
    }

    /// Issues a session token for an existing user, for `resume`; returns it and its expiry (ms).
    pub async fn issue_token(&self, user: &str) -> Result<(String, i64), ChatError> {
        let shared = &self.shared;
        require_user(shared, user).await?;
        let (token, token_hash) = auth::new_session_token();
        let now = now_millis();
        let expires_at = now + shared.config.session_ttl.as_millis() as i64;
        let record = SessionRecord { token_hash, user: user.to_owned(), created_at: now, expires_at };
        shared.store.create_session(&record).await?;
        Ok((token, expires_at))
    }

    /// A conversation's messages: before `before` (newest page when absent) or after `after`.
    pub async fn conversation_history(
        &self,
        conv: &ConvId,
        before: Option<u64>,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, ChatError> {
        let shared = &self.shared;
        if let Some(room) = conv.room_name() {
            if !shared.store.room_exists(room).await? {
                return Err(ChatError::RoomNotFound(room.to_owned()));
            }
        }
        let conv = conv.to_string();
        Ok(match after {
            Some(after) => shared.store.messages_after(&conv, after, limit).await?,
            None => shared.store.messages_before(&conv, before, limit).await?,
        })
    }
}

impl NodeShared {
    /// Closes this node's connections of `user`; returns how many.
    pub(crate) fn disconnect_local(&self, user: &str) -> usize {
        let connections = self.hub.connections_of(user);
        for connection in &connections {
            connection.close_with(CloseCode::Disconnected);
        }
        if !connections.is_empty() {
            tracing::info!(%user, connections = connections.len(), "user disconnected through the api");
        }
        connections.len()
    }
}

async fn require_user(shared: &NodeShared, user: &str) -> Result<(), ChatError> {
    if shared.user_exists(user).await? {
        return Ok(());
    }
    Err(ChatError::UserNotFound(user.to_owned()))
}

async fn require_member(shared: &NodeShared, user: &str, room: &str) -> Result<(), ChatError> {
    if shared.hub.is_member_here(user, room) || shared.store.is_member(room, user).await? {
        return Ok(());
    }
    if !shared.store.room_exists(room).await? {
        return Err(ChatError::RoomNotFound(room.to_owned()));
    }
    Err(ChatError::NotAMember(room.to_owned()))
}
