//! `UsageApi` (issue 9 §1, §4; R-B1, R-B5): usage per meter or region by hour, day or month in the utility's
//! time zone, with the same period a year earlier beside each bucket; and each zone's leakage per period.
//!
//! Bounded: at most [`MAX_BUCKETS`] buckets a request, and for a region at most [`MAX_CELLS`] meter-buckets (a
//! region of 1 000 meters by day: 200 days), so one request reads a bounded number of readings. The reads run
//! on the blocking pool, never on the runtime's workers. Read-only: nothing here changes state, so nothing is
//! audited.

use std::sync::Arc;

use drivers::calendar::{days_in_month, Zone};
use serde::Serialize;

use super::{ApiError, HandleParts};
use crate::alarms::usage::{
    bucket_edges, day_start, local, month_start, point, rules_for, Bucket, MeterPlace, Period, ZoneSpec, MAX_READINGS,
};
use crate::clock::SharedClock;
use crate::model::{bucket_usage, BucketUsage, MeterId, RegionId, Timestamp, UsagePoint, Volume};
use crate::store::{FieldStore, UsageStore, ZoneLeakage};

/// The most buckets one request may ask for (a month of hours, two years of days, …).
pub const MAX_BUCKETS: usize = 800;
/// The most meters × buckets one region request may read.
pub const MAX_CELLS: usize = 200_000;
/// The most periods listed per zone.
pub const MAX_PERIODS: usize = 400;

/// What the tree hands over for usage.
#[derive(Clone, Debug, Default)]
pub struct UsageParts {
    pub zone: Zone,
    pub zones: Vec<Arc<ZoneSpec>>,
    pub meters: Arc<Vec<(MeterId, MeterPlace)>>,
}

/// Whose usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Meter(MeterId),
    Region(RegionId),
}

/// One bucket's usage.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UsageCell {
    pub start: Timestamp,
    pub end: Timestamp,
    /// m³ with three decimals (of the covered part).
    pub m3: String,
    /// The share of the bucket (of every meter's bucket, for a region) that had readings, 0–1.
    pub coverage: f64,
    pub complete: bool,
}

/// One row: a bucket and the same bucket a year earlier.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UsageRow {
    #[serde(flatten)]
    pub now: UsageCell,
    pub last_year: UsageCell,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UsageReport {
    pub meter: Option<MeterId>,
    pub region: Option<RegionId>,
    pub bucket: Bucket,
    /// The utility's zone the buckets are cut in.
    pub timezone: String,
    pub meters: usize,
    pub rows: Vec<UsageRow>,
}

/// A zone and its leakage per period, latest first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ZoneReport {
    pub id: String,
    pub name: String,
    pub region: RegionId,
    pub masters: Vec<MeterId>,
    pub members: usize,
    pub threshold: f64,
    pub period: Period,
    /// The utility's zone the periods are cut in.
    pub timezone: String,
    /// The period under way, so far (an estimate from each meter's first and latest reading; not judged).
    pub so_far: Option<SoFar>,
    pub periods: Vec<ZoneLeakage>,
}

/// A zone's leakage in the period under way, from its start to the latest readings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SoFar {
    pub start: Timestamp,
    pub at: Timestamp,
    pub master_litres: i64,
    pub members_litres: i64,
    pub rate: Option<f64>,
    /// Meters without two usable readings in the period (left out of both sums).
    pub missing_meters: usize,
}

#[derive(Clone)]
pub struct UsageApi {
    field: Arc<dyn FieldStore>,
    usage: Arc<dyn UsageStore>,
    parts: Arc<UsageParts>,
    clock: SharedClock,
}

/// The same local time a year earlier (29 February → 28 February).
fn year_before(zone: &Zone, t: Timestamp) -> Timestamp {
    let l = zone.to_local(t.0);
    let day = l.day.min(days_in_month(l.year - 1, l.month));
    local(zone, l.year - 1, l.month, day, l.hour).unwrap_or(t.plus_millis(-365 * 86_400_000))
}

fn cell(b: &[BucketUsage], start: Timestamp, end: Timestamp) -> UsageCell {
    let litres: i64 = b.iter().map(|b| b.litres).sum();
    let covered: i64 = b.iter().map(|b| b.covered_ms).sum();
    let length: i64 = b.iter().map(|b| b.length_ms()).sum();
    let coverage = if length > 0 { covered as f64 / length as f64 } else { 0.0 };
    UsageCell {
        start,
        end,
        m3: Volume::from_litres(litres).to_string(),
        coverage: (coverage * 1000.0).round() / 1000.0,
        complete: length > 0 && covered >= length,
    }
}

impl UsageApi {
    pub(crate) fn new(parts: &HandleParts) -> UsageApi {
        let (field, usage) = (parts.stores.field.clone(), parts.stores.usage.clone());
        UsageApi { field, usage, parts: Arc::new(parts.usage.clone()), clock: parts.clock.clone() }
    }

    /// What a meter measured from its first usable reading at or after `start` to its latest one.
    fn used_since(&self, meter: &MeterId, start: Timestamp, now: Timestamp) -> Result<Option<i64>, ApiError> {
        let first = self.field.meter_readings(meter, start, now, 1)?;
        let Some(first) = first.first().and_then(point).filter(UsagePoint::usable) else { return Ok(None) };
        let Some((ts, volume, _)) = self.field.latest_reading(meter)? else { return Ok(None) };
        if ts <= first.ts || volume < first.volume {
            return Ok(None);
        }
        Ok(Some(volume.litres() - first.volume.litres()))
    }

    fn so_far(&self, z: &ZoneSpec) -> Result<SoFar, ApiError> {
        let now = self.clock.now();
        let start = match z.period {
            Period::Day => day_start(&self.parts.zone, now),
            Period::Month => month_start(&self.parts.zone, now, 0),
        };
        let (mut master, mut members, mut missing) = (0, 0, 0);
        for (meters, sum) in [(&z.masters, &mut master), (&z.members, &mut members)] {
            for m in meters {
                match self.used_since(m, start, now)? {
                    Some(l) => *sum += l,
                    None => missing += 1,
                }
            }
        }
        let rate = crate::model::leakage_rate(master, members);
        Ok(SoFar { start, at: now, master_litres: master, members_litres: members, rate, missing_meters: missing })
    }

    /// The usage of a meter or a region per bucket from `from` to `to`, with last year beside it.
    pub async fn usage(
        &self,
        target: Target,
        bucket: Bucket,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<UsageReport, ApiError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.usage_blocking(target, bucket, from, to))
            .await
            .map_err(|_| ApiError::Internal)?
    }

    fn usage_blocking(
        &self,
        target: Target,
        bucket: Bucket,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<UsageReport, ApiError> {
        if to < from {
            return Err(ApiError::BadRequest("to is before from".into()));
        }
        let zone = &self.parts.zone;
        let edges = bucket_edges(zone, bucket, from, to, MAX_BUCKETS + 1);
        if edges.len() > MAX_BUCKETS + 1 {
            return Err(ApiError::BadRequest(format!("more than {MAX_BUCKETS} buckets: choose a wider bucket")));
        }
        let meters: Vec<MeterId> = match &target {
            Target::Meter(m) => {
                let known = self.parts.meters.iter().any(|(id, _)| id == m);
                if !known {
                    return Err(ApiError::NotFound(format!("no meter {m}")));
                }
                vec![m.clone()]
            }
            Target::Region(r) => {
                let of: Vec<MeterId> =
                    self.parts.meters.iter().filter(|(_, p)| p.region == *r).map(|(m, _)| m.clone()).collect();
                if of.is_empty() {
                    return Err(ApiError::NotFound(format!("no region {r} with meters")));
                }
                if of.len() * (edges.len() - 1) > MAX_CELLS {
                    return Err(ApiError::BadRequest(format!(
                        "{} meters × {} buckets is more than {MAX_CELLS}: choose a shorter span or a wider bucket",
                        of.len(),
                        edges.len() - 1
                    )));
                }
                of
            }
        };
        let mut earlier: Vec<Timestamp> = Vec::with_capacity(edges.len());
        for e in &edges {
            let t = match bucket {
                Bucket::Month => month_start(zone, *e, -12),
                _ => year_before(zone, *e),
            };
            let t = earlier.last().map_or(t, |p: &Timestamp| t.max(p.plus_millis(1)));
            earlier.push(t);
        }
        let rules = rules_for(bucket);
        let n = edges.len().saturating_sub(1);
        let (mut now, mut before): (Vec<Vec<BucketUsage>>, Vec<Vec<BucketUsage>>) =
            (vec![Vec::new(); n], vec![Vec::new(); n]);
        for m in &meters {
            for (edges, out) in [(&edges, &mut now), (&earlier, &mut before)] {
                let (Some(first), Some(last)) = (edges.first(), edges.last()) else { continue };
                let readings = self.field.meter_readings(
                    m,
                    first.plus_millis(-rules.max_gap_ms),
                    last.plus_millis(rules.max_gap_ms),
                    MAX_READINGS,
                )?;
                let points: Vec<UsagePoint> = readings.iter().filter_map(point).collect();
                for (i, b) in bucket_usage(&points, edges, &rules).into_iter().enumerate() {
                    out[i].push(b);
                }
            }
        }
        let rows = (0..n)
            .map(|i| UsageRow {
                now: cell(&now[i], edges[i], edges[i + 1]),
                last_year: cell(&before[i], earlier[i], earlier[i + 1]),
            })
            .collect();
        let (meter, region) = match target {
            Target::Meter(m) => (Some(m), None),
            Target::Region(r) => (None, Some(r)),
        };
        Ok(UsageReport { meter, region, bucket, timezone: zone.name().to_owned(), meters: meters.len(), rows })
    }

    /// Every zone with its leakage per period, latest first, at most `periods` each, and the period under way.
    pub async fn zones(&self, periods: usize) -> Result<Vec<ZoneReport>, ApiError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.zones_blocking(periods)).await.map_err(|_| ApiError::Internal)?
    }

    fn zones_blocking(&self, periods: usize) -> Result<Vec<ZoneReport>, ApiError> {
        let periods = periods.clamp(1, MAX_PERIODS);
        self.parts
            .zones
            .iter()
            .map(|z| {
                Ok(ZoneReport {
                    id: z.id.clone(),
                    name: z.name.clone(),
                    region: z.region.clone(),
                    masters: z.masters.clone(),
                    members: z.members.len(),
                    threshold: z.threshold,
                    period: z.period,
                    timezone: self.parts.zone.name().to_owned(),
                    so_far: Some(self.so_far(z)?),
                    periods: self.usage.zone_leakage(&z.id, periods)?,
                })
            })
            .collect()
    }
}
