//! Sending, replying, editing, deleting and reacting: each becomes an entry of the
//! conversation's `seq` order through the message pipeline, so it is acknowledged, fanned out
//! (on every node, in order), synced and recovered by cursors as a message is. The store checks
//! the target inside the append's transaction (it exists, is not deleted) and updates it in
//! place; who may change which message is decided here, by [`may_change`], before.

use std::time::Instant;

use switchboard_protocol::{ConvId, RefValue, Target};
use switchboard_store::{EntryKind, NewMessage, Role, StoredMessage};

use crate::error::ChatError;
use crate::now_millis;
use crate::pipeline::{Origin, PendingMessage};
use crate::session::Session;

/// A change to an earlier message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Edit(String),
    Delete,
    /// An emoji, or "" to take one's reaction back.
    React(String),
}

impl Change {
    fn kind(&self) -> EntryKind {
        match self {
            Change::Edit(_) => EntryKind::Edit,
            Change::Delete => EntryKind::Delete,
            Change::React(_) => EntryKind::React,
        }
    }
}

/// Whether `actor` may make a change of `kind` to a message written by `sender`; `actor_moderates`
/// says whether the actor is the owner or a moderator of the message's room (false in a private
/// conversation). The one place this is decided. Anyone who can read a message may react to it.
pub(crate) fn may_change(kind: EntryKind, actor: &str, sender: &str, actor_moderates: bool) -> Result<(), ChatError> {
    match kind {
        EntryKind::Message | EntryKind::React => Ok(()),
        EntryKind::Edit if actor == sender => Ok(()),
        EntryKind::Edit => Err(ChatError::NotAllowed("only its sender may edit a message")),
        EntryKind::Delete if actor == sender || actor_moderates => Ok(()),
        EntryKind::Delete => {
            Err(ChatError::NotAllowed("only its sender or the room's owner or moderators may delete a message"))
        }
    }
}

impl Session {
    /// A new message, or a reply when `reply_to` is set (the store checks that the quoted
    /// message exists inside the append: a plain send reads nothing more).
    pub(crate) async fn send(
        &self,
        target: Target,
        text: String,
        key: Option<String>,
        reply_to: Option<u64>,
        reference: Option<&RefValue>,
        received_at: Instant,
    ) -> Result<(), ChatError> {
        let text = self.checked_text(text, key.as_deref())?;
        let conv = self.checked_conv(&target).await?;
        self.submit(target, conv, EntryKind::Message, reply_to, text, key, reference, received_at)
    }

    /// An edit, deletion or reaction of message `seq` in the conversation `target`.
    pub(crate) async fn change(
        &self,
        target: Target,
        seq: u64,
        change: Change,
        reference: Option<&RefValue>,
        received_at: Instant,
    ) -> Result<(), ChatError> {
        let shared = &self.node.shared;
        let me: &str = &self.connection.user;
        let kind = change.kind();
        let text = match change {
            Change::Edit(text) => self.checked_text(text, None)?,
            Change::Delete => String::new(),
            Change::React(emoji) => emoji,
        };
        let conv = self.checked_conv(&target).await?;
        let original = shared.store.message(&conv.to_string(), seq).await?;
        let original = checked_original(original)?;
        // The actor's role matters only to a deletion of someone else's message in a room.
        let moderates = match (&target, kind == EntryKind::Delete && original.sender != me) {
            (Target::Room(room), true) => shared.room_rules(room).await?.role_of(me) != Role::Member,
            _ => false,
        };
        may_change(kind, me, &original.sender, moderates)?;
        self.submit(target, conv, kind, Some(seq), text, None, reference, received_at)
    }

    /// A message text as stored: not empty, no NUL (nor in the key), within the limit, filtered.
    fn checked_text(&self, text: String, key: Option<&str>) -> Result<String, ChatError> {
        let shared = &self.node.shared;
        if text.trim().is_empty() {
            return Err(ChatError::EmptyText);
        }
        // NUL cannot be stored by every store (PostgreSQL text refuses it): refuse it everywhere
        // rather than store different things on different deployments.
        if text.contains('\0') || key.is_some_and(|key| key.contains('\0')) {
            return Err(ChatError::InvalidField("text and key must not contain the NUL character".into()));
        }
        let max = shared.config.max_text_chars;
        if text.len() > max && text.chars().count() > max {
            return Err(ChatError::TextTooLong { max });
        }
        Ok(shared.filter.mask(&text).unwrap_or(text))
    }

    /// The conversation `target` names, checked as one the user may write in: not blocked by the
    /// peer, not muted in the room (both from the node's cache, no store read once loaded).
    async fn checked_conv(&self, target: &Target) -> Result<ConvId, ChatError> {
        let shared = &self.node.shared;
        let me: &str = &self.connection.user;
        match target {
            Target::User(peer) => {
                self.require_user(peer).await?;
                if shared.blocks_of(peer).await?.contains(me) {
                    return Err(ChatError::Blocked(peer.clone()));
                }
            }
            Target::Room(room) => {
                self.require_member(room).await?;
                if shared.room_rules(room).await?.is_muted(me) {
                    return Err(ChatError::Muted(room.clone()));
                }
            }
        }
        Ok(self.conv_of(target))
    }

    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        target: Target,
        conv: ConvId,
        kind: EntryKind,
        changed: Option<u64>,
        text: String,
        key: Option<String>,
        reference: Option<&RefValue>,
        received_at: Instant,
    ) -> Result<(), ChatError> {
        let shared = &self.node.shared;
        let (recipient, room) = match target {
            Target::User(peer) => (Some(peer), None),
            Target::Room(room) => (None, Some(room)),
        };
        let ts = now_millis();
        let message = NewMessage {
            conv: conv.to_string(),
            id: shared.new_message_id(ts),
            sender: self.connection.user.to_string(),
            recipient,
            room,
            text,
            ts,
            idempotency_key: key,
            kind,
            target: changed,
        };
        let origin = Origin::new(self.connection.clone(), reference.cloned());
        shared.pipeline.submit(shared, PendingMessage { message, origin: Some(origin), received_at })
    }
}

/// The message a change targets: a message (not a change entry) that is not deleted.
fn checked_original(original: Option<StoredMessage>) -> Result<StoredMessage, ChatError> {
    match original {
        Some(message) if message.kind == EntryKind::Message && !message.deleted => Ok(message),
        Some(message) if message.kind == EntryKind::Message => Err(ChatError::MessageDeleted),
        _ => Err(ChatError::MessageNotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sender_edits_and_the_sender_or_room_moderators_delete() {
        assert!(may_change(EntryKind::Edit, "a", "a", false).is_ok());
        assert!(matches!(may_change(EntryKind::Edit, "b", "a", true), Err(ChatError::NotAllowed(_))));
        assert!(may_change(EntryKind::Delete, "a", "a", false).is_ok());
        assert!(may_change(EntryKind::Delete, "moderator", "a", true).is_ok());
        assert!(matches!(may_change(EntryKind::Delete, "b", "a", false), Err(ChatError::NotAllowed(_))));
        assert!(may_change(EntryKind::React, "b", "a", false).is_ok());
    }

    #[test]
    fn a_change_needs_a_live_message() {
        assert!(matches!(checked_original(None), Err(ChatError::MessageNotFound)));
    }
}
