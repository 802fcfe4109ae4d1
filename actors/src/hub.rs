//! The live-state hub: the latest view of every device, a rising sequence number, a replay buffer, and the
//! broadcast that WebSocket sessions listen to (R-A3, issue 2 §8).
//!
//! Every change (a device view, an event) gets the next sequence number and is serialised to JSON once; the
//! frame goes into a bounded replay buffer and onto a bounded broadcast channel. A subscriber gets, in one
//! actor turn (so nothing can slip between them), either a snapshot or the buffered frames after the sequence
//! it resumes from, plus a receiver for everything after. A receiver that falls behind the broadcast sees
//! `Lagged`; the session then sends `resync` and a fresh snapshot, never a silent gap.
//!
//! The hub keeps nothing that is not in the store: on (re)start it rebuilds every view from the store, under a
//! new epoch, so resuming clients of the old epoch get a snapshot.
//!
//! Alarms (issue 9 §2): the snapshot carries the standing alarms, and every alarm journal record becomes one
//! `alarm` frame, in journal order, only after the commit that wrote it, whoever wrote it. A forwarder task
//! waits on the journal head the store moves after each commit with an alarm op
//! (`AlarmStore::watch_alarm_journal`), reads the records after the last it forwarded together with their
//! alarms' standing rows (`alarm_changes_after`, one read), and hands them to the hub, which numbers them like
//! any other frame. It starts from the journal number read with the standing alarms at start, so nothing is
//! shown twice or skipped, and a restart of the hub starts again from the store.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::clock::SharedClock;
use crate::event::EventBus;
use crate::event::EventView;
use crate::model::{Alarm, DeviceId, DeviceView, JournalRecord, RegionView};
use crate::store::{AlarmChanges, AlarmStore};

/// One serialised message of the live stream.
#[derive(Clone, Debug)]
pub struct LiveFrame {
    pub seq: u64,
    pub json: Arc<str>,
}

/// The wire format of the live stream.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Wire<'a> {
    Snapshot {
        epoch: &'a str,
        seq: u64,
        regions: &'a [RegionView],
        devices: Vec<&'a DeviceView>,
        /// The standing alarms (issue 9 §2), in id order.
        alarms: Vec<&'a Alarm>,
    },
    Delta {
        seq: u64,
        device: &'a DeviceView,
    },
    Event {
        seq: u64,
        event: &'a EventView,
    },
    /// One alarm journal record (`journal` is its number) and the alarm `id` as it stands after it; `alarm`
    /// is null when the alarm returned to normal (it is no longer standing).
    Alarm {
        seq: u64,
        id: &'a str,
        journal: u64,
        alarm: Option<&'a Alarm>,
        record: &'a JournalRecord,
    },
    /// The server is alive (issue 9 §4): sent by each live-stream session every `live.heartbeat`, carrying the
    /// sequence the client is at; it takes no number of its own.
    Heartbeat {
        seq: u64,
    },
    Resync {
        reason: &'a str,
    },
}

impl Wire<'_> {
    pub fn to_json(&self) -> Arc<str> {
        // Serialising these plain structs cannot fail; fall back to an error frame rather than panic.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"type\":\"error\",\"error\":\"{e}\"}}")).into()
    }
}

/// Where a reconnecting client left off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    pub epoch: String,
    pub seq: u64,
}

/// What a new subscriber gets.
pub struct Subscription {
    pub epoch: String,
    /// A snapshot, or the replayed frames after the resume point (possibly none).
    pub initial: Vec<LiveFrame>,
    pub resumed: bool,
    /// The sequence the client is at once it has the initial frames.
    pub upto: u64,
    pub rx: broadcast::Receiver<LiveFrame>,
}

pub enum HubMsg {
    /// The new full view of one device (sent by its actor after each change).
    Device(Box<DeviceView>),
    Event(EventView),
    /// Alarm journal records after their commit, from the hub's own forwarder.
    Alarms(AlarmChanges),
    Subscribe(Option<Resume>, RpcReplyPort<Subscription>),
    Snapshot(RpcReplyPort<LiveFrame>),
    Devices(RpcReplyPort<Vec<DeviceView>>),
}

pub struct LiveHub;

/// Builds the initial views from the store; called again on every restart.
pub type ViewLoader = Arc<dyn Fn() -> Vec<DeviceView> + Send + Sync>;

pub struct HubArgs {
    pub regions: Vec<RegionView>,
    pub load: ViewLoader,
    pub events: EventBus,
    /// Where the standing alarms and the alarm journal are read (issue 9 §2).
    pub alarms: Arc<dyn AlarmStore>,
    pub clock: SharedClock,
    /// Frames kept for `?since=` resumption.
    pub replay: usize,
    /// Frames a slow client may fall behind before it must resync.
    pub channel: usize,
}

pub struct HubState {
    epoch: String,
    seq: u64,
    regions: Vec<RegionView>,
    order: Vec<DeviceId>,
    views: HashMap<DeviceId, DeviceView>,
    /// The standing alarms by id, as of the last journal record forwarded.
    alarms: BTreeMap<String, Alarm>,
    replay: VecDeque<LiveFrame>,
    replay_cap: usize,
    tx: broadcast::Sender<LiveFrame>,
    forwarder: tokio::task::JoinHandle<()>,
    alarm_forwarder: tokio::task::JoinHandle<()>,
}

impl HubState {
    fn push(&mut self, json: Arc<str>) {
        let frame = LiveFrame { seq: self.seq, json };
        if self.replay.len() == self.replay_cap {
            self.replay.pop_front();
        }
        self.replay.push_back(frame.clone());
        // No subscriber is fine.
        let _ = self.tx.send(frame);
    }

    fn snapshot(&self) -> LiveFrame {
        let devices = self.order.iter().filter_map(|id| self.views.get(id)).collect();
        let alarms = self.alarms.values().collect();
        let json =
            Wire::Snapshot { epoch: &self.epoch, seq: self.seq, regions: &self.regions, devices, alarms }.to_json();
        LiveFrame { seq: self.seq, json }
    }

    /// The frames after `since`, if the buffer still holds all of them.
    fn replay_after(&self, since: u64) -> Option<Vec<LiveFrame>> {
        if since > self.seq {
            return None;
        }
        if since == self.seq {
            return Some(Vec::new());
        }
        let oldest = self.replay.front()?.seq;
        if since + 1 < oldest {
            return None;
        }
        Some(self.replay.iter().filter(|f| f.seq > since).cloned().collect())
    }
}

fn new_epoch(clock: &SharedClock) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STARTS: AtomicU64 = AtomicU64::new(0);
    format!("{:x}-{:x}-{}", clock.now().0, std::process::id(), STARTS.fetch_add(1, Ordering::Relaxed))
}

impl Actor for LiveHub {
    type Msg = HubMsg;
    type State = HubState;
    type Arguments = HubArgs;

    async fn pre_start(&self, myself: ActorRef<HubMsg>, args: HubArgs) -> Result<HubState, ActorProcessingErr> {
        let views = (args.load)();
        let order = views.iter().map(|v| v.id.clone()).collect();
        let views = views.into_iter().map(|v| (v.id.clone(), v)).collect();
        let (tx, _) = broadcast::channel(args.channel.max(1));
        // Committed events from the bus become live frames through this actor, so they share the sequence.
        let mut rx = args.events.subscribe();
        let me = myself.clone();
        let forwarder = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(record) => {
                        if let Some(live) = record.view() {
                            if me.cast(HubMsg::Event(live)).is_err() {
                                break;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(message = "Live hub fell behind the event bus.", missed = n);
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        // Subscribed before the start is read, so no commit falls between the two.
        let head = args.alarms.watch_alarm_journal();
        let start = args.alarms.alarm_start()?;
        let alarm_forwarder = tokio::spawn(forward_alarms(args.alarms.clone(), head, start.through, myself.clone()));
        Ok(HubState {
            epoch: new_epoch(&args.clock),
            seq: 0,
            regions: args.regions,
            order,
            views,
            alarms: start.standing.into_iter().map(|a| (a.key.id(), a)).collect(),
            replay: VecDeque::with_capacity(args.replay.min(4096)),
            replay_cap: args.replay.max(1),
            tx,
            forwarder,
            alarm_forwarder,
        })
    }

    async fn post_stop(&self, _myself: ActorRef<HubMsg>, state: &mut HubState) -> Result<(), ActorProcessingErr> {
        state.forwarder.abort();
        state.alarm_forwarder.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<HubMsg>,
        msg: HubMsg,
        state: &mut HubState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HubMsg::Device(view) => {
                let view = *view;
                if state.views.get(&view.id) == Some(&view) {
                    return Ok(());
                }
                if !state.views.contains_key(&view.id) {
                    state.order.push(view.id.clone());
                }
                state.seq += 1;
                let json = Wire::Delta { seq: state.seq, device: &view }.to_json();
                state.views.insert(view.id.clone(), view);
                state.push(json);
            }
            HubMsg::Event(event) => {
                state.seq += 1;
                let json = Wire::Event { seq: state.seq, event: &event }.to_json();
                state.push(json);
            }
            HubMsg::Alarms(changes) => {
                for (journal, record) in &changes.records {
                    let id = record.key.id();
                    match changes.alarms.get(&id) {
                        Some(alarm) => state.alarms.insert(id.clone(), alarm.clone()),
                        None => state.alarms.remove(&id),
                    };
                    state.seq += 1;
                    let alarm = changes.alarms.get(&id);
                    let json = Wire::Alarm { seq: state.seq, id: &id, journal: *journal, alarm, record }.to_json();
                    state.push(json);
                }
            }
            HubMsg::Subscribe(resume, reply) => {
                let rx = state.tx.subscribe();
                let replayed = resume.filter(|r| r.epoch == state.epoch).and_then(|r| state.replay_after(r.seq));
                let (epoch, upto) = (state.epoch.clone(), state.seq);
                let sub = match replayed {
                    Some(frames) => Subscription { epoch, initial: frames, resumed: true, upto, rx },
                    None => Subscription { epoch, initial: vec![state.snapshot()], resumed: false, upto, rx },
                };
                let _ = reply.send(sub);
            }
            HubMsg::Snapshot(reply) => {
                let _ = reply.send(state.snapshot());
            }
            HubMsg::Devices(reply) => {
                let _ = reply.send(state.order.iter().filter_map(|id| state.views.get(id)).cloned().collect());
            }
        }
        Ok(())
    }
}

/// Hands the hub every alarm journal record after `through`, in order, after its commit (see the module
/// documentation). A failed read is logged and tried again a second later; the records wait in the store.
async fn forward_alarms(
    store: Arc<dyn AlarmStore>,
    mut head: tokio::sync::watch::Receiver<u64>,
    mut through: u64,
    hub: ActorRef<HubMsg>,
) {
    loop {
        head.borrow_and_update();
        loop {
            match store.alarm_changes_after(through, crate::store::alarm_feed::MAX_CHANGES) {
                Ok(changes) => {
                    let Some(&(last, _)) = changes.records.last() else { break };
                    through = last;
                    if hub.cast(HubMsg::Alarms(changes)).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(message = "Live hub cannot read the alarm journal; trying again.", %error);
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
        if head.changed().await.is_err() {
            return;
        }
    }
}
