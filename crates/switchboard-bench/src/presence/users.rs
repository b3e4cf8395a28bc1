//! The users of `presence`: watchers that stay for the whole run, and churn users that come
//! online for a while and go.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::watch;

use super::shared::{Seen, Shared};
use crate::client::{self, text_frame, Target, WsStream};
use crate::storm::{connect_with, log_in};

/// A watcher: logs in with presence on and counts the events until told to stop.
pub(super) async fn watcher(
    shared: Arc<Shared>,
    index: u32,
    (target, source): (Target, Option<IpAddr>),
    mut stop: watch::Receiver<bool>,
) -> (Seen, Option<WsStream>) {
    let mut seen = Seen::default();
    let logins = &shared.logins;
    let login = match logins.jwt_login(&logins.user(index), true) {
        Ok(request) => {
            let login = logins.with(request, &logins.connector.handshake);
            connect_with(&target, source, login, |text| seen.on_frame(&shared, text)).await
        }
        Err(failure) => Err(failure),
    };
    let mut ws = match login {
        Ok((ws, _token)) => ws,
        Err(failure) => {
            shared.logins.connector.failed(&failure);
            return (seen, None);
        }
    };
    shared.logins.connector.ready();
    loop {
        tokio::select! {
            frame = ws.next() => match text_frame(frame) {
                Ok(Some(text)) => seen.on_frame(&shared, &text),
                Ok(None) => {}
                Err(reason) => {
                    shared.drops.add(reason);
                    return (seen, None);
                }
            },
            _ = stop.changed() => break,
        }
    }
    (seen, Some(ws))
}

/// One churn cycle: a pool user connects, logs in with presence on, stays online, closes.
pub(super) async fn churn(shared: Arc<Shared>, cycle: u32, (target, source): (Target, Option<IpAddr>)) {
    let clock = shared.clock;
    let slot = cycle % shared.pool;
    let request = match shared.logins.jwt_login(&shared.logins.user(shared.watchers + slot), true) {
        Ok(request) => request,
        Err(failure) => return shared.login_failures.add(failure.to_string()),
    };
    let mut ws = match client::open(&target, source).await {
        Ok(ws) => ws,
        Err(failure) => return shared.login_failures.add(failure.to_string()),
    };
    shared.slot_cycle[slot as usize].store(cycle, Ordering::Release);
    let sent = clock.nanos();
    shared.cycles[cycle as usize].login_sent.store(sent, Ordering::Release);
    let login = tokio::time::timeout(
        shared.logins.timeout,
        log_in(&mut ws, request, |text| {
            shared.event(text);
        }),
    )
    .await;
    match login {
        Ok(Ok(_token)) => {}
        Ok(Err(failure)) => return shared.login_failures.add(failure.to_string()),
        Err(_) => return shared.login_failures.add(client::Failure::timeout(shared.logins.timeout).to_string()),
    }
    let now = clock.nanos();
    if shared.measures(sent) {
        shared.login_latency.record_nanos(sent, now);
    }
    shared.logged_in.fetch_add(1, Ordering::Relaxed);
    let online = tokio::time::sleep(shared.online);
    tokio::pin!(online);
    let lost = loop {
        tokio::select! {
            frame = ws.next() => match text_frame(frame) {
                Ok(Some(text)) => {
                    shared.event(&text);
                }
                Ok(None) => {}
                Err(reason) => break Some(reason),
            },
            () = &mut online => break None,
        }
    };
    shared.cycles[cycle as usize].closed.store(clock.nanos(), Ordering::Release);
    shared.closes.fetch_add(1, Ordering::Relaxed);
    match lost {
        Some(reason) => shared.drops.add(reason),
        None => client::close(ws).await,
    }
}
