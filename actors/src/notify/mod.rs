//! Notifications (issue 10 §1–§2): the outbox's dispatcher, the channels it sends through, and the notifier
//! that decides who is told about what.
//!
//! # Layout
//! - [`channel`]: [`ChannelSender`], the one interface every channel (SMTP mail, a GSM modem, an SMS gateway,
//!   a group robot) offers the dispatcher, and its typed outcome.
//!
//! **Invariant:** nothing is sent that is not committed to the outbox first (`store::outbox`); a channel is
//! reached only through the dispatcher, never by the alarm engine, so a slow channel never blocks an alarm.

pub mod channel;

pub use channel::{ChannelSender, SendError, SendFuture, Sent};
