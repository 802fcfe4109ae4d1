//! The one interface every notification channel offers the dispatcher (issue 10 §1).
//!
//! A channel is configured by name (`smtp`, `modem-1`, `aliyun`, `duty-robot`) and sends one committed
//! [`Notification`] at a time. Its answer says whether the message left (`Sent`, with what the far side called
//! it) or why not, split the way the dispatcher acts on it: a [`SendError::Temporary`] failure is retried with
//! backoff (and may fall back to another channel of the same kind), a [`SendError::Permanent`] one goes to the
//! dead letter at once (a malformed address, a refused template).
//!
//! What it deliberately does not do: retry, rate-limit or dedupe (the dispatcher does, from the outbox).

use std::future::Future;
use std::pin::Pin;

use crate::model::notify::{Channel, Notification};

/// What a channel's send returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<Sent, SendError>> + Send + 'a>>;

/// A notification handed over and accepted by the far side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The channel's configured name.
    pub via: String,
    /// What the far side called it, where it said (an SMTP queue id, a modem's message reference, a gateway's
    /// request id).
    pub reference: Option<String>,
}

/// Why a channel did not send.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again later (a timeout, a modem error, a gateway's 5xx or throttling).
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// Trying again will not help (an address the far side refuses, a template it does not know).
    #[error("permanent failure: {0}")]
    Permanent(String),
}

/// A channel the dispatcher sends through.
pub trait ChannelSender: Send + Sync + 'static {
    /// The channel's configured name.
    fn name(&self) -> &str;
    /// The kind of notification it carries.
    fn channel(&self) -> Channel;
    /// Sends one notification. Must finish within the channel's own time limit (the dispatcher also bounds it).
    fn send<'a>(&'a self, notification: &'a Notification) -> SendFuture<'a>;
}
