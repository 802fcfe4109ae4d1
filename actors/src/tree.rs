//! Builds the supervision tree from resolved configuration:
//!
//! ```text
//! root (Supervisor)
//! ├─ store-writer (StoreWriter)
//! ├─ live-hub (LiveHub)
//! ├─ limit-watcher (FeedConsumer<LimitWatcher>): water-quality limit crossings from the change feed
//! ├─ line:<id> (RtuBus), one per RS-485 serial line
//! └─ region:<id> (Supervisor), one per region
//!    ├─ <device id> (FieldDevice), one per concentrator and data logger
//!    ├─ <station id> (StationActor), one per HJ 212 water-quality station
//!    └─ <valve id> (ValveActor), one per remote valve
//! └─ hj212-gateway (Hj212Gateway), when stations are configured: the listener, routing by MN
//! ```
//!
//! Children start in that order. Each child's start closure refills the [`Slot`] through which the others
//! reach it, so a restarted store writer or hub is found again at once.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorRef, SpawnErr};
use tokio::task::JoinHandle;

use crate::api::Handle;
use crate::cjt188::{self, Cjt188Args, Cjt188Device, Cjt188Spec};
use crate::clock::SharedClock;
use crate::context::DeviceContext;
use crate::event::EventBus;
use crate::feed::{FeedConsumer, FeedConsumerArgs, LimitWatcher, SeriesLimits};
use crate::field::{initial_view, DeviceSpec, FieldDevice, FieldDeviceArgs, FieldMsg};
use crate::hub::{HubArgs, HubMsg, LiveHub};
use crate::metrics::Metrics;
use crate::model::{DeviceId, RegionId, RegionView};
use crate::mqtt::{
    self as mqtt_group, MqttGateway, MqttGatewayArgs, MqttGroup, MqttGroupArgs, MqttGroupMsg, MqttGroupSpec,
};
use crate::rtu_bus::{RtuBus, RtuBusArgs, RtuBusMsg};
use crate::station::{self, GatewayArgs, Hj212Gateway, StationActor, StationArgs, StationMsg, StationSpec};
use crate::store::{Store, StoreHandle, StoreWriter, StoreWriterArgs, StoreWriterMsg};
use crate::supervisor::{ChildSpec, RestartPolicy, Slot, Supervisor, SupervisorArgs, SupervisorMsg};
use crate::valve::{self, ValveActor, ValveArgs, ValveMsg, ValveSpec};

/// A region and its devices.
#[derive(Clone, Debug)]
pub struct RegionSpec {
    pub id: RegionId,
    pub name: String,
    pub devices: Vec<Arc<DeviceSpec>>,
    pub valves: Vec<Arc<ValveSpec>>,
    /// Water-quality stations that push HJ 212 to the listener.
    pub stations: Vec<Arc<StationSpec>>,
    /// CJ/T 188 gateways and their meters.
    pub cjt188: Vec<Arc<Cjt188Spec>>,
    /// Groups of meters that publish over MQTT.
    pub mqtt: Vec<Arc<MqttGroupSpec>>,
}

/// Everything the tree needs, resolved from configuration.
#[derive(Clone, Debug)]
pub struct TreeSpec {
    pub regions: Vec<RegionSpec>,
    pub policy: RestartPolicy,
    pub max_batch_ops: usize,
    pub live_replay: usize,
    pub live_channel: usize,
    /// Where HJ 212 stations connect; required when any station is configured.
    pub hj212_listen: Option<std::net::SocketAddr>,
    /// The MQTT broker and topic mappings; required when any MQTT group is configured.
    pub mqtt: Option<drivers::mqtt::MqttSettings>,
    /// RS-485 serial lines, by id.
    pub lines: Vec<(String, drivers::rtu::LineSettings)>,
    /// `[server] timezone`, `defaults.spread`, `defaults.future_tolerance`, `defaults.max_age`.
    pub time: crate::schedule::TimeRules,
}

/// The running tree.
pub struct Tree {
    pub root: ActorRef<SupervisorMsg>,
    pub join: JoinHandle<()>,
    pub handle: Handle,
    /// The HJ 212 listener's bound address, once it listens.
    pub hj212_addr: Option<std::net::SocketAddr>,
}

/// A child whose actor is started with arguments rebuilt by `make` on every (re)start.
fn child<A, F>(name: impl Into<String>, actor: A, make: F) -> ChildSpec
where
    A: Actor + Copy,
    F: Fn() -> A::Arguments + Send + Sync + 'static,
{
    ChildSpec::new(name, move |sup| {
        let args = make();
        async move { Actor::spawn_linked(None, actor, args, sup).await.map(|(a, _)| a.get_cell()) }
    })
}

/// Starts the whole tree. Returns once the root and (in order) all its children have started.
pub async fn start(spec: TreeSpec, store: Store, clock: SharedClock, metrics: Arc<Metrics>) -> Result<Tree, SpawnErr> {
    let writer_slot: Slot<StoreWriterMsg> = Slot::default();
    let hub_slot: Slot<HubMsg> = Slot::default();
    let writer = StoreHandle::new(writer_slot.clone(), metrics.clone());
    // Events are committed through the writer (which delivers them after the commit) before anyone sees them.
    let events = EventBus::durable(1024, writer.clone(), clock.clone(), metrics.clone());
    let regions: Vec<RegionView> =
        spec.regions.iter().map(|r| RegionView { id: r.id.clone(), name: r.name.clone() }).collect();
    let all_devices: Vec<Arc<DeviceSpec>> = spec.regions.iter().flat_map(|r| r.devices.iter().cloned()).collect();
    let all_valves: Vec<Arc<ValveSpec>> = spec.regions.iter().flat_map(|r| r.valves.iter().cloned()).collect();
    let all_groups: Vec<Arc<MqttGroupSpec>> = spec.regions.iter().flat_map(|r| r.mqtt.iter().cloned()).collect();
    let group_slots: Vec<(Arc<MqttGroupSpec>, Slot<MqttGroupMsg>)> =
        all_groups.iter().map(|g| (g.clone(), Slot::default())).collect();
    let all_gateways: Vec<Arc<Cjt188Spec>> = spec.regions.iter().flat_map(|r| r.cjt188.iter().cloned()).collect();
    let all_stations: Vec<Arc<StationSpec>> = spec.regions.iter().flat_map(|r| r.stations.iter().cloned()).collect();
    let station_slots: Vec<(Arc<StationSpec>, Slot<StationMsg>)> =
        all_stations.iter().map(|s| (s.clone(), Slot::default())).collect();

    let mut children = Vec::new();
    {
        let (store, metrics, slot, max) = (store.clone(), metrics.clone(), writer_slot.clone(), spec.max_batch_ops);
        let events = events.clone();
        children.push(ChildSpec::new("store-writer", move |sup| {
            let args = StoreWriterArgs {
                store: store.clone(),
                metrics: metrics.clone(),
                max_batch_ops: max,
                events: Some(events.clone()),
            };
            let slot = slot.clone();
            async move {
                let (actor, _) = Actor::spawn_linked(None, StoreWriter, args, sup).await?;
                slot.set(actor.clone());
                Ok(actor.get_cell())
            }
        }));
    }
    {
        let (store, devices, events, clock, slot) =
            (store.clone(), all_devices.clone(), events.clone(), clock.clone(), hub_slot.clone());
        let (regions, replay, channel) = (regions.clone(), spec.live_replay, spec.live_channel);
        let valves = all_valves.clone();
        let stations = all_stations.clone();
        let gateways = all_gateways.clone();
        let groups = all_groups.clone();
        children.push(ChildSpec::new("live-hub", move |sup| {
            let (store, devices, valves, stations, gateways, groups) =
                (store.clone(), devices.clone(), valves.clone(), stations.clone(), gateways.clone(), groups.clone());
            let args = HubArgs {
                regions: regions.clone(),
                load: Arc::new(move || {
                    devices
                        .iter()
                        .map(|d| initial_view(d, &store))
                        .chain(gateways.iter().map(|g| cjt188::initial_view(g, &store)))
                        .chain(groups.iter().map(|g| mqtt_group::initial_view(g, &store)))
                        .chain(stations.iter().map(|s| station::initial_view(s, &store)))
                        .chain(valves.iter().map(|v| valve::initial_view(v, &store)))
                        .collect()
                }),
                events: events.clone(),
                clock: clock.clone(),
                replay,
                channel,
            };
            let slot = slot.clone();
            async move {
                let (actor, _) = Actor::spawn_linked(None, LiveHub, args, sup).await?;
                slot.set(actor.clone());
                Ok(actor.get_cell())
            }
        }));
    }
    {
        // Water-quality limit crossings are derived from the change feed, exactly once (see `feed`).
        let mut limits = HashMap::new();
        for d in &all_devices {
            if let crate::field::DeviceKindSpec::Logger(l) = &d.kind {
                for p in &l.parameters {
                    limits.insert(
                        (d.id.clone(), p.name.clone()),
                        SeriesLimits { region: d.region.clone(), low: p.low, high: p.high },
                    );
                }
            }
        }
        for st in &all_stations {
            for p in &st.parameters {
                limits.insert(
                    (st.id.clone(), p.name.clone()),
                    SeriesLimits { region: st.region.clone(), low: p.low, high: p.high },
                );
            }
        }
        let (store, writer, metrics) = (store.clone(), writer.clone(), metrics.clone());
        children.push(child("limit-watcher", FeedConsumer::<LimitWatcher>::default(), move || FeedConsumerArgs {
            handler: LimitWatcher { limits: limits.clone() },
            store: store.clone(),
            writer: writer.clone(),
            metrics: metrics.clone(),
            batch: crate::feed::DEFAULT_BATCH,
        }));
    }
    // One bus actor per Modbus serial line, started before the regions whose devices use them. A line owned by a
    // CJ/T 188 gateway is driven by that gateway's actor alone.
    let mut buses = HashMap::new();
    for (id, settings) in &spec.lines {
        if all_gateways.iter().any(|g| g.line.as_deref() == Some(id.as_str())) {
            continue;
        }
        let slot: Slot<RtuBusMsg> = Slot::default();
        buses.insert(id.clone(), slot.clone());
        let (id, settings, metrics) = (id.clone(), settings.clone(), metrics.clone());
        children.push(child(format!("line:{id}"), RtuBus, move || RtuBusArgs {
            id: id.clone(),
            settings: settings.clone(),
            slot: slot.clone(),
            metrics: metrics.clone(),
        }));
    }
    let gateway_slots: HashMap<String, Slot<crate::cjt188::Cjt188Msg>> =
        all_gateways.iter().map(|g| (g.id.to_string(), Slot::default())).collect();
    let ctx = DeviceContext {
        gateways: Arc::new(gateway_slots.clone()),
        buses: Arc::new(buses),
        store: store.clone(),
        writer: writer.clone(),
        hub: hub_slot.clone(),
        events: events.clone(),
        clock: clock.clone(),
        time: Arc::new(spec.time.clone()),
        metrics: metrics.clone(),
    };
    let mut device_slots: HashMap<DeviceId, Slot<FieldMsg>> = HashMap::new();
    let mut valve_slots: HashMap<DeviceId, Slot<ValveMsg>> = HashMap::new();
    let mut region_slots: Vec<(RegionId, Slot<SupervisorMsg>)> = Vec::new();
    for region in &spec.regions {
        let mut device_children = Vec::new();
        for device in &region.devices {
            let slot: Slot<FieldMsg> = Slot::default();
            device_slots.insert(device.id.clone(), slot.clone());
            let (spec, ctx) = (device.clone(), ctx.clone());
            device_children.push(child(device.id.to_string(), FieldDevice, move || FieldDeviceArgs {
                spec: spec.clone(),
                ctx: ctx.clone(),
                slot: slot.clone(),
            }));
        }
        for g in &region.cjt188 {
            let (spec, ctx) = (g.clone(), ctx.clone());
            let slot = gateway_slots.get(g.id.as_str()).cloned().unwrap_or_default();
            device_children.push(child(g.id.to_string(), Cjt188Device, move || Cjt188Args {
                spec: spec.clone(),
                ctx: ctx.clone(),
                slot: slot.clone(),
            }));
        }
        for g in &region.mqtt {
            let slot = group_slots.iter().find(|(s, _)| s.id == g.id).map(|(_, slot)| slot.clone()).unwrap_or_default();
            let (spec, ctx) = (g.clone(), ctx.clone());
            device_children.push(child(g.id.to_string(), MqttGroup, move || MqttGroupArgs {
                spec: spec.clone(),
                ctx: ctx.clone(),
                slot: slot.clone(),
            }));
        }
        for st in &region.stations {
            let slot =
                station_slots.iter().find(|(s, _)| s.id == st.id).map(|(_, slot)| slot.clone()).unwrap_or_default();
            let (spec, ctx) = (st.clone(), ctx.clone());
            device_children.push(child(st.id.to_string(), StationActor, move || StationArgs {
                spec: spec.clone(),
                ctx: ctx.clone(),
                slot: slot.clone(),
            }));
        }
        for v in &region.valves {
            let slot: Slot<ValveMsg> = Slot::default();
            valve_slots.insert(v.id.clone(), slot.clone());
            let (spec, ctx) = (v.clone(), ctx.clone());
            device_children.push(child(v.id.to_string(), ValveActor, move || ValveArgs {
                spec: spec.clone(),
                ctx: ctx.clone(),
                slot: slot.clone(),
            }));
        }
        let region_slot: Slot<SupervisorMsg> = Slot::default();
        region_slots.push((region.id.clone(), region_slot.clone()));
        let (name, policy, events, metrics) =
            (format!("region:{}", region.id), spec.policy, events.clone(), metrics.clone());
        children.push(ChildSpec::new(name.clone(), move |sup| {
            let args = SupervisorArgs {
                name: name.clone(),
                children: device_children.clone(),
                policy,
                events: events.clone(),
                metrics: metrics.clone(),
            };
            let slot = region_slot.clone();
            async move {
                let (actor, _) = Actor::spawn_linked(None, Supervisor, args, sup).await?;
                slot.set(actor.clone());
                Ok(actor.get_cell())
            }
        }));
    }
    let hj212_bound: Arc<std::sync::Mutex<Option<std::net::SocketAddr>>> = Arc::default();
    if !all_stations.is_empty() {
        let listen = spec.hj212_listen.unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 9212)));
        let (stations, bound, metrics) = (station_slots.clone(), hj212_bound.clone(), metrics.clone());
        children.push(ChildSpec::new("hj212-gateway", move |sup| {
            let args =
                GatewayArgs { listen, stations: stations.clone(), bound: bound.clone(), metrics: metrics.clone() };
            async move { Actor::spawn_linked(None, Hj212Gateway, args, sup).await.map(|(a, _)| a.get_cell()) }
        }));
    }
    if let (false, Some(settings)) = (all_groups.is_empty(), spec.mqtt.clone()) {
        let (groups, metrics) = (group_slots.clone(), metrics.clone());
        children.push(child("mqtt-gateway", MqttGateway, move || MqttGatewayArgs {
            settings: settings.clone(),
            groups: groups.clone(),
            metrics: metrics.clone(),
        }));
    }
    let root_args = SupervisorArgs {
        name: "root".into(),
        children,
        policy: spec.policy,
        events: events.clone(),
        metrics: metrics.clone(),
    };
    let (root, join) = Actor::spawn(None, Supervisor, root_args).await?;
    // `spawn` returns after the root's `pre_start`; its children start in `post_start`, before it handles any
    // message. So a reply to this call means the store writer, the hub and every region are up.
    ractor::call!(root, SupervisorMsg::Children)
        .map_err(|e| SpawnErr::StartupFailed(format!("the root supervisor did not start: {e}").into()))?;
    let handle = Handle::new(crate::api::HandleParts {
        store,
        writer,
        hub: hub_slot,
        devices: all_devices,
        device_slots,
        valves: all_valves,
        stations: all_stations,
        gateways: all_gateways,
        groups: all_groups,
        valve_slots,
        regions,
        region_supervisors: region_slots,
        root: root.clone(),
        events,
        clock,
        metrics,
    });
    let hj212_addr = *hj212_bound.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Tree { root, join, handle, hj212_addr })
}
