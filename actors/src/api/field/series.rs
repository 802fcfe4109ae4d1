//! Trend series (issue 9 §4): several pens over one time range, each cut into at most `points` buckets that
//! keep the minimum, the maximum and the last value with their times, so a short dip or spike is drawn
//! however long the range (never averaged away) and the page gets a bounded answer.
//!
//! A pen is a meter's volume (`meter:ID`), a meter's usage rate in m³/h between consecutive readings
//! (`rate:ID`), or a logger's or station's parameter (`param:DEVICE/PARAM`). Parameter pens carry the limits
//! the alarm engine watches them against (the spec's `low`/`high`; HH and LL when the spec has them).
//!
//! Reads go through the narrow [`FieldStore`] in pages of [`PAGE`] rows: samples by their `(series, ts)`
//! key range, meter readings through the hour-first skip scan (hours without data cost nothing), never a
//! full table scan; a pen stops after [`SCAN_BUDGET`] rows and says it was `truncated`. It does not know
//! HTTP (the route bounds and parses the query) and does not draw.

use std::sync::Arc;

use serde::Serialize;

use super::FieldApi;
use crate::api::{blocking, ApiError};
use crate::field::DeviceKindSpec;
use crate::model::{AnalogLimits, DeviceId, MeterId, Timestamp};
use crate::store::{FieldStore, StoreError};

/// Most pens on one chart.
pub const MAX_PENS: usize = 8;
/// Most buckets per pen.
pub const MAX_POINTS: usize = 2000;
/// Fewest buckets per pen (a smaller request is raised to this).
pub const MIN_POINTS: usize = 10;
/// The longest range one request may span: a little over a year, for "same period last year" views.
pub const MAX_SPAN_MS: i64 = 400 * 24 * 3600 * 1000;
/// Rows read from the store at once.
const PAGE: usize = 10_000;
/// Most rows read for one pen; beyond it the pen is `truncated` (a parameter sampled every second over a
/// year would be 31 million rows: such a range is drawn from its first part, and the page says so).
pub const SCAN_BUDGET: usize = 1_000_000;

/// What one pen draws.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pen {
    /// A meter's cumulative volume, m³.
    Volume(MeterId),
    /// A meter's usage rate between consecutive readings, m³/h.
    Rate(MeterId),
    /// A logger's or a station's parameter.
    Param(DeviceId, String),
}

impl Pen {
    /// Parses `meter:ID`, `rate:ID` or `param:DEVICE/PARAM`.
    pub fn parse(text: &str) -> Result<Pen, String> {
        let bad = || format!("pen {text:?}: expected meter:ID, rate:ID or param:DEVICE/PARAM");
        let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        match kind {
            "meter" => Ok(Pen::Volume(MeterId::new(rest))),
            "rate" => Ok(Pen::Rate(MeterId::new(rest))),
            "param" => match rest.split_once('/') {
                Some((d, p)) if !d.is_empty() && !p.is_empty() => Ok(Pen::Param(DeviceId::new(d), p.to_owned())),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }

    /// The pen as the query names it.
    pub fn key(&self) -> String {
        match self {
            Pen::Volume(m) => format!("meter:{m}"),
            Pen::Rate(m) => format!("rate:{m}"),
            Pen::Param(d, p) => format!("param:{d}/{p}"),
        }
    }
}

/// One bucket's extremes and last value, each with its time (ms since the epoch).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bucket {
    min: (i64, f64),
    max: (i64, f64),
    last: (i64, f64),
    n: u32,
}

/// Cuts `from..=to` into at most `points` equal buckets and keeps min, max and last of each (pure).
#[derive(Debug)]
pub struct Downsampler {
    from: i64,
    width: i64,
    buckets: Vec<Option<Bucket>>,
}

impl Downsampler {
    pub fn new(from: Timestamp, to: Timestamp, points: usize) -> Downsampler {
        let points = points.max(1);
        let span = (to.0 - from.0).max(0) + 1;
        let width = (span + points as i64 - 1) / points as i64;
        let count = ((span + width - 1) / width) as usize;
        Downsampler { from: from.0, width: width.max(1), buckets: vec![None; count] }
    }

    /// The width of one bucket, ms.
    pub fn bucket_ms(&self) -> i64 {
        self.width
    }

    /// Adds one value; values outside the range or not finite are ignored. Values must come oldest first
    /// for `last` to be the last.
    pub fn add(&mut self, ts: i64, value: f64) {
        if !value.is_finite() || ts < self.from {
            return;
        }
        let Some(slot) = self.buckets.get_mut(((ts - self.from) / self.width) as usize) else { return };
        match slot {
            None => *slot = Some(Bucket { min: (ts, value), max: (ts, value), last: (ts, value), n: 1 }),
            Some(b) => {
                if value < b.min.1 {
                    b.min = (ts, value);
                }
                if value > b.max.1 {
                    b.max = (ts, value);
                }
                b.last = (ts, value);
                b.n += 1;
            }
        }
    }

    /// The non-empty buckets, oldest first, as parallel arrays.
    pub fn finish(self) -> Buckets {
        let mut out = Buckets::default();
        for (i, b) in self.buckets.into_iter().enumerate() {
            let Some(b) = b else { continue };
            out.t.push(self.from + i as i64 * self.width);
            out.min.push(b.min.1);
            out.min_ts.push(b.min.0);
            out.max.push(b.max.1);
            out.max_ts.push(b.max.0);
            out.last.push(b.last.1);
            out.last_ts.push(b.last.0);
            out.n.push(b.n);
        }
        out
    }
}

/// The buckets of one pen as parallel arrays (compact JSON): bucket start `t`, and per bucket the minimum,
/// maximum and last value with their times, and how many values fell in it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Buckets {
    pub t: Vec<i64>,
    pub min: Vec<f64>,
    pub min_ts: Vec<i64>,
    pub max: Vec<f64>,
    pub max_ts: Vec<i64>,
    pub last: Vec<f64>,
    pub last_ts: Vec<i64>,
    pub n: Vec<u32>,
}

/// One pen's answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PenSeries {
    /// The pen as asked (`param:east-wq/free_chlorine`).
    pub pen: String,
    /// `volume`, `rate` or `param`.
    pub kind: &'static str,
    /// The device the value belongs to (a meter's concentrator or gateway).
    pub device: DeviceId,
    /// The device's configured name.
    pub device_name: String,
    /// The meter id or the parameter name.
    pub name: String,
    pub unit: String,
    /// The limits the alarm engine applies (parameters only; all absent for meters).
    pub limits: AnalogLimits,
    #[serde(flatten)]
    pub buckets: Buckets,
    /// Rows read from the store for this pen.
    pub rows: usize,
    /// The scan budget ended the read before `to`: only the first part of the range is drawn.
    pub truncated: bool,
}

/// Several pens over one range.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Series {
    pub from: Timestamp,
    pub to: Timestamp,
    pub bucket_ms: i64,
    pub pens: Vec<PenSeries>,
}

/// What a pen resolved against the configuration.
struct Resolved {
    pen: Pen,
    device: DeviceId,
    device_name: String,
    name: String,
    unit: String,
    limits: AnalogLimits,
}

impl FieldApi {
    /// The downsampled series of `pens` over `from..=to`, at most `points` buckets each (see the module).
    /// `BadRequest` for an unknown pen, a bad range or too many pens.
    pub async fn series(
        &self,
        pens: &[Pen],
        from: Timestamp,
        to: Timestamp,
        points: usize,
    ) -> Result<Series, ApiError> {
        if pens.is_empty() || pens.len() > MAX_PENS {
            return Err(ApiError::BadRequest(format!("between 1 and {MAX_PENS} pens, not {}", pens.len())));
        }
        if from > to {
            return Err(ApiError::BadRequest("`from` is after `to`".into()));
        }
        if to.0 - from.0 > MAX_SPAN_MS {
            return Err(ApiError::BadRequest("the range is longer than 400 days".into()));
        }
        let points = points.clamp(MIN_POINTS, MAX_POINTS);
        let resolved = pens.iter().map(|p| self.resolve(p)).collect::<Result<Vec<_>, _>>()?;
        let store = self.inner.store.clone();
        blocking(move || {
            let bucket_ms = Downsampler::new(from, to, points).bucket_ms();
            let pens = resolved
                .into_iter()
                .map(|r| read_pen(&store, r, from, to, points))
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Series { from, to, bucket_ms, pens })
        })
        .await
    }

    fn resolve(&self, pen: &Pen) -> Result<Resolved, ApiError> {
        let unknown = || ApiError::BadRequest(format!("no such pen {:?}", pen.key()));
        // Gateways and MQTT groups have no spec here: the page shows their id (it has their names from the
        // device list).
        let name_of = |d: &DeviceId| self.inner.by_id.get(d).map_or_else(|| d.to_string(), |s| s.name.clone());
        match pen {
            Pen::Volume(m) | Pen::Rate(m) => {
                let device = self.inner.meter_owner.get(m).ok_or_else(unknown)?.clone();
                let unit = if matches!(pen, Pen::Volume(_)) { "m³" } else { "m³/h" };
                Ok(Resolved {
                    pen: pen.clone(),
                    device_name: name_of(&device),
                    device,
                    name: m.to_string(),
                    unit: unit.into(),
                    limits: AnalogLimits::default(),
                })
            }
            Pen::Param(d, p) => {
                let limits = |low, high| AnalogLimits { low, high, ..AnalogLimits::default() };
                if let Some(spec) = self.inner.by_id.get(d) {
                    if let DeviceKindSpec::Logger(l) = &spec.kind {
                        let param = l.parameters.iter().find(|x| &x.name == p).ok_or_else(unknown)?;
                        return Ok(Resolved {
                            pen: pen.clone(),
                            device: d.clone(),
                            device_name: spec.name.clone(),
                            name: p.clone(),
                            unit: param.unit.clone(),
                            limits: limits(param.low, param.high),
                        });
                    }
                }
                let st = self.inner.stations.iter().find(|s| &s.id == d).ok_or_else(unknown)?;
                let param = st.parameters.iter().find(|x| &x.name == p).ok_or_else(unknown)?;
                Ok(Resolved {
                    pen: pen.clone(),
                    device: d.clone(),
                    device_name: st.name.clone(),
                    name: p.clone(),
                    unit: param.unit.clone(),
                    limits: limits(param.low, param.high),
                })
            }
        }
    }
}

/// Reads one pen page by page into its buckets.
fn read_pen(
    store: &Arc<dyn FieldStore>,
    r: Resolved,
    from: Timestamp,
    to: Timestamp,
    points: usize,
) -> Result<PenSeries, StoreError> {
    let mut down = Downsampler::new(from, to, points);
    let (mut rows, mut truncated, mut start) = (0usize, false, from);
    // The previous reading of a rate pen: (ts, litres).
    let mut previous: Option<(i64, i64)> = None;
    let kind = match &r.pen {
        Pen::Volume(_) => "volume",
        Pen::Rate(_) => "rate",
        Pen::Param(..) => "param",
    };
    loop {
        let want = PAGE.min(SCAN_BUDGET - rows);
        let (got, last_ts) = match &r.pen {
            Pen::Param(d, p) => {
                let page = store.samples(d, p, start, to, want)?;
                for s in &page {
                    // A sample whose time the server did not trust is kept in the store but not drawn.
                    if !s.flags.iter().any(|f| *f == "time_future" || *f == "time_stale") {
                        down.add(s.ts.0, s.value);
                    }
                }
                (page.len(), page.last().map(|s| s.ts))
            }
            Pen::Volume(m) | Pen::Rate(m) => {
                let page = store.meter_readings(m, start, to, want)?;
                for reading in &page {
                    // Exact m³ with three decimals as stored; a reading whose time was not trusted is not drawn.
                    let Ok(m3) = reading.volume_m3.parse::<f64>() else { continue };
                    if reading.status.iter().any(|f| *f == "time_future" || *f == "time_stale") {
                        continue;
                    }
                    if matches!(r.pen, Pen::Volume(_)) {
                        down.add(reading.ts.0, m3);
                        continue;
                    }
                    let litres = (m3 * 1000.0).round() as i64;
                    if let Some((t0, l0)) = previous {
                        let (dt, dl) = (reading.ts.0 - t0, litres - l0);
                        // A fall (a swap, a rollover) is no usage: the volume check reports it, not the rate.
                        if dt > 0 && dl >= 0 {
                            down.add(reading.ts.0, dl as f64 / 1000.0 / (dt as f64 / 3_600_000.0));
                        }
                    }
                    previous = Some((reading.ts.0, litres));
                }
                (page.len(), page.last().map(|x| x.ts))
            }
        };
        rows += got;
        match last_ts {
            Some(ts) if got == want && ts < to => {
                if rows >= SCAN_BUDGET {
                    truncated = true;
                    break;
                }
                start = Timestamp(ts.0 + 1);
            }
            _ => break,
        }
    }
    Ok(PenSeries {
        pen: r.pen.key(),
        kind,
        device: r.device,
        device_name: r.device_name,
        name: r.name,
        unit: r.unit,
        limits: r.limits,
        buckets: down.finish(),
        rows,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pens_parse_and_print_back() {
        for text in ["meter:E1-001", "rate:E1-001", "param:east-wq/free_chlorine"] {
            assert_eq!(Pen::parse(text).unwrap().key(), text);
        }
        for bad in ["", "meter:", "param:east-wq", "param:/x", "param:x/", "volume:E1", "nocolon"] {
            assert!(Pen::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn a_short_dip_survives_downsampling() {
        // One value a second for a day, 0.5 everywhere but one second at 0.1; 100 buckets of 864 s.
        let mut d = Downsampler::new(Timestamp(0), Timestamp(86_400_000 - 1), 100);
        assert_eq!(d.bucket_ms(), 864_000);
        for s in 0..86_400i64 {
            d.add(s * 1000, if s == 40_000 { 0.1 } else { 0.5 });
        }
        let b = d.finish();
        assert_eq!(b.t.len(), 100);
        let i = b.min.iter().position(|&m| m < 0.5).expect("the dip is in a bucket");
        assert_eq!((b.min[i], b.min_ts[i], b.max[i], b.last[i]), (0.1, 40_000_000, 0.5, 0.5));
        assert_eq!(b.t[i], 46 * 864_000);
        assert_eq!(b.n.iter().map(|&n| n as u64).sum::<u64>(), 86_400);
    }

    #[test]
    fn empty_buckets_are_left_out_and_out_of_range_values_ignored() {
        let mut d = Downsampler::new(Timestamp(1000), Timestamp(1999), 10);
        d.add(999, 1.0);
        d.add(2000, 1.0);
        d.add(1500, f64::NAN);
        d.add(1150, 2.0);
        d.add(1160, 3.0);
        d.add(1990, 4.0);
        let b = d.finish();
        assert_eq!(b.t, vec![1100, 1900]);
        assert_eq!((b.min, b.max, b.last, b.n), (vec![2.0, 4.0], vec![3.0, 4.0], vec![3.0, 4.0], vec![2, 1]));
    }

    #[test]
    fn never_more_buckets_than_points() {
        for (span, points) in [(0, 10), (1, 10), (9, 10), (10_001, 10), (86_400_000, 2000), (7, 3)] {
            let d = Downsampler::new(Timestamp(5), Timestamp(5 + span), points);
            assert!(d.buckets.len() <= points && !d.buckets.is_empty(), "{span} {points}: {}", d.buckets.len());
            assert!(d.width * d.buckets.len() as i64 > span);
        }
    }
}
