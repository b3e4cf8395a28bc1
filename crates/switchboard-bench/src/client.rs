//! Connecting to the server and logging in, shared by every scenario. Under `client/`:
//! `target.rs` the URLs, `stream.rs` a connection ([`WsStream`]: native frames whatever the
//! [`Protocol`]), `socketio.rs` the Socket.IO mappings, `connect.rs` opening connections and the
//! [`Connector`], `login.rs` logging in, `failure.rs` why an attempt failed, `nodes.rs` the nodes
//! under load and the message scenarios' options, and [`frame`] reading fields of raw frames.

use std::time::{Duration, Instant};

mod connect;
mod failure;
pub mod frame;
mod login;
mod nodes;
mod socketio;
mod stream;
mod target;

pub use connect::{open, Connector};
pub use failure::{Failure, Stage};
pub use login::{login, JwtSigner, Login, Session};
pub use nodes::{check_user_prefix, run_tag, LoadArgs, Nodes};
pub use stream::{close, close_all, text_frame, Protocol, WsStream};
pub use target::Target;

/// Monotonic nanoseconds since the bench started; every task reads the same clock, so a time
/// embedded in a message by one connection can be compared with the receiving connection's.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn start() -> Self {
        Clock { epoch: Instant::now() }
    }

    /// A clock counting from `unix_ms` (in the past), so that processes on one machine agree.
    pub fn since_unix_ms(unix_ms: u64) -> Self {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as u64)
            .unwrap_or_default();
        let ago = Duration::from_millis(now_ms.saturating_sub(unix_ms));
        Clock { epoch: Instant::now().checked_sub(ago).unwrap_or_else(Instant::now) }
    }

    pub fn nanos(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The instant at `nanos` on this clock.
    pub fn instant(&self, nanos: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.epoch + Duration::from_nanos(nanos))
    }

    pub fn secs(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }
}
