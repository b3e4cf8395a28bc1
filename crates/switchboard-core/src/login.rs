//! A connection's way in: the login requests, the session it opens, and the sync that brings it
//! up to date before live messages flow.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use switchboard_protocol::event::{fitting_prefix, ServerFrame, SyncEntry, MAX_ANSWER_BYTES};
use switchboard_protocol::request::{self, AuthOptions, ClientFrame};
use switchboard_protocol::ws::WireFrame;
use switchboard_protocol::{ConvId, RefValue, Request};
use switchboard_store::SessionRecord;

use crate::auth;
use crate::error::ChatError;
use crate::node::{error_frame, ChatNode, NodeShared};
use crate::now_millis;
use crate::outbound::{ConnId, Connection};
use crate::pipeline;
use crate::ratelimit;
use crate::session::Session;

/// Names per `online` frame.
const ONLINE_CHUNK: usize = 1000;

impl ChatNode {
    /// Handles a frame of a connection that has no session yet. Only login frames are accepted;
    /// anything else is answered with an error frame, which the transport writes.
    pub async fn login(&self, text: &str, peer: IpAddr) -> Result<Session, WireFrame> {
        self.login_with(text, peer, false).await
    }

    async fn login_with(&self, text: &str, peer: IpAddr, everyone: bool) -> Result<Session, WireFrame> {
        let mut frame = match request::parse(text) {
            Ok(frame) => frame,
            Err(error) => {
                return Err(error_frame(error.reference.as_ref(), error.code, &error.message, None));
            }
        };
        if let Some(options) = frame.request.options_mut() {
            options.presence_everyone = everyone && options.presence;
        }
        let reference = frame.reference.clone();
        // Never closed, so a permit always comes.
        let _admitted = self.shared.login_permits.acquire().await;
        let metrics = &self.shared.metrics;
        let in_flight = metrics.logins_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        metrics.logins_in_flight_max.fetch_max(in_flight, Ordering::Relaxed);
        let outcome = self.try_login(frame, peer).await;
        metrics.logins_in_flight.fetch_sub(1, Ordering::Relaxed);
        match outcome {
            Ok(session) => Ok(session),
            Err(error) => {
                self.shared.metrics.errors_sent.fetch_add(1, Ordering::Relaxed);
                if matches!(error, ChatError::AuthFailed | ChatError::InvalidToken | ChatError::InvalidJwt(_)) {
                    self.shared.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
                }
                Err(error_frame(reference.as_ref(), error.code(), &error.to_string(), error.retry_after_ms()))
            }
        }
    }

    /// [`ChatNode::login`] for the compatibility dialects whose protocols show the whole online
    /// list: the session hears presence about every user (the native protocol only hears about
    /// contacts and watched users).
    pub async fn login_everyone(&self, text: &str, peer: IpAddr) -> Result<Session, WireFrame> {
        self.login_with(text, peer, true).await
    }

    pub(crate) async fn try_login(&self, frame: ClientFrame, peer: IpAddr) -> Result<Session, ChatError> {
        let shared = &self.shared;
        let config = &shared.config;
        let reference = frame.reference;
        let client = ratelimit::client_key(peer);
        let ip_key = format!("ip:{client}");
        let now = Instant::now();
        match frame.request {
            Request::Register { username, password, options } => {
                if !config.registration {
                    return Err(ChatError::AuthMethodDisabled("registration"));
                }
                shared.check_throttle(&ip_key, config.login_failures_per_ip, now)?;
                let chars = password.chars().count();
                if chars < config.min_password_chars || chars > auth::MAX_PASSWORD_CHARS {
                    return Err(ChatError::InvalidPassword { min: config.min_password_chars });
                }
                if username == crate::backend::SYSTEM_SENDER {
                    return Err(ChatError::UserExists);
                }
                let hash = shared.password_checks.hash(password).await?;
                if !shared.store.create_user(&username, Some(&hash), now_millis()).await? {
                    return Err(ChatError::UserExists);
                }
                shared.remember_user(&username);
                tracing::info!(user = %username, "user registered");
                self.start_session(username, None, false, false, options, reference).await
            }
            Request::Login { username, password, options } => {
                // Per name and address: failures from one address never lock the name's owner out
                // elsewhere (docs/protocol.md, login throttling).
                let user_key = format!("user:{username}@{client}");
                shared.check_throttle(&user_key, config.login_failures_per_user, now)?;
                shared.check_throttle(&ip_key, config.login_failures_per_ip, now)?;
                let stored_hash = shared.store.user(&username).await?.and_then(|user| user.password_hash);
                let password_fits = password.chars().count() <= auth::MAX_PASSWORD_CHARS;
                // An unknown name goes through a hash too, so it answers as slowly as a wrong password.
                let matches = password_fits && shared.password_checks.verify(password, stored_hash).await?;
                if !matches {
                    shared.login_throttle.record_failure(&user_key, now);
                    shared.login_throttle.record_failure(&ip_key, now);
                    tracing::info!(user = %username, %peer, "login failed");
                    return Err(ChatError::AuthFailed);
                }
                shared.login_throttle.clear(&user_key);
                shared.remember_user(&username);
                self.start_session(username, None, false, false, options, reference).await
            }
            Request::Resume { token, options } => {
                shared.check_throttle(&ip_key, config.login_failures_per_ip, now)?;
                let token_hash = auth::token_hash(&token);
                let session = shared.store.session(&token_hash).await?;
                let Some(session) = session.filter(|s| s.expires_at > now_millis()) else {
                    shared.login_throttle.record_failure(&ip_key, now);
                    return Err(ChatError::InvalidToken);
                };
                shared.remember_user(&session.user);
                self.start_session(session.user.clone(), Some((token, session)), true, false, options, reference).await
            }
            Request::LoginJwt { jwt, options } => {
                let Some(secret) = config.jwt_secret.as_deref() else {
                    return Err(ChatError::AuthMethodDisabled("jwt login"));
                };
                shared.check_throttle(&ip_key, config.login_failures_per_ip, now)?;
                let username = match auth::verify_jwt(&jwt, secret) {
                    Ok(username) => username,
                    Err(error) => {
                        shared.login_throttle.record_failure(&ip_key, now);
                        return Err(error);
                    }
                };
                self.start_new_user_session(username, options, reference).await
            }
            Request::LoginOpen { username, options } => {
                if !config.open_auth {
                    return Err(ChatError::AuthMethodDisabled("open login"));
                }
                self.start_new_user_session(username, options, reference).await
            }
            _ => Err(ChatError::NotAuthenticated),
        }
    }

    /// Opens a session for a JWT or open login, which create the user on first login.
    pub(crate) async fn start_new_user_session(
        &self,
        user: String,
        options: AuthOptions,
        reference: Option<RefValue>,
    ) -> Result<Session, ChatError> {
        self.start_session(user, None, false, true, options, reference).await
    }

    /// Opens a session: issues (or keeps) the token, registers the connection, and queues the
    /// `session` answer, the online list and everything the user missed. `create_user` makes a
    /// user without a password when the name is free (JWT and open logins).
    pub(crate) async fn start_session(
        &self,
        user: String,
        existing: Option<(String, SessionRecord)>,
        resumed: bool,
        create_user: bool,
        options: AuthOptions,
        reference: Option<RefValue>,
    ) -> Result<Session, ChatError> {
        if user == crate::backend::SYSTEM_SENDER {
            // The API's system sender: nobody signs in as it.
            return Err(ChatError::AuthFailed);
        }
        let shared = &self.shared;
        let now = now_millis();
        let create_user = existing.is_none() && create_user && !shared.known_users.read().contains(user.as_str());
        let (token, record, new_record) = match existing {
            Some((token, record)) => (token, record, false),
            None => {
                let (token, token_hash) = auth::new_session_token();
                let ttl = shared.config.session_ttl.as_millis() as i64;
                let record = SessionRecord { token_hash, user: user.clone(), created_at: now, expires_at: now + ttl };
                (token, record, true)
            }
        };
        // One store round trip: the user (JWT and open logins create it), the token, the rooms.
        // Register first (holding live messages back), then read what to sync: a message committed
        // in between is then either in the sync or held, never neither.
        let rooms = shared.store.open_session(&user, create_user, new_record.then_some(&record), now).await?;
        if create_user {
            shared.remember_user(&user);
        }
        let everyone = options.presence_everyone || (options.presence && shared.config.presence_everyone);
        let contacts = if options.presence && !everyone { shared.contacts_of(&user).await? } else { Vec::new() };
        let user: Arc<str> = Arc::from(user.as_str());
        let conn_id: ConnId = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection::new(
            conn_id,
            user.clone(),
            now,
            shared.config.queue_max_frames,
            shared.config.queue_max_bytes,
        ));
        connection.push(
            ServerFrame::Session {
                reference: reference.as_ref(),
                user: &user,
                token: &token,
                expires_at: record.expires_at,
                resumed,
                node: &shared.config.node_id,
                conn: conn_id,
            }
            .encode(),
        );
        connection.begin_sync();
        let registration = shared.hub.register(&connection, &rooms);
        if everyone {
            shared.watchers.watch_everyone(&connection);
        } else if options.presence {
            let max = shared.config.presence_watch_max;
            let contacts = contacts.iter().map(String::as_str).chain([&*user]).take(max);
            // Within the limit by construction: a fresh connection watches nothing yet.
            let _ = shared.watchers.watch(&connection, contacts, max);
        }
        for room in &registration.rooms_changed {
            shared.room_listeners_changed(room);
        }
        shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
        shared.metrics.connections_total.fetch_add(1, Ordering::Relaxed);
        // Every count change is shared (other nodes' `stats` count this connection too); events
        // go out only when the user comes online anywhere.
        shared.local_presence_changed(&user);
        if options.presence || everyone {
            shared.push_online_list(&connection, None);
        }
        shared.catch_up_with_cluster().await;
        let sync = shared.collect_sync(&user, &options.cursors).await;
        let (missed, sent) = match sync {
            Ok(sync) => sync,
            Err(error) => {
                // Registered already: undo it, so a failed sync leaves nothing behind.
                shared.end_connection(&connection);
                return Err(error);
            }
        };
        if connection.finish_sync(missed, sent) {
            shared.hub.gaps.watch(&connection);
        }
        tracing::debug!(user = %user, conn = conn_id, resumed, "session started");
        Ok(Session::new(self.clone(), connection, record.token_hash))
    }
}

impl NodeShared {
    pub(crate) fn check_throttle(&self, key: &str, limit: u32, now: Instant) -> Result<(), ChatError> {
        self.login_throttle
            .check(key, limit, now)
            .map_err(|wait| ChatError::LoginThrottled { retry_after_ms: wait.as_millis() as u64 + 1 })
    }

    /// Before a new connection's sync read: once this returns, whatever another node commits
    /// reaches this connection over the bus (the user's topic and its rooms' are subscribed on
    /// the broker), so the sync and the live stream leave no gap between them. It waits for the
    /// broker only, never for another node: a dead or slow node holds no login up.
    pub(crate) async fn catch_up_with_cluster(&self) {
        self.subscriptions_settled().await;
    }

    /// The users `user` has private conversations with (the first `presence_watch_max`), whose
    /// presence a new connection hears.
    pub(crate) async fn contacts_of(&self, user: &str) -> Result<Vec<String>, ChatError> {
        let max = self.config.presence_watch_max;
        let mut contacts = Vec::new();
        let mut after: Option<String> = None;
        while contacts.len() < max {
            let page = self.store.conversations_page(user, after.as_deref(), ONLINE_CHUNK as u32).await?;
            let full = page.items.len() == ONLINE_CHUNK;
            after = page.items.last().map(|record| record.conv.clone());
            let mut rooms_reached = false;
            for record in &page.items {
                match ConvId::parse(&record.conv).ok().as_ref().and_then(|conv| conv.peer_of(user)) {
                    Some(peer) if peer != user => contacts.push(peer.to_owned()),
                    Some(_) => {}
                    // Private conversations sort before rooms: the first room ends them.
                    None => rooms_reached = true,
                }
            }
            if rooms_reached || !full {
                break;
            }
        }
        contacts.truncate(max);
        Ok(contacts)
    }

    /// Queues the online list, sorted, in chunks: the online users among those the connection
    /// watches (or everyone, for a connection that watches everyone or with the `everyone` setting).
    pub(crate) fn push_online_list(&self, connection: &Connection, reference: Option<&RefValue>) {
        let online = if self.config.presence_everyone || self.watchers.watches_everyone(connection.id) {
            self.presence.online()
        } else {
            let mut watched = self.watchers.watched_by(connection.id);
            watched.retain(|user| self.presence.is_online(user));
            watched
        };
        let names: Vec<&str> = online.iter().map(|user| &**user).collect();
        if names.is_empty() {
            connection.push(ServerFrame::Online { reference, users: &[], done: true }.encode());
            return;
        }
        let chunks = names.chunks(ONLINE_CHUNK);
        let last = chunks.len() - 1;
        for (index, chunk) in chunks.enumerate() {
            connection.push(ServerFrame::Online { reference, users: chunk, done: index == last }.encode());
        }
    }

    /// Builds the frames that bring a connection up to date: a `sync` summary, every message after
    /// the client's cursor (or, without one, after the user's read marker), then `synced`.
    pub(crate) async fn collect_sync(
        &self,
        user: &str,
        cursors: &BTreeMap<ConvId, u64>,
    ) -> Result<(Vec<WireFrame>, HashMap<String, u64>), ChatError> {
        let limit = self.config.sync_limit_per_conv;
        let cursors: HashMap<String, u64> = cursors.iter().map(|(conv, seq)| (conv.to_string(), *seq)).collect();
        let reads = self.store.sync_read(user, &cursors, limit).await?;
        let mut entries = Vec::new();
        let mut frames = Vec::new();
        let mut sent = std::collections::HashMap::with_capacity(reads.len());
        for read in reads {
            let conversation = read.conversation;
            let newest = read.messages.last().map_or(read.from, |m| m.seq);
            if conversation.last_seq > read.from {
                entries.push(SyncEntry {
                    conv: conversation.conv.clone(),
                    last_seq: conversation.last_seq,
                    read_seq: conversation.read_seq,
                    peer_read_seq: conversation.peer_markers().map(|(read, _)| read),
                    peer_delivered_seq: conversation.peer_markers().map(|(_, delivered)| delivered),
                    unread: conversation.unread,
                    from_seq: read.from,
                    count: read.messages.len(),
                    more: newest < conversation.last_seq,
                });
            }
            for message in &read.messages {
                frames.push(ServerFrame::Message(&pipeline::view_of(message)).encode());
            }
            // Live messages follow on from the newest committed when the sync read: what is
            // older the client has or pages to.
            sent.insert(conversation.conv, newest.max(conversation.last_seq));
        }
        let total = frames.len();
        let mut out = Vec::with_capacity(total + 2);
        // A user in tens of thousands of conversations has a summary of megabytes: it goes in as
        // many `sync` frames as keep each under the answer bound (always at least one).
        let mut rest = &entries[..];
        loop {
            let (chunk, after) = rest.split_at(fitting_prefix(rest, MAX_ANSWER_BYTES));
            out.push(ServerFrame::Sync { conversations: chunk }.encode());
            rest = after;
            if rest.is_empty() {
                break;
            }
        }
        out.extend(frames);
        out.push(ServerFrame::Synced { messages: total }.encode());
        tracing::trace!(user, messages = total, "sync collected");
        Ok((out, sent))
    }
}
