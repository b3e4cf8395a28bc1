//! Switchboard's chat core, independent of any transport.
//!
//! The path of a message, top to bottom:
//! - [`session`]: a logged-in connection; turns a checked request into work, as its user only.
//! - [`pipeline`]: batches messages into the store, then fans each one out once it is durable.
//! - [`hub`]: the connections on this node, by user and by room, and what they receive.
//! - [`cluster`]: what crosses the bus to other nodes, and what comes back; [`subscriptions`] keeps the
//!   user and room topics in step with whom the node holds, [`fence`] confirms a farewell.
//! - [`outbound`]: each connection's bounded queue of encoded frames.
//!
//! - `delivery`: where a durable message or an event goes, here and on other nodes; `link`: this
//!   node's side of the bus (publications, what it hears, heartbeats, dead nodes); `announce`:
//!   new rooms told to every online user, at a bounded rate.
//!
//! For an application's backend: [`backend`] (the server API's publish, disconnect, presence,
//! members, users and tokens, history, through the same paths as sessions).
//!
//! Around it: [`node::ChatNode`] holds the parts together and `login` lets connections in; [`auth`] (passwords, session tokens,
//! JWT, login throttling); [`presence`] (who is online, where, since when); [`filter`] (the
//! dirty-word filter); [`popular`] (the most used words over a sliding window); [`ratelimit`];
//! [`metrics`]; [`config`]; [`error`]; `room_size` (big rooms' size events instead of one per join); `watchers` (who hears whose presence); `access` (room rules and blocks, cached for
//! the send path) and `moderation` (what owners and moderators do, and blocking). `fuzzing` (feature `fuzzing`): the login fuzz target's check.
#![forbid(unsafe_code)]

mod access;
mod announce;
pub mod auth;
pub mod backend;
mod changes;
pub mod cluster;
pub mod config;
mod delivery;
pub mod error;
pub mod fence;
pub mod filter;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod gaps;
pub mod hooks;
mod hub;
mod joins;
mod link;
mod login;
pub mod metrics;
mod moderation;
pub mod node;
pub mod ordering;
pub mod outbound;
pub mod pipeline;
pub mod popular;
pub mod presence;
pub mod ratelimit;
mod room_size;
pub mod session;
pub mod subscriptions;
mod watchers;

pub use config::ChatConfig;
pub use error::ChatError;
pub use node::ChatNode;
pub use outbound::{ConnId, Connection};
pub use session::{Flow, Session};

/// Milliseconds since the Unix epoch, the timestamps of the protocol.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}
