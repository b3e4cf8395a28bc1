//! Joins are batched into the store: concurrent joins share a transaction, and what one join
//! asks of the store does not grow with the room. A store wrapper counts the calls and can hold
//! the join batches back, so the tests see exactly what reached the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::json;
use switchboard_store::{
    ActivityCursor, AppendOutcome, ConversationRecord, JoinRequest, JoinedBatch, Millis, NewMessage, Page, RoomAccess,
    RoomRules, RoomSummary, SessionRecord, SqliteStore, Store, StoreResult, StoredMessage, SyncRead, UserRecord,
};
use switchboard_testkit::{TestClient, TestServer};
use tokio::sync::watch;

/// A store that counts every call and lets join batches through only while its gate is open.
struct CountingStore {
    inner: SqliteStore,
    calls: AtomicU64,
    join_batches: Mutex<Vec<usize>>,
    gate: watch::Sender<bool>,
}

impl CountingStore {
    async fn new() -> Arc<CountingStore> {
        Arc::new(CountingStore {
            inner: SqliteStore::open_in_memory().await.unwrap(),
            calls: AtomicU64::new(0),
            join_batches: Mutex::new(Vec::new()),
            gate: watch::Sender::new(true),
        })
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Store for CountingStore {
    async fn create_user(&self, name: &str, password_hash: Option<&str>, now: Millis) -> StoreResult<bool> {
        self.count();
        self.inner.create_user(name, password_hash, now).await
    }
    async fn user(&self, name: &str) -> StoreResult<Option<UserRecord>> {
        self.count();
        self.inner.user(name).await
    }
    async fn list_users(&self, prefix: &str, after: Option<&str>, limit: u32) -> StoreResult<Vec<String>> {
        self.count();
        self.inner.list_users(prefix, after, limit).await
    }
    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()> {
        self.count();
        self.inner.create_session(session).await
    }
    async fn session(&self, token_hash: &str) -> StoreResult<Option<SessionRecord>> {
        self.count();
        self.inner.session(token_hash).await
    }
    async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        self.count();
        self.inner.delete_session(token_hash).await
    }
    async fn create_room(&self, room: &str, creator: &str, now: Millis) -> StoreResult<bool> {
        self.count();
        self.inner.create_room(room, creator, now).await
    }
    async fn room_exists(&self, room: &str) -> StoreResult<bool> {
        self.count();
        self.inner.room_exists(room).await
    }
    async fn list_rooms(&self, viewer: &str, after: Option<&str>, limit: u32) -> StoreResult<Page<RoomSummary>> {
        self.count();
        self.inner.list_rooms(viewer, after, limit).await
    }
    async fn add_member(&self, room: &str, user: &str, now: Millis) -> StoreResult<bool> {
        self.count();
        self.inner.add_member(room, user, now).await
    }
    async fn remove_member(&self, room: &str, user: &str) -> StoreResult<bool> {
        self.count();
        self.inner.remove_member(room, user).await
    }
    async fn members(&self, room: &str, after: Option<&str>, limit: u32) -> StoreResult<Page<String>> {
        self.count();
        self.inner.members(room, after, limit).await
    }
    async fn rooms_of(&self, user: &str) -> StoreResult<Vec<String>> {
        self.count();
        self.inner.rooms_of(user).await
    }
    async fn join_rooms(&self, requests: &[JoinRequest], history: u32, now: Millis) -> StoreResult<JoinedBatch> {
        self.count();
        let mut gate = self.gate.subscribe();
        self.join_batches.lock().push(requests.len());
        let _ = gate.wait_for(|open| *open).await;
        self.inner.join_rooms(requests, history, now).await
    }
    async fn open_session(
        &self,
        user: &str,
        create_user: bool,
        session: Option<&SessionRecord>,
        now: Millis,
    ) -> StoreResult<Vec<String>> {
        self.count();
        self.inner.open_session(user, create_user, session, now).await
    }
    async fn append(&self, batch: Vec<NewMessage>) -> StoreResult<Vec<AppendOutcome>> {
        self.count();
        self.inner.append(batch).await
    }
    async fn messages_after(&self, conv: &str, after: u64, limit: u32) -> StoreResult<Vec<StoredMessage>> {
        self.count();
        self.inner.messages_after(conv, after, limit).await
    }
    async fn messages_before(&self, conv: &str, before: Option<u64>, limit: u32) -> StoreResult<Vec<StoredMessage>> {
        self.count();
        self.inner.messages_before(conv, before, limit).await
    }
    async fn last_messages(&self, convs: &[String]) -> StoreResult<Vec<StoredMessage>> {
        self.count();
        self.inner.last_messages(convs).await
    }
    async fn conversations_of(&self, user: &str) -> StoreResult<Vec<ConversationRecord>> {
        self.count();
        self.inner.conversations_of(user).await
    }
    async fn conversations_page(
        &self,
        user: &str,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Page<ConversationRecord>> {
        self.count();
        self.inner.conversations_page(user, after, limit).await
    }
    async fn sync_read(&self, user: &str, cursors: &HashMap<String, u64>, limit: u32) -> StoreResult<Vec<SyncRead>> {
        self.count();
        self.inner.sync_read(user, cursors, limit).await
    }
    async fn last_seq(&self, conv: &str) -> StoreResult<u64> {
        self.count();
        self.inner.last_seq(conv).await
    }
    async fn set_read(&self, user: &str, conv: &str, seq: u64) -> StoreResult<u64> {
        self.count();
        self.inner.set_read(user, conv, seq).await
    }
    async fn set_delivered(&self, user: &str, conv: &str, seq: u64) -> StoreResult<u64> {
        self.count();
        self.inner.set_delivered(user, conv, seq).await
    }
    async fn message(&self, conv: &str, seq: u64) -> StoreResult<Option<StoredMessage>> {
        self.count();
        self.inner.message(conv, seq).await
    }
    async fn conversations_by_activity(
        &self,
        user: &str,
        after: Option<&ActivityCursor>,
        limit: u32,
    ) -> StoreResult<Page<ConversationRecord>> {
        self.count();
        self.inner.conversations_by_activity(user, after, limit).await
    }
    async fn close(&self) {
        self.inner.close().await;
    }
}

#[async_trait]
impl RoomAccess for CountingStore {
    async fn create_room_with(&self, room: &str, creator: &str, private: bool, now: Millis) -> StoreResult<bool> {
        self.count();
        self.inner.create_room_with(room, creator, private, now).await
    }
    async fn room_rules(&self, room: &str) -> StoreResult<Option<RoomRules>> {
        self.count();
        self.inner.room_rules(room).await
    }
    async fn set_moderator(&self, room: &str, user: &str, on: bool) -> StoreResult<bool> {
        self.count();
        self.inner.set_moderator(room, user, on).await
    }
    async fn set_muted(&self, room: &str, user: &str, on: bool) -> StoreResult<bool> {
        self.count();
        self.inner.set_muted(room, user, on).await
    }
    async fn ban(&self, room: &str, user: &str, by: &str, now: Millis) -> StoreResult<bool> {
        self.count();
        self.inner.ban(room, user, by, now).await
    }
    async fn unban(&self, room: &str, user: &str) -> StoreResult<bool> {
        self.count();
        self.inner.unban(room, user).await
    }
    async fn is_banned(&self, room: &str, user: &str) -> StoreResult<bool> {
        self.count();
        self.inner.is_banned(room, user).await
    }
    async fn block(&self, user: &str, blocked: &str, now: Millis) -> StoreResult<bool> {
        self.count();
        self.inner.block(user, blocked, now).await
    }
    async fn unblock(&self, user: &str, blocked: &str) -> StoreResult<bool> {
        self.count();
        self.inner.unblock(user, blocked).await
    }
    async fn blocks_of(&self, user: &str) -> StoreResult<Vec<String>> {
        self.count();
        self.inner.blocks_of(user).await
    }
}

async fn server_on(store: Arc<CountingStore>) -> TestServer {
    TestServer::builder()
        .store(store)
        .chat(|c| {
            c.open_auth = true;
            c.room_events_max_members = 8;
            // No `room_size` round during the test: its count would be a store call of its own.
            c.room_size_interval = Duration::from_secs(3600);
        })
        .start()
        .await
}

/// Logs a user in and returns once the login's store work is over (a request answered after it).
async fn member(url: &str, name: &str) -> TestClient {
    let mut client = TestClient::login_open_quiet(url, name).await;
    let answer = client.request(json!({"type": "ping"})).await;
    assert_eq!(answer["type"], "pong", "{answer}");
    client
}

/// Waits (10 s at most) for a condition nothing signals: the queue's depth, a held call.
async fn wait_until<F, R>(mut condition: F)
where
    F: FnMut() -> R,
    R: std::future::Future<Output = bool>,
{
    tokio::time::timeout(Duration::from_secs(10), async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition reached in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_are_committed_in_fewer_transactions_than_joins() {
    const JOINERS: usize = 30;
    let store = CountingStore::new().await;
    let server = server_on(store.clone()).await;
    let url = server.ws_url();
    let mut clients = Vec::new();
    for index in 0..JOINERS {
        clients.push(member(&url, &format!("joiner-{index:02}")).await);
    }
    // The first join's batch is held in the store; the others queue up behind it meanwhile.
    store.gate.send_replace(false);
    clients[0].send(json!({"type": "join", "room": "stage", "ref": 1})).await;
    wait_until(|| async { !store.join_batches.lock().is_empty() }).await;
    for client in &mut clients[1..] {
        client.send(json!({"type": "join", "room": "stage", "ref": 1})).await;
    }
    let all_queued = (JOINERS - 1) as f64;
    wait_until(|| async { server.metric("switchboard_joins_waiting").await == all_queued }).await;
    store.gate.send_replace(true);
    let mut created = 0;
    for client in &mut clients {
        let answer = client.answer_to(1).await;
        assert_eq!(answer["type"], "room", "{answer}");
        created += usize::from(answer["created"] == true);
    }
    assert_eq!(created, 1, "one joiner created the room");
    assert_eq!(*store.join_batches.lock(), [1, JOINERS - 1]);
    assert_eq!(server.metric("switchboard_joins_total").await, JOINERS as f64);
    assert_eq!(server.metric("switchboard_join_batches_total").await, 2.0);
    assert_eq!(server.metric("switchboard_joins_waiting").await, 0.0);
    let members = clients[0].request(json!({"type": "members", "room": "stage"})).await;
    assert_eq!(members["total"], JOINERS, "{members}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_calls_of_one_join_do_not_grow_with_the_room() {
    let store = CountingStore::new().await;
    let server = server_on(store.clone()).await;
    let url = server.ws_url();
    let mut calls_per_join = Vec::new();
    let mut members = Vec::new();
    for size in [10, 100] {
        while members.len() < size {
            let mut client = member(&url, &format!("crowd-{:03}", members.len())).await;
            let answer = client.request(json!({"type": "join", "room": "crowd"})).await;
            assert_eq!(answer["type"], "room", "{answer}");
            members.push(client);
        }
        let mut next = member(&url, &format!("next-{size}")).await;
        let before = store.calls();
        let answer = next.request(json!({"type": "join", "room": "crowd"})).await;
        assert_eq!(answer["type"], "room", "{answer}");
        calls_per_join.push(store.calls() - before);
        members.push(next);
    }
    // One batch call: no count, no separate history, marker or room read, and the ban check
    // reads the node's cached room rules.
    assert_eq!(calls_per_join, [1, 1], "store calls of a join at 11 and 102 members");
}
