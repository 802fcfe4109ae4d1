//! The demo breaks something now and then (issue 9 "Done when": the demo shows alarms happening). With
//! `[simulator] incidents = "20m"`, every 20 minutes (wall clock) one incident begins on the in-process
//! simulator and ends `incident_length` later (default 5 minutes), in turn:
//!
//! 1. a water-quality logger's free chlorine (or its first parameter with a low limit) drops to a third of
//!    its low limit: a quality-low alarm, cleared when the value comes back;
//! 2. a concentrator goes silent: its comm-lost alarm (its meters' alarms suppressed by design), cleared when
//!    it answers again;
//! 3. a meter behind a concentrator reports a magnetic tamper: its meter-tamper alarm, cleared when the bit
//!    goes.
//!
//! Only the Modbus TCP simulator is touched, through the same calls as the fault-injection API; what an
//! incident changed is put back as it was when it ends (a fault set meanwhile by hand is kept). Off unless
//! configured (the tests' configurations do not set it). What it does not do: raise alarms itself (the
//! engine does, from what the server reads) or touch anything but simulators.

use std::time::Duration;

use actors::field::DeviceKindSpec;
use sim::modbus::ModbusSimHandle;

use crate::config::Config;

/// `[simulator] incidents` and `incident_length`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IncidentSettings {
    /// Time from the end of one incident (or the start) to the beginning of the next.
    pub every: Duration,
    /// How long an incident lasts.
    pub length: Duration,
}

/// One thing the demo breaks for a while.
#[derive(Clone, Debug, PartialEq)]
pub enum Incident {
    /// A logger's parameter forced to `value` (below its low limit).
    Dip { logger: String, parameter: String, value: f64 },
    /// A concentrator stops answering.
    Silence { device: String },
    /// A concentrator's meter in `slot` reports a magnetic tamper.
    Tamper { device: String, slot: u16, meter: String },
}

/// What an incident does to the simulators (the real one is [`ModbusSimHandle`]; tests record calls).
pub trait Breaker: Send + Sync + 'static {
    fn begin(&self, incident: &Incident);
    fn end(&self, incident: &Incident);
}

/// The incidents the configuration allows, in the order they take turns: a dip at the first logger with a
/// low limit, silence and a tamper at the first concentrator simulated over Modbus TCP.
pub fn plan(config: &Config) -> Vec<Incident> {
    let mut dip = None;
    let mut concentrator = None;
    for d in config.tree.regions.iter().flat_map(|r| &r.devices) {
        match &d.kind {
            DeviceKindSpec::Logger(l) if dip.is_none() => {
                let low = |p: &&actors::field::ParameterSpec| p.low.is_some_and(|l| l > 0.0);
                let chlorine = l.parameters.iter().filter(low).find(|p| p.name == "free_chlorine");
                if let Some(p) = chlorine.or_else(|| l.parameters.iter().find(low)) {
                    let value = p.low.unwrap_or(0.0) / 3.0;
                    dip = Some(Incident::Dip { logger: d.id.to_string(), parameter: p.name.clone(), value });
                }
            }
            DeviceKindSpec::Concentrator(c) if concentrator.is_none() => {
                if let (actors::modbus_link::ModbusPath::Tcp(_), Some(m)) = (&d.target, c.meters.last()) {
                    concentrator = Some((d.id.to_string(), m.slot, m.id.to_string()));
                }
            }
            _ => {}
        }
    }
    let mut plan: Vec<Incident> = dip.into_iter().collect();
    if let Some((device, slot, meter)) = concentrator {
        plan.push(Incident::Silence { device: device.clone() });
        plan.push(Incident::Tamper { device, slot, meter });
    }
    plan
}

/// Runs the incidents in turn, for ever (the caller aborts the task): waits `every`, begins one, waits
/// `length`, ends it. Each begins and ends in the log, so an operator trying the demo knows what happened.
pub async fn run(plan: Vec<Incident>, settings: IncidentSettings, breaker: impl Breaker) {
    if plan.is_empty() {
        tracing::info!(message = "Demo incidents: nothing in the configuration to break.");
        return;
    }
    for incident in plan.iter().cycle() {
        tokio::time::sleep(settings.every).await;
        tracing::info!(message = "Demo incident begins.", incident = ?incident, lasts = ?settings.length);
        breaker.begin(incident);
        tokio::time::sleep(settings.length).await;
        breaker.end(incident);
        tracing::info!(message = "Demo incident ends.", incident = ?incident);
    }
}

impl Breaker for ModbusSimHandle {
    fn begin(&self, incident: &Incident) {
        change(self, incident, true);
    }
    fn end(&self, incident: &Incident) {
        change(self, incident, false);
    }
}

fn change(sim: &ModbusSimHandle, incident: &Incident, on: bool) {
    let refit = |id: &str, edit: &dyn Fn(&mut sim::modbus::ModbusFault)| {
        let Some(mut fault) = sim.status(id).map(|s| s.fault) else { return };
        edit(&mut fault);
        if let Err(e) = sim.set_fault(id, fault) {
            tracing::warn!(message = "Demo incident not applied.", device = id, error = %e);
        }
    };
    match incident {
        Incident::Dip { logger, parameter, value } => refit(logger, &|f| {
            if on {
                f.values.insert(parameter.clone(), *value);
            } else {
                f.values.remove(parameter);
            }
        }),
        Incident::Silence { device } => refit(device, &|f| f.silent = on),
        Incident::Tamper { device, slot, .. } => {
            if !sim.set_meter_flag(device, *slot, "magnetic_tamper", on) {
                tracing::warn!(message = "Demo incident not applied: no such meter or tamper bit.", device = %device);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records (seconds since the start, begin?, incident kind) under paused time.
    #[derive(Clone)]
    struct Recorder(Arc<Mutex<Vec<(u64, bool, String)>>>, tokio::time::Instant);

    impl Recorder {
        fn note(&self, on: bool, i: &Incident) {
            let kind = match i {
                Incident::Dip { .. } => "dip",
                Incident::Silence { .. } => "silence",
                Incident::Tamper { .. } => "tamper",
            };
            self.0.lock().unwrap().push((self.1.elapsed().as_secs(), on, kind.into()));
        }
    }

    impl Breaker for Recorder {
        fn begin(&self, i: &Incident) {
            self.note(true, i);
        }
        fn end(&self, i: &Incident) {
            self.note(false, i);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn incidents_take_turns_on_schedule_and_each_ends_after_its_length() {
        let config = crate::config::parse("demo.toml", crate::config::DEMO_TOML, None).unwrap();
        let plan = plan(&config);
        let kinds: Vec<_> = plan
            .iter()
            .map(|i| match i {
                Incident::Dip { parameter, value, .. } => format!("dip {parameter} {value:.2}"),
                Incident::Silence { .. } => "silence".into(),
                Incident::Tamper { .. } => "tamper".into(),
            })
            .collect();
        assert_eq!(kinds, vec!["dip free_chlorine 0.10", "silence", "tamper"], "{plan:?}");
        let rec = Recorder(Arc::default(), tokio::time::Instant::now());
        let settings = IncidentSettings { every: Duration::from_secs(600), length: Duration::from_secs(120) };
        let task = tokio::spawn(run(plan, settings, rec.clone()));
        tokio::time::sleep(Duration::from_secs(4 * 720 + 1)).await;
        task.abort();
        let got = rec.0.lock().unwrap().clone();
        let want: Vec<(u64, bool, String)> = [
            (600, true, "dip"),
            (720, false, "dip"),
            (1320, true, "silence"),
            (1440, false, "silence"),
            (2040, true, "tamper"),
            (2160, false, "tamper"),
            (2760, true, "dip"),
            (2880, false, "dip"),
        ]
        .into_iter()
        .map(|(t, on, k)| (t, on, k.to_owned()))
        .collect();
        assert_eq!(got, want);
    }
}
