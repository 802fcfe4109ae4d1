//! Shelf expiry (issue 9 §2): a shelved alarm comes back by itself when its shelf ends, re-alarming if its
//! condition still holds.
//!
//! [`ShelfWatch`] looks at the standing alarms on a timer (at the earliest shelf's end, and at least every
//! `every`, so a shelf made meanwhile is noticed), and when one is due submits `AlarmOp::ExpireShelves` with
//! the clock's time; the store runs the expiry through the lifecycle on each due row. Ticks are re-armed with
//! `send_after` after each tick, so the mailbox never fills from the timer. A failed read or submit is logged
//! and tried again at the next tick.
//!
//! What it deliberately does not do: decide what an expiry leads to (the model does), or raise anything.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::clock::SharedClock;
use crate::model::{AlarmState, Timestamp};
use crate::store::{AlarmOp, AlarmStore, Op, StoreError, StoreHandle};

/// The longest wait between two looks, by default.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(5);

/// The shortest wait, so a clock behind the timer never spins.
const MIN_WAIT: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Default)]
pub struct ShelfWatch;

pub struct ShelfWatchArgs {
    pub alarms: Arc<dyn AlarmStore>,
    pub writer: StoreHandle,
    pub clock: SharedClock,
    pub every: Duration,
}

pub enum ShelfWatchMsg {
    Tick,
}

impl ShelfWatchArgs {
    /// Expires the shelves due now; returns the wait until the next look.
    async fn look(&self) -> Result<Duration, StoreError> {
        let now = self.clock.now();
        let shelves: Vec<Timestamp> = self
            .alarms
            .standing_alarms()?
            .into_iter()
            .filter(|a| a.state == AlarmState::Shelved)
            .filter_map(|a| a.shelved_until)
            .collect();
        if shelves.iter().any(|u| *u <= now) {
            self.writer.submit(vec![Op::Alarm(AlarmOp::ExpireShelves { at: now })]).await?;
        }
        let next = shelves.into_iter().filter(|u| *u > now).min();
        let wait = next.map_or(self.every, |u| Duration::from_millis(u.0.saturating_sub(now.0).unsigned_abs()));
        Ok(wait.clamp(MIN_WAIT, self.every.max(MIN_WAIT)))
    }
}

impl Actor for ShelfWatch {
    type Msg = ShelfWatchMsg;
    type State = ShelfWatchArgs;
    type Arguments = ShelfWatchArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ShelfWatchMsg>,
        args: ShelfWatchArgs,
    ) -> Result<ShelfWatchArgs, ActorProcessingErr> {
        myself.cast(ShelfWatchMsg::Tick)?;
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<ShelfWatchMsg>,
        msg: ShelfWatchMsg,
        state: &mut ShelfWatchArgs,
    ) -> Result<(), ActorProcessingErr> {
        let ShelfWatchMsg::Tick = msg;
        let wait = match state.look().await {
            Ok(wait) => wait,
            Err(error) => {
                tracing::warn!(message = "Shelf expiry failed; trying again.", %error);
                state.every
            }
        };
        myself.send_after(wait, || ShelfWatchMsg::Tick);
        Ok(())
    }
}
