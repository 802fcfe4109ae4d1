//! Builds the supervision tree from resolved configuration:
//!
//! ```text
//! root (Supervisor)
//! ├─ store-writer (StoreWriter)
//! ├─ live-hub (LiveHub)
//! ├─ limit-watcher (FeedConsumer<LimitWatcher>): water-quality limit crossings from the change feed
//! ├─ alarm-engine (FeedConsumer<AlarmEngine>): alarms raised and cleared from the change feed (issue 9)
//! ├─ alarm-shelves (ShelfWatch): shelved alarms come back when their shelf ends
//! ├─ usage-watch (UsageWatch): abnormal usage, night flow and zone leakage at each day's end (issue 9 §1)
//! ├─ line:<id> (RtuBus), one per RS-485 serial line (except lines a CJ/T 188 gateway owns)
//! ├─ region:<id> (Supervisor), one per region
//! │  ├─ <device id> (FieldDevice), one per concentrator and data logger
//! │  ├─ <gateway id> (Cjt188Device), one per CJ/T 188 gateway or CJ/T 188 serial line
//! │  ├─ <group id> (MqttGroup), one per group of meters that publish over MQTT
//! │  ├─ <station id> (StationActor), one per HJ 212 water-quality station
//! │  └─ <valve id> (ValveActor), one per remote valve
//! ├─ hj212-gateway (Hj212Gateway), when stations are configured: the listener, routing by MN
//! └─ mqtt-gateway (MqttGateway), when MQTT groups are configured: the broker connection, routing by meter
//! ```
//!
//! Children start in that order, so the store writer and the hub exist before any device uses them, and a
//! line's bus before the devices on it. Each child's start closure refills the [`Slot`] through which the
//! others reach it, so a restarted store writer, hub or device is found again at once.
//!
//! [`start`] reads as that list: one small function per step (`store_writer`, `live_hub`, `limit_watcher`,
//! `alarm_engine`, `alarm_shelves`, `usage_watch`, `lines`, `region`, `hj212_gateway`, `mqtt_gateway`), then `start_root`, then the API handle. This module
//! decides only who starts where and how actors find each other; what each actor does is in its own module.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorRef, SpawnErr};
use tokio::task::JoinHandle;

use crate::alarms::{AlarmEngine, QualitySeries, ShelfWatch, ShelfWatchArgs};
use crate::api::Handle;
use crate::cjt188::{self, Cjt188Args, Cjt188Device, Cjt188Msg, Cjt188Spec};
use crate::clock::SharedClock;
use crate::context::DeviceContext;
use crate::event::EventBus;
use crate::feed::{FeedConsumer, FeedConsumerArgs, LimitWatcher, SeriesLimits};
use crate::field::{initial_view, DeviceKindSpec, DeviceSpec, FieldDevice, FieldDeviceArgs, FieldMsg};
use crate::hub::{HubArgs, HubMsg, LiveHub, ViewLoader};
use crate::metrics::Metrics;
use crate::model::{AnalogLimits, DeviceId, RegionId, RegionView};
use crate::mqtt::{
    self as mqtt_group, MqttGateway, MqttGatewayArgs, MqttGroup, MqttGroupArgs, MqttGroupMsg, MqttGroupSpec,
};
use crate::rtu_bus::{RtuBus, RtuBusArgs, RtuBusMsg};
use crate::station::{self, GatewayArgs, Hj212Gateway, StationActor, StationArgs, StationMsg, StationSpec};
use crate::store::{FieldStore, StoreHandle, StoreWriter, StoreWriterArgs, StoreWriterMsg, Stores};
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
    /// The HJ 212 listener's limits against strangers (issue 8 §3).
    pub hj212_limits: crate::station::Hj212Limits,
    /// The MQTT broker and topic mappings; required when any MQTT group is configured.
    pub mqtt: Option<drivers::mqtt::MqttSettings>,
    /// RS-485 serial lines, by id.
    pub lines: Vec<(String, drivers::rtu::LineSettings)>,
    /// `[server] timezone`, `defaults.spread`, `defaults.future_tolerance`, `defaults.max_age`.
    pub time: crate::schedule::TimeRules,
    /// `[alarms]` and the site type of each water-quality device (issue 9 §1).
    pub alarms: crate::alarms::settings::AlarmSetup,
    /// `[usage]` and `[[zone]]`: the usage watch's rules and the zones (issue 9 §1).
    pub usage: crate::alarms::usage::UsageSettings,
    /// `[alarm_positions]`: the operator positions the alarm KPIs count per (issue 9 §3).
    pub alarm_positions: crate::alarms::kpi::AlarmPositions,
    /// `[[person]]`: who the notifier may tell (issue 10 §2).
    pub people: Vec<crate::model::notify::Person>,
}

/// The running tree.
pub struct Tree {
    pub root: ActorRef<SupervisorMsg>,
    pub join: JoinHandle<()>,
    pub handle: Handle,
    /// The HJ 212 listener's bound address, once it listens.
    pub hj212_addr: Option<std::net::SocketAddr>,
}

/// Every spec of every region, flattened once (the hub, the feed consumer, the gateways and the API need
/// them across regions).
struct AllSpecs {
    regions: Vec<RegionView>,
    devices: Vec<Arc<DeviceSpec>>,
    valves: Vec<Arc<ValveSpec>>,
    groups: Vec<Arc<MqttGroupSpec>>,
    gateways: Vec<Arc<Cjt188Spec>>,
    stations: Vec<Arc<StationSpec>>,
}

impl AllSpecs {
    fn of(spec: &TreeSpec) -> AllSpecs {
        fn all<T: Clone>(spec: &TreeSpec, of: impl Fn(&RegionSpec) -> &Vec<T>) -> Vec<T> {
            spec.regions.iter().flat_map(|r| of(r).iter().cloned()).collect()
        }
        AllSpecs {
            regions: spec.regions.iter().map(|r| RegionView { id: r.id.clone(), name: r.name.clone() }).collect(),
            devices: all(spec, |r| &r.devices),
            valves: all(spec, |r| &r.valves),
            groups: all(spec, |r| &r.mqtt),
            gateways: all(spec, |r| &r.cjt188),
            stations: all(spec, |r| &r.stations),
        }
    }
}

/// The slots through which actors (and the API) reach each other, filled as their children start.
#[derive(Default)]
struct Slots {
    writer: Slot<StoreWriterMsg>,
    hub: Slot<HubMsg>,
    devices: HashMap<DeviceId, Slot<FieldMsg>>,
    valves: HashMap<DeviceId, Slot<ValveMsg>>,
    /// CJ/T 188 gateways by id (valve actors on their meters reach them through [`DeviceContext`]).
    gateways: HashMap<String, Slot<Cjt188Msg>>,
    groups: Vec<(Arc<MqttGroupSpec>, Slot<MqttGroupMsg>)>,
    stations: Vec<(Arc<StationSpec>, Slot<StationMsg>)>,
    regions: Vec<(RegionId, Slot<SupervisorMsg>)>,
}

impl Slots {
    fn new(all: &AllSpecs) -> Slots {
        Slots {
            gateways: all.gateways.iter().map(|g| (g.id.to_string(), Slot::default())).collect(),
            groups: all.groups.iter().map(|g| (g.clone(), Slot::default())).collect(),
            stations: all.stations.iter().map(|s| (s.clone(), Slot::default())).collect(),
            ..Slots::default()
        }
    }
}

/// Starts the whole tree. Returns once the root and (in order) all its children have started.
pub async fn start(
    spec: TreeSpec,
    stores: Stores,
    clock: SharedClock,
    metrics: Arc<Metrics>,
) -> Result<Tree, SpawnErr> {
    let all = AllSpecs::of(&spec);
    let mut slots = Slots::new(&all);
    let writer = StoreHandle::new(slots.writer.clone(), metrics.clone());
    // Events are committed through the writer (which delivers them after the commit) before anyone sees them.
    let events = EventBus::durable(1024, writer.clone(), clock.clone(), metrics.clone());
    let alarm_settings = crate::alarms::settings::in_force(&stores, &spec.alarms.settings);

    let mut children = vec![
        store_writer(&stores, &slots, &events, &metrics, spec.max_batch_ops),
        live_hub(&spec, &all, &stores, &slots, &events, &clock),
        limit_watcher(&all, &stores, &writer, &metrics),
        alarm_engine(&all, &stores, &writer, &metrics, (&alarm_settings, &spec.alarms.sites)),
        alarm_shelves(&stores, &writer, &clock),
        usage_watch(&spec, &stores, &writer, &clock),
    ];
    let (line_children, buses) = lines(&spec, &all, &metrics);
    children.extend(line_children);
    let ctx = DeviceContext {
        gateways: Arc::new(slots.gateways.clone()),
        buses: Arc::new(buses),
        store: stores.field.clone(),
        writer: writer.clone(),
        hub: slots.hub.clone(),
        events: events.clone(),
        clock: clock.clone(),
        time: Arc::new(spec.time.clone()),
        metrics: metrics.clone(),
    };
    for r in &spec.regions {
        children.push(region(r, &ctx, &mut slots, spec.policy));
    }
    let hj212_bound: Arc<std::sync::Mutex<Option<std::net::SocketAddr>>> = Arc::default();
    children.extend(hj212_gateway(&spec, &slots, &hj212_bound, &metrics));
    children.extend(mqtt_gateway(&spec, &slots, &metrics));

    let (root, join) = start_root(children, spec.policy, &events, &metrics).await?;
    let handle = Handle::new(crate::api::HandleParts {
        stores,
        writer,
        hub: slots.hub,
        devices: all.devices,
        device_slots: slots.devices,
        valves: all.valves,
        stations: all.stations,
        gateways: all.gateways,
        groups: all.groups,
        valve_slots: slots.valves,
        regions: all.regions,
        region_supervisors: slots.regions,
        root: root.clone(),
        events,
        clock,
        metrics,
        alarm_settings,
        usage: crate::api::UsageParts {
            zone: spec.time.zone.clone(),
            zones: spec.usage.zones.clone(),
            meters: Arc::new(crate::alarms::usage::meter_places(&spec.regions)),
        },
        alarm_positions: spec.alarm_positions.clone(),
    });
    let hj212_addr = *hj212_bound.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Tree { root, join, handle, hj212_addr })
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

/// A child like [`child`] whose running reference is put into `slot` on every (re)start, for the actors
/// that others call (the store writer, the hub, region supervisors). `actor` makes the actor value.
fn slotted<A, N, F>(name: impl Into<String>, actor: N, slot: Slot<A::Msg>, make: F) -> ChildSpec
where
    A: Actor,
    N: Fn() -> A + Send + Sync + 'static,
    F: Fn() -> A::Arguments + Send + Sync + 'static,
{
    ChildSpec::new(name, move |sup| {
        let (actor, args, slot) = (actor(), make(), slot.clone());
        async move {
            let (started, _) = Actor::spawn_linked(None, actor, args, sup).await?;
            slot.set(started.clone());
            Ok(started.get_cell())
        }
    })
}

/// The store writer: every durable write goes through it (group commit, acknowledged after commit).
fn store_writer(stores: &Stores, slots: &Slots, events: &EventBus, metrics: &Arc<Metrics>, max: usize) -> ChildSpec {
    let (store, events, metrics) = (stores.commit.clone(), events.clone(), metrics.clone());
    slotted(
        "store-writer",
        || StoreWriter,
        slots.writer.clone(),
        move || StoreWriterArgs {
            store: store.clone(),
            metrics: metrics.clone(),
            max_batch_ops: max,
            events: Some(events.clone()),
        },
    )
}

/// The live hub, which on every (re)start loads each device's view from the store, in configuration order.
fn live_hub(
    spec: &TreeSpec,
    all: &AllSpecs,
    stores: &Stores,
    slots: &Slots,
    events: &EventBus,
    clock: &SharedClock,
) -> ChildSpec {
    let (regions, replay, channel) = (all.regions.clone(), spec.live_replay, spec.live_channel);
    let (devices, gateways, groups) = (all.devices.clone(), all.gateways.clone(), all.groups.clone());
    let (stations, valves) = (all.stations.clone(), all.valves.clone());
    let (store, events, clock) = (stores.field.clone(), events.clone(), clock.clone());
    let alarms = stores.alarms.clone();
    let load: ViewLoader = Arc::new(move || {
        let store: &dyn FieldStore = store.as_ref();
        devices
            .iter()
            .map(|d| initial_view(d, store))
            .chain(gateways.iter().map(|g| cjt188::initial_view(g, store)))
            .chain(groups.iter().map(|g| mqtt_group::initial_view(g, store)))
            .chain(stations.iter().map(|s| station::initial_view(s, store)))
            .chain(valves.iter().map(|v| valve::initial_view(v, store)))
            .collect()
    });
    slotted(
        "live-hub",
        || LiveHub,
        slots.hub.clone(),
        move || HubArgs {
            regions: regions.clone(),
            load: load.clone(),
            events: events.clone(),
            alarms: alarms.clone(),
            clock: clock.clone(),
            replay,
            channel,
        },
    )
}

/// The first consumer of the change feed: water-quality limit crossings, exactly once (see `feed`).
fn limit_watcher(all: &AllSpecs, stores: &Stores, writer: &StoreHandle, metrics: &Arc<Metrics>) -> ChildSpec {
    let limits = series_limits(all);
    let (stores, writer, metrics) = (stores.clone(), writer.clone(), metrics.clone());
    child("limit-watcher", FeedConsumer::<LimitWatcher>::default(), move || FeedConsumerArgs {
        handler: LimitWatcher { limits: limits.clone() },
        stores: stores.clone(),
        writer: writer.clone(),
        metrics: metrics.clone(),
        batch: crate::feed::DEFAULT_BATCH,
    })
}

/// The alarm engine (issue 9): alarms from the change feed, committed with its cursor (see `alarms`).
fn alarm_engine(
    all: &AllSpecs,
    stores: &Stores,
    writer: &StoreHandle,
    metrics: &Arc<Metrics>,
    (settings, sites): (&crate::alarms::SharedSettings, &HashMap<DeviceId, crate::model::SiteType>),
) -> ChildSpec {
    let series: HashMap<_, _> = series_limits(all)
        .into_iter()
        .map(|(k, l)| {
            let limits = AnalogLimits { high: l.high, low: l.low, ..AnalogLimits::default() };
            (k, QualitySeries::with_defaults(l.region, limits))
        })
        .collect();
    let regions: HashMap<DeviceId, RegionId> = (all.devices.iter().map(|d| (d.id.clone(), d.region.clone())))
        .chain(all.groups.iter().map(|g| (g.id.clone(), g.region.clone())))
        .chain(all.gateways.iter().map(|g| (g.id.clone(), g.region.clone())))
        .collect();
    let (stores, writer, metrics) = (stores.clone(), writer.clone(), metrics.clone());
    let (settings, sites) = (settings.clone(), sites.clone());
    child("alarm-engine", FeedConsumer::<AlarmEngine>::default(), move || FeedConsumerArgs {
        handler: AlarmEngine::new(series.clone())
            .with_regions(regions.clone())
            .with_settings(settings.clone(), sites.clone()),
        stores: stores.clone(),
        writer: writer.clone(),
        metrics: metrics.clone(),
        batch: crate::feed::DEFAULT_BATCH,
    })
}

/// Shelf expiry: shelved alarms come back at their shelf's end (see `alarms::shelf`).
fn alarm_shelves(stores: &Stores, writer: &StoreHandle, clock: &SharedClock) -> ChildSpec {
    let (alarms, writer, clock) = (stores.alarms.clone(), writer.clone(), clock.clone());
    child("alarm-shelves", ShelfWatch, move || ShelfWatchArgs {
        alarms: alarms.clone(),
        writer: writer.clone(),
        clock: clock.clone(),
        every: crate::alarms::shelf::DEFAULT_EVERY,
    })
}

/// The usage watch: abnormal usage, night flow and zone leakage (see `alarms::usage`).
fn usage_watch(spec: &TreeSpec, stores: &Stores, writer: &StoreHandle, clock: &SharedClock) -> ChildSpec {
    let meters = Arc::new(crate::alarms::usage::meter_places(&spec.regions));
    let (stores, writer, clock) = (stores.clone(), writer.clone(), clock.clone());
    let (zone, settings) = (spec.time.zone.clone(), spec.usage.clone());
    child(crate::alarms::usage::UsageWatch::NAME, crate::alarms::usage::UsageWatch, move || {
        crate::alarms::usage::UsageWatchArgs {
            field: stores.field.clone(),
            usage: stores.usage.clone(),
            alarms: stores.alarms.clone(),
            writer: writer.clone(),
            clock: clock.clone(),
            zone: zone.clone(),
            settings: settings.clone(),
            meters: meters.clone(),
            every: crate::alarms::usage::DEFAULT_EVERY,
        }
    })
}

/// The limits of every water-quality series (a logger's or a station's parameter), by device and parameter.
fn series_limits(all: &AllSpecs) -> HashMap<(DeviceId, String), SeriesLimits> {
    let mut limits = HashMap::new();
    for d in &all.devices {
        if let DeviceKindSpec::Logger(l) = &d.kind {
            for p in &l.parameters {
                let series = SeriesLimits { region: d.region.clone(), low: p.low, high: p.high };
                limits.insert((d.id.clone(), p.name.clone()), series);
            }
        }
    }
    for st in &all.stations {
        for p in &st.parameters {
            let series = SeriesLimits { region: st.region.clone(), low: p.low, high: p.high };
            limits.insert((st.id.clone(), p.name.clone()), series);
        }
    }
    limits
}

/// One bus actor per Modbus serial line, started before the regions whose devices use them, and the slots
/// by line id. A line owned by a CJ/T 188 gateway is driven by that gateway's actor alone.
fn lines(
    spec: &TreeSpec,
    all: &AllSpecs,
    metrics: &Arc<Metrics>,
) -> (Vec<ChildSpec>, HashMap<String, Slot<RtuBusMsg>>) {
    let mut children = Vec::new();
    let mut buses = HashMap::new();
    for (id, settings) in &spec.lines {
        if all.gateways.iter().any(|g| g.line.as_deref() == Some(id.as_str())) {
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
    (children, buses)
}

/// A region's supervisor and its device actors, in the order the module documentation lists them. Records
/// the slots of the devices, valves and the supervisor itself.
fn region(region: &RegionSpec, ctx: &DeviceContext, slots: &mut Slots, policy: RestartPolicy) -> ChildSpec {
    let mut children = Vec::new();
    for device in &region.devices {
        let slot: Slot<FieldMsg> = Slot::default();
        slots.devices.insert(device.id.clone(), slot.clone());
        let (spec, ctx) = (device.clone(), ctx.clone());
        children.push(child(device.id.to_string(), FieldDevice, move || FieldDeviceArgs {
            spec: spec.clone(),
            ctx: ctx.clone(),
            slot: slot.clone(),
        }));
    }
    for g in &region.cjt188 {
        let slot = slots.gateways.get(g.id.as_str()).cloned().unwrap_or_default();
        let (spec, ctx) = (g.clone(), ctx.clone());
        children.push(child(g.id.to_string(), Cjt188Device, move || Cjt188Args {
            spec: spec.clone(),
            ctx: ctx.clone(),
            slot: slot.clone(),
        }));
    }
    for g in &region.mqtt {
        let slot = slots.groups.iter().find(|(s, _)| s.id == g.id).map(|(_, slot)| slot.clone()).unwrap_or_default();
        let (spec, ctx) = (g.clone(), ctx.clone());
        children.push(child(g.id.to_string(), MqttGroup, move || MqttGroupArgs {
            spec: spec.clone(),
            ctx: ctx.clone(),
            slot: slot.clone(),
        }));
    }
    for st in &region.stations {
        let slot = slots.stations.iter().find(|(s, _)| s.id == st.id).map(|(_, slot)| slot.clone()).unwrap_or_default();
        let (spec, ctx) = (st.clone(), ctx.clone());
        children.push(child(st.id.to_string(), StationActor, move || StationArgs {
            spec: spec.clone(),
            ctx: ctx.clone(),
            slot: slot.clone(),
        }));
    }
    for v in &region.valves {
        let slot: Slot<ValveMsg> = Slot::default();
        slots.valves.insert(v.id.clone(), slot.clone());
        let (spec, ctx) = (v.clone(), ctx.clone());
        children.push(child(v.id.to_string(), ValveActor, move || ValveArgs {
            spec: spec.clone(),
            ctx: ctx.clone(),
            slot: slot.clone(),
        }));
    }
    let slot: Slot<SupervisorMsg> = Slot::default();
    slots.regions.push((region.id.clone(), slot.clone()));
    let name = format!("region:{}", region.id);
    let (events, metrics) = (ctx.events.clone(), ctx.metrics.clone());
    slotted(
        name.clone(),
        || Supervisor,
        slot,
        move || SupervisorArgs {
            name: name.clone(),
            children: children.clone(),
            policy,
            events: events.clone(),
            metrics: metrics.clone(),
        },
    )
}

/// The HJ 212 listener, when any station is configured; it reports its bound address into `bound`.
fn hj212_gateway(
    spec: &TreeSpec,
    slots: &Slots,
    bound: &Arc<std::sync::Mutex<Option<std::net::SocketAddr>>>,
    metrics: &Arc<Metrics>,
) -> Option<ChildSpec> {
    if slots.stations.is_empty() {
        return None;
    }
    let listen = spec.hj212_listen.unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 9212)));
    let (stations, bound, metrics) = (slots.stations.clone(), bound.clone(), metrics.clone());
    let limits = spec.hj212_limits;
    Some(ChildSpec::new("hj212-gateway", move |sup| {
        let args =
            GatewayArgs { listen, limits, stations: stations.clone(), bound: bound.clone(), metrics: metrics.clone() };
        async move { Actor::spawn_linked(None, Hj212Gateway, args, sup).await.map(|(a, _)| a.get_cell()) }
    }))
}

/// The MQTT broker connection, when any meter group is configured (and the broker with it).
fn mqtt_gateway(spec: &TreeSpec, slots: &Slots, metrics: &Arc<Metrics>) -> Option<ChildSpec> {
    let settings = spec.mqtt.clone().filter(|_| !slots.groups.is_empty())?;
    let (groups, metrics) = (slots.groups.clone(), metrics.clone());
    Some(child("mqtt-gateway", MqttGateway, move || MqttGatewayArgs {
        settings: settings.clone(),
        groups: groups.clone(),
        metrics: metrics.clone(),
    }))
}

/// Spawns the root supervisor over `children` and waits until they have all started.
async fn start_root(
    children: Vec<ChildSpec>,
    policy: RestartPolicy,
    events: &EventBus,
    metrics: &Arc<Metrics>,
) -> Result<(ActorRef<SupervisorMsg>, JoinHandle<()>), SpawnErr> {
    let args =
        SupervisorArgs { name: "root".into(), children, policy, events: events.clone(), metrics: metrics.clone() };
    let (root, join) = Actor::spawn(None, Supervisor, args).await?;
    // `spawn` returns after the root's `pre_start`; its children start in `post_start`, before it handles any
    // message. So a reply to this call means the store writer, the hub and every region are up.
    ractor::call!(root, SupervisorMsg::Children)
        .map_err(|e| SpawnErr::StartupFailed(format!("the root supervisor did not start: {e}").into()))?;
    Ok((root, join))
}
