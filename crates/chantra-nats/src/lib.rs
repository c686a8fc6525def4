//! The NATS notice bus (`FANOUT_URL=nats://…`): cross-process fan-out for
//! deployments that outgrow PostgreSQL `LISTEN/NOTIFY`.
//!
//! - One subject per channel, `<prefix>.ch.<channel id>` (prefix `chantra`
//!   by default): a process subscribes when its first reader of a channel
//!   joins and unsubscribes when the last leaves ([`receive`]), so it hears
//!   nothing about channels nobody reads here.
//! - Notices (message, deletion, revocation; ids only) are published after
//!   the commit, never for a rolled-back write, from a bounded queue that
//!   never blocks the writer ([`NatsBus`]).
//! - NATS is at-most-once and the database is the truth: a message notice
//!   only says "this channel is behind" and the channel is caught up by
//!   cursor (service/listener.rs), so notices arriving out of order or not
//!   at all lose nothing. After a (re)connect every followed channel is
//!   caught up; while NATS is down, every [`NatsSettings::poll_interval`]
//!   (readers also re-check grants and deletions), and /readyz says
//!   `degraded`. A publisher that had to drop notices announces
//!   `<prefix>.resync` once it is connected again, and every process
//!   catches up.

mod bus;
mod receive;
mod settings;

pub use bus::NatsBus;
pub use settings::{NatsAuth, NatsSettings, NatsTls};
