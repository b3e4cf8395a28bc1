//! A logged-in connection: every request it makes is handled here, as its user and only as its
//! user (`from` always comes from the session, never from the frame).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use switchboard_protocol::event::{
    fitting_prefix, fitting_suffix, human_duration, ConversationView, LastMessageView, MemberView, MessageView,
    RoomView, ServerFrame, UserStats, UserView, WordCount, MAX_ANSWER_BYTES,
};
use switchboard_protocol::request::{self, ClientFrame};
use switchboard_protocol::{ActivityCursor, CloseCode, ConvId, RefValue, Request, Target};
use switchboard_store::Role;

use crate::changes::Change;
use crate::error::ChatError;
use crate::node::ChatNode;
use crate::now_millis;
use crate::outbound::Connection;
use crate::pipeline;
use crate::ratelimit::TokenBucket;

/// Most messages one `history` request returns.
const MAX_HISTORY_PAGE: u32 = 200;
const DEFAULT_HISTORY_PAGE: u32 = 50;
/// Most entries one page of `users`, `rooms`, `members` or `conversations` holds (also the
/// default). Every answer is bounded in bytes too, by [`MAX_ANSWER_BYTES`].
const MAX_LIST_PAGE: u32 = 1000;

/// The entries of one listing page, byte-bounded, and the cursor of the next. `fetched` came from
/// a store read of `limit + 1`, so a full read means another page.
fn page_of<T: serde::Serialize>(
    mut fetched: Vec<T>,
    limit: u32,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let mut more = fetched.len() > limit as usize;
    fetched.truncate(limit as usize);
    let fits = fitting_prefix(&fetched, MAX_ANSWER_BYTES);
    more |= fits < fetched.len();
    fetched.truncate(fits);
    let next_cursor = if more { fetched.last().map(key) } else { None };
    (fetched, next_cursor)
}

fn list_limit(limit: Option<u32>) -> u32 {
    limit.unwrap_or(MAX_LIST_PAGE).clamp(1, MAX_LIST_PAGE)
}

/// What the transport should do after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Write out what is queued, then close with this code.
    Close(CloseCode),
}

pub struct Session {
    pub(crate) node: ChatNode,
    pub(crate) connection: Arc<Connection>,
    /// Hash of the session token this connection uses, for `logout`.
    token_hash: String,
    bucket: TokenBucket,
    /// Frames rejected in a row by the rate limit.
    strikes: u32,
}

impl Session {
    pub(crate) fn new(node: ChatNode, connection: Arc<Connection>, token_hash: String) -> Self {
        let bucket = node.shared.new_bucket();
        Session { node, connection, token_hash, bucket, strikes: 0 }
    }

    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }

    pub fn user(&self) -> &str {
        &self.connection.user
    }

    /// Handles one text frame. Replies and deliveries go to the connection's queue.
    pub async fn handle_text(&mut self, text: &str) -> Flow {
        let received_at = Instant::now();
        let shared = &self.node.shared;
        if let Err(wait) = self.bucket.take(received_at) {
            let error = ChatError::RateLimited { retry_after_ms: wait.as_millis() as u64 + 1 };
            shared.push_error(&self.connection, request::reference_of(text).as_ref(), &error);
            return self.strike();
        }
        let frame = match request::parse(text) {
            Ok(frame) => frame,
            Err(error) => {
                shared.metrics.errors_sent.fetch_add(1, Ordering::Relaxed);
                let frame = crate::node::error_frame(error.reference.as_ref(), error.code, &error.message, None);
                self.connection.push(frame);
                return Flow::Continue;
            }
        };
        self.strikes = 0;
        let reference = frame.reference.clone();
        match self.dispatch(frame, received_at).await {
            Ok(flow) => flow,
            Err(error) => {
                if matches!(error, ChatError::Store(_) | ChatError::Internal(_)) {
                    tracing::warn!(user = %self.connection.user, %error, "request failed");
                }
                self.node.shared.push_error(&self.connection, reference.as_ref(), &error);
                Flow::Continue
            }
        }
    }

    /// Answers a WebSocket message the transport could not turn into a text frame (binary,
    /// invalid UTF-8, too large). It counts against the rate limit like any frame.
    pub fn reject_frame(&mut self, code: switchboard_protocol::ErrorCode, message: &str) -> Flow {
        let shared = &self.node.shared;
        if let Err(wait) = self.bucket.take(Instant::now()) {
            let error = ChatError::RateLimited { retry_after_ms: wait.as_millis() as u64 + 1 };
            shared.push_error(&self.connection, None, &error);
            return self.strike();
        }
        shared.metrics.errors_sent.fetch_add(1, Ordering::Relaxed);
        self.connection.push(crate::node::error_frame(None, code, message, None));
        Flow::Continue
    }

    /// Counts a frame rejected by the rate limit; too many in a row close the connection.
    fn strike(&mut self) -> Flow {
        self.strikes += 1;
        if self.strikes >= self.node.shared.config.flood_strikes {
            tracing::info!(user = %self.connection.user, "connection closed for flooding");
            return Flow::Close(CloseCode::Flood);
        }
        Flow::Continue
    }

    /// Takes the connection out of the node. Called once, when the transport is done.
    pub fn end(self) {
        self.node.shared.end_connection(&self.connection);
    }

    fn reply(&self, frame: ServerFrame<'_>) {
        self.connection.push(frame.encode());
    }

    pub(crate) fn conv_of(&self, target: &Target) -> ConvId {
        match target {
            Target::User(peer) => ConvId::direct(&self.connection.user, peer),
            Target::Room(room) => ConvId::room(room),
        }
    }

    pub(crate) async fn require_member(&self, room: &str) -> Result<(), ChatError> {
        let shared = &self.node.shared;
        if shared.hub.is_member_here(&self.connection.user, room) {
            return Ok(());
        }
        // Another node may have changed the membership; the store is the truth.
        if shared.store.is_member(room, &self.connection.user).await? {
            return Ok(());
        }
        if !shared.store.room_exists(room).await? {
            return Err(ChatError::RoomNotFound(room.to_owned()));
        }
        Err(ChatError::NotAMember(room.to_owned()))
    }

    /// The conversation a `read` or `delivered` moves a marker in, checked as the user's, and its
    /// newest seq (no marker goes past it).
    async fn marker_target(&self, target: &Target) -> Result<(String, u64), ChatError> {
        match target {
            Target::Room(room) => self.require_member(room).await?,
            Target::User(peer) => self.require_user(peer).await?,
        }
        let conv = self.conv_of(target).to_string();
        let last = self.node.shared.store.last_seq(&conv).await?;
        Ok((conv, last))
    }

    pub(crate) async fn require_user(&self, user: &str) -> Result<(), ChatError> {
        if self.node.shared.user_exists(user).await? {
            return Ok(());
        }
        Err(ChatError::UserNotFound(user.to_owned()))
    }

    async fn dispatch(&mut self, frame: ClientFrame, received_at: Instant) -> Result<Flow, ChatError> {
        let shared = self.node.shared.clone();
        let reference = frame.reference;
        let reference = reference.as_ref();
        let user = self.connection.user.clone();
        let me: &str = &user;
        match frame.request {
            request if request.is_login() => return Err(ChatError::AlreadyAuthenticated),
            Request::Send { target, text, key, reply_to } => {
                self.send(target, text, key, reply_to, reference, received_at).await?
            }
            Request::Edit { target, seq, text } => {
                self.change(target, seq, Change::Edit(text), reference, received_at).await?
            }
            Request::Delete { target, seq } => self.change(target, seq, Change::Delete, reference, received_at).await?,
            Request::React { target, seq, emoji } => {
                self.change(target, seq, Change::React(emoji), reference, received_at).await?
            }
            Request::History { target, before, after, limit } => {
                let conv = self.conv_of(&target);
                match &target {
                    Target::Room(room) => self.require_member(room).await?,
                    Target::User(peer) => self.require_user(peer).await?,
                }
                let limit = limit.unwrap_or(DEFAULT_HISTORY_PAGE).clamp(1, MAX_HISTORY_PAGE);
                let conv_text = conv.to_string();
                // Cut to the byte bound on the side the client pages from: the oldest of an
                // `after` page, the newest of a `before` page; `has_more` then says a next page
                // follows the last (or first) message received, as for a full page.
                let stored = match after {
                    Some(after) => shared.store.messages_after(&conv_text, after, limit).await?,
                    None => shared.store.messages_before(&conv_text, before, limit).await?,
                };
                let mut messages: Vec<MessageView<'_>> = stored.iter().map(pipeline::view_of).collect();
                let has_more = if after.is_some() {
                    let fits = fitting_prefix(&messages, MAX_ANSWER_BYTES);
                    let has_more = messages.len() as u32 == limit || fits < messages.len();
                    messages.truncate(fits);
                    has_more
                } else {
                    messages.drain(..messages.len() - fitting_suffix(&messages, MAX_ANSWER_BYTES));
                    messages.first().is_some_and(|m| m.seq > 1)
                };
                self.reply(ServerFrame::History { reference, conv: &conv_text, messages: &messages, has_more });
            }
            Request::Typing { target } => {
                let conv = self.conv_of(&target).to_string();
                match &target {
                    Target::User(peer) => {
                        self.require_user(peer).await?;
                        if !shared.blocks_of(peer).await?.contains(me) {
                            let frame = ServerFrame::Typing { conv: &conv, from: me, room: None }.encode();
                            shared.event_to_user(peer, &frame, None);
                        }
                    }
                    Target::Room(room) => {
                        self.require_member(room).await?;
                        let frame = ServerFrame::Typing { conv: &conv, from: me, room: Some(room) }.encode();
                        shared.event_to_room(room, &frame, Some(me));
                    }
                }
            }
            Request::Read { target, seq } => {
                let (conv, last) = self.marker_target(&target).await?;
                let stored = shared.store.set_read(me, &conv, seq.min(last)).await?;
                let frame = ServerFrame::Read { conv: &conv, user: me, seq: stored }.encode();
                shared.event_to_user(me, &frame, Some(self.connection.id));
                if let Target::User(peer) = &target {
                    if peer != me {
                        shared.event_to_user(peer, &frame, None);
                    }
                }
                self.reply(ServerFrame::Ok { reference, of: "read" });
            }
            Request::Delivered { target, seq } => {
                let (conv, last) = self.marker_target(&target).await?;
                let stored = shared.store.set_delivered(me, &conv, seq.min(last)).await?;
                // Only a private conversation's peer shows "delivered"; rooms keep it for later.
                if let Target::User(peer) = &target {
                    if peer != me {
                        let frame = ServerFrame::Delivered { conv: &conv, user: me, seq: stored }.encode();
                        shared.event_to_user(peer, &frame, None);
                    }
                }
                self.reply(ServerFrame::Ok { reference, of: "delivered" });
            }
            Request::Conversations { after, limit } => {
                let limit = list_limit(limit);
                // The protocol checked the cursor's form already.
                let after = after.as_deref().and_then(|after| ActivityCursor::parse(after).ok()).map(|cursor| {
                    switchboard_store::ActivityCursor { last_ts: cursor.last_ts, conv: cursor.conv.to_string() }
                });
                let page = shared.store.conversations_by_activity(me, after.as_ref(), limit + 1).await?;
                let with_messages: Vec<String> =
                    page.items.iter().filter(|record| record.last_seq > 0).map(|record| record.conv.clone()).collect();
                let mut last: HashMap<String, LastMessageView> = shared
                    .store
                    .last_messages(&with_messages)
                    .await?
                    .into_iter()
                    .map(|message| {
                        let view = LastMessageView::new(message.seq, &message.sender, &message.text);
                        (message.conv, view)
                    })
                    .collect();
                let views: Vec<ConversationView> = page
                    .items
                    .iter()
                    .map(|record| {
                        let conv = ConvId::parse(&record.conv).ok();
                        ConversationView {
                            conv: record.conv.clone(),
                            peer: conv.as_ref().and_then(|c| c.peer_of(me)).map(str::to_owned),
                            room: conv.as_ref().and_then(|c| c.room_name()).map(str::to_owned),
                            last_seq: record.last_seq,
                            read_seq: record.read_seq,
                            peer_read_seq: record.peer_markers().map(|(read, _)| read),
                            peer_delivered_seq: record.peer_markers().map(|(_, delivered)| delivered),
                            unread: record.unread,
                            last_ts: record.last_ts,
                            last: last.remove(&record.conv),
                        }
                    })
                    .collect();
                let (views, next_cursor) = page_of(views, limit, |view| format!("{}:{}", view.last_ts, view.conv));
                self.reply(ServerFrame::Conversations {
                    reference,
                    conversations: &views,
                    next_cursor: next_cursor.as_deref(),
                    total: page.total,
                });
            }
            Request::CreateRoom { room, private } => {
                if !shared.store.create_room_with(&room, me, private, now_millis()).await? {
                    return Err(ChatError::RoomExists(room));
                }
                tracing::info!(%room, user = me, private, "room created");
                shared.room_created(&room, me, private);
                self.join(&room, true, reference).await?;
            }
            Request::Join { room } => {
                // An existing room may refuse the join (invite-only, a ban); a missing one is
                // created by it, in the join's batch.
                match shared.check_join(&room, me).await {
                    Ok(_) | Err(ChatError::RoomNotFound(_)) => {}
                    Err(error) => return Err(error),
                }
                self.join(&room, false, reference).await?;
            }
            Request::Leave { room } => {
                if !shared.store.room_exists(&room).await? {
                    return Err(ChatError::RoomNotFound(room));
                }
                if !shared.store.remove_member(&room, me).await? {
                    return Err(ChatError::NotAMember(room));
                }
                if shared.membership_changed(&room, false).await? {
                    let left = ServerFrame::MemberLeft { room: &room, user: me }.encode();
                    shared.member_event(&room, &left);
                }
                if shared.hub.leave_room(me, &room) {
                    shared.room_listeners_changed(&room);
                }
                shared.publish_membership(me, &room, false, None);
                self.reply(ServerFrame::Ok { reference, of: "leave" });
            }
            Request::Members { room, after, limit } => {
                let rules = shared.room_rules(&room).await?;
                if rules.private && !shared.is_member(me, &room).await? {
                    return Err(ChatError::NotAMember(room));
                }
                let limit = list_limit(limit);
                let page = shared.store.members(&room, after.as_deref(), limit + 1).await?;
                let views: Vec<MemberView> = page
                    .items
                    .into_iter()
                    .map(|user| MemberView {
                        online: shared.presence.is_online(&user),
                        role: Some(rules.role_of(&user)).filter(|role| *role > Role::Member).map(Role::as_str),
                        muted: rules.is_muted(&user),
                        user,
                    })
                    .collect();
                let (views, next_cursor) = page_of(views, limit, |view| view.user.clone());
                self.reply(ServerFrame::Members {
                    reference,
                    room: &room,
                    members: &views,
                    next_cursor: next_cursor.as_deref(),
                    total: page.total,
                });
            }
            Request::Rooms { after, limit } => {
                let limit = list_limit(limit);
                let page = shared.store.list_rooms(me, after.as_deref(), limit + 1).await?;
                let views: Vec<RoomView> = page
                    .items
                    .into_iter()
                    .map(|room| RoomView {
                        name: room.name,
                        members: room.members,
                        joined: room.joined,
                        private: room.private,
                        role: room.role.map(Role::as_str),
                    })
                    .collect();
                let (views, next_cursor) = page_of(views, limit, |view| view.name.clone());
                self.reply(ServerFrame::Rooms {
                    reference,
                    rooms: &views,
                    next_cursor: next_cursor.as_deref(),
                    total: page.total,
                });
            }
            Request::Users { prefix, after, limit } => {
                let limit = list_limit(limit);
                let names = shared.store.list_users(&prefix, after.as_deref(), limit + 1).await?;
                let views: Vec<UserView> =
                    names.into_iter().map(|user| UserView { online: shared.presence.is_online(&user), user }).collect();
                let (views, next_cursor) = page_of(views, limit, |view| view.user.clone());
                self.reply(ServerFrame::Users { reference, users: &views, next_cursor: next_cursor.as_deref() });
            }
            Request::Online => shared.push_online_list(&self.connection, reference),
            Request::Watch { users } => {
                let max = shared.config.presence_watch_max;
                if shared.watchers.watch(&self.connection, users.iter().map(String::as_str), max).is_err() {
                    return Err(ChatError::InvalidField(format!("a connection watches at most {max} users")));
                }
                let views: Vec<UserView> =
                    users.into_iter().map(|user| UserView { online: shared.presence.is_online(&user), user }).collect();
                self.reply(ServerFrame::Watching { reference, users: &views });
            }
            Request::Unwatch { users } => {
                shared.watchers.unwatch(self.connection.id, &users);
                self.reply(ServerFrame::Ok { reference, of: "unwatch" });
            }
            Request::Popular { n, seconds } => {
                let n = n.unwrap_or(10).clamp(1, 100) as usize;
                let window = shared.popular.window_secs();
                let seconds = seconds.unwrap_or(window).clamp(1, window);
                let now_secs = (now_millis() / 1000) as u64;
                let words: Vec<WordCount> = shared
                    .popular
                    .top(n, seconds, now_secs)
                    .into_iter()
                    .map(|(word, count)| WordCount { word, count })
                    .collect();
                self.reply(ServerFrame::Popular { reference, seconds, words: &words });
            }
            Request::Stats { user } => {
                let stats = match shared.presence.info(&user) {
                    Some(info) => {
                        let online_secs = ((now_millis() - info.since).max(0) / 1000) as u64;
                        UserStats {
                            user,
                            online: true,
                            online_since: Some(info.since),
                            online_secs: Some(online_secs),
                            online_for: Some(human_duration(online_secs)),
                            nodes: info.nodes,
                            connections: info.connections,
                        }
                    }
                    None => {
                        self.require_user(&user).await?;
                        UserStats {
                            user,
                            online: false,
                            online_since: None,
                            online_secs: None,
                            online_for: None,
                            nodes: Vec::new(),
                            connections: 0,
                        }
                    }
                };
                self.reply(ServerFrame::Stats { reference, stats: &stats });
            }
            Request::Whoami => self.reply(ServerFrame::Whoami {
                reference,
                user: me,
                node: &shared.config.node_id,
                conn: self.connection.id,
                connected_at: self.connection.connected_at,
            }),
            Request::Ping => self.reply(ServerFrame::Pong { reference, ts: now_millis() }),
            Request::Logout => {
                shared.store.delete_session(&self.token_hash).await?;
                self.reply(ServerFrame::Ok { reference, of: "logout" });
                return Ok(Flow::Close(CloseCode::Normal));
            }
            Request::Moderate { action, room, user } => {
                shared.moderate(me, action, &room, &user).await?;
                self.reply(ServerFrame::Ok { reference, of: action.as_str() });
            }
            Request::Block { user } => {
                shared.set_block(me, &user, true).await?;
                self.reply(ServerFrame::Ok { reference, of: "block" });
            }
            Request::Unblock { user } => {
                shared.set_block(me, &user, false).await?;
                self.reply(ServerFrame::Ok { reference, of: "unblock" });
            }
            Request::Blocked => {
                let users = shared.store.blocks_of(me).await?;
                self.reply(ServerFrame::Blocked { reference, users: &users });
            }
            _ => return Err(ChatError::AlreadyAuthenticated),
        }
        Ok(Flow::Continue)
    }

    async fn join(&self, room: &str, created: bool, reference: Option<&RefValue>) -> Result<(), ChatError> {
        let shared = &self.node.shared;
        let me: &str = &self.connection.user;
        let listening = shared.hub.is_in_room(me, room);
        if shared.hub.join_room(me, room) {
            shared.room_listeners_changed(room);
        }
        // Subscribed before the batch reads the history: a room message committed elsewhere after
        // the read reaches this node.
        shared.subscriptions_settled().await;
        let answer = match shared.joins.join(shared, room, me).await {
            Ok(answer) => answer,
            Err(error) => {
                if !listening && shared.hub.leave_room(me, room) {
                    shared.room_listeners_changed(room);
                }
                return Err(error);
            }
        };
        if answer.joined.created {
            shared.room_created(room, me, false);
        }
        // Live messages of the room follow on from the answer's history, here and on the user's
        // other nodes.
        let history = &answer.room.history;
        let answered = history.last().map_or(answer.room.last_seq, |message| message.seq.max(answer.room.last_seq));
        self.connection.caught_up(&ConvId::room(room).to_string(), answered);
        shared.publish_membership(me, room, true, Some(answered));
        if answer.member_event {
            let joined = ServerFrame::MemberJoined { room, user: me }.encode();
            shared.member_event(room, &joined);
        }
        let mut views: Vec<MessageView<'_>> = history.iter().map(pipeline::view_of).collect();
        // The newest that fit: older ones are a `history` request away.
        views.drain(..views.len() - fitting_suffix(&views, MAX_ANSWER_BYTES));
        let created = created || answer.joined.created;
        let rules = shared.room_rules(room).await?;
        let role = rules.role_of(me).as_str();
        let private = rules.private;
        self.reply(ServerFrame::Room { reference, room, created, joined: true, history: &views, private, role });
        Ok(())
    }
}
