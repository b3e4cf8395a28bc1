//! The conformance suite every `Store` must pass, one file per area; `conformance_suite!` runs
//! each check as a `#[tokio::test]` of its own.

mod activity;
mod changes;
mod listing;
mod markers;
mod messages;
mod moderation;
mod rooms;

pub use activity::*;
pub use changes::*;
pub use listing::*;
pub use markers::*;
pub use messages::*;
pub use moderation::*;
pub use rooms::*;
