//! HJ 212 water-quality stations: where they connect (`[hj212] listen`) and each station
//! (`[[region.station]]`: MN, password, upload interval, clock offset, factors). Names and units of common
//! factor codes and the default limits by site type are domain tables in `actors::model::quality`.
//!
//! That stations need a listener (and a listener needs stations) is a cross-check (`cross.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actors::model::{hj212_factor, DeviceId};
use actors::station::{Hj212Limits, StationParameter, StationSpec};

use super::problems::Check;
use super::raw::RawHj212;
use super::{RegionScope, Resolver};

/// `[hj212] listen`, if configured.
pub(super) fn resolve_listen(check: &mut Check, raw: Option<&RawHj212>) -> Option<SocketAddr> {
    let h = raw?;
    match h.listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            check.add("hj212.listen", format!("{:?} is not an IP address and port, e.g. \"0.0.0.0:9212\"", h.listen));
            None
        }
    }
}

/// A text that is not a UTC offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a UTC offset like \"+08:00\" or \"Z\"")]
struct OffsetError(String);

/// `[hj212] max_connections`, `max_unverified_per_peer`, `verify_timeout`, `idle_timeout` (issue 8 §3).
pub(super) fn resolve_limits(check: &mut Check, raw: Option<&RawHj212>) -> Hj212Limits {
    let d = Hj212Limits::default();
    let Some(h) = raw else { return d };
    let mut count = |key: &str, value: Option<u64>, default: usize| match value {
        None => default,
        Some(n) if (1..=100_000).contains(&n) => usize::try_from(n).unwrap_or(default),
        Some(n) => {
            check.add(key, format!("{n} is out of range 1–100000"));
            default
        }
    };
    let max_connections = count("hj212.max_connections", h.max_connections, d.max_connections);
    let max_unverified_per_peer =
        count("hj212.max_unverified_per_peer", h.max_unverified_per_peer, d.max_unverified_per_peer);
    Hj212Limits {
        max_connections,
        max_unverified_per_peer,
        verify_timeout: check.duration("hj212.verify_timeout", h.verify_timeout.as_ref(), d.verify_timeout),
        idle_timeout: check.duration("hj212.idle_timeout", h.idle_timeout.as_ref(), d.idle_timeout),
    }
}

/// `+08:00`, `Z`, `-05:30` → minutes east of UTC.
fn parse_utc_offset(text: &str) -> Result<i32, OffsetError> {
    if text == "Z" {
        return Ok(0);
    }
    let bad = || OffsetError(text.to_owned());
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 14 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 60 + m))
}

/// The `[[region.station]]` entries of a region.
pub(super) fn resolve_stations(rs: &mut Resolver, region: &RegionScope<'_>) -> Vec<Arc<StationSpec>> {
    let mut stations = Vec::new();
    for (si, st) in region.raw.station.iter().enumerate() {
        let key = format!("{}.station[{si}] ({})", region.key, st.id);
        let check = &mut rs.check;
        check.device_id(&key, &st.id);
        if st.mn.is_empty() || st.mn.len() > 64 || !st.mn.chars().all(|c| c.is_ascii_alphanumeric()) {
            check.add(format!("{key}.mn"), "an MN is 1-64 letters and digits");
        }
        if !rs.station_mns.insert(st.mn.clone()) {
            check.add(format!("{key}.mn"), format!("MN {:?} is used by two stations", st.mn));
        }
        let interval = check.duration(&format!("{key}.interval"), st.interval.as_ref(), Duration::from_secs(60));
        let utc_offset_minutes = parse_utc_offset(st.utc_offset.as_deref().unwrap_or("+08:00")).unwrap_or_else(|e| {
            check.add(format!("{key}.utc_offset"), e.to_string());
            480
        });
        let site = check.site_type(&key, st.site_type.as_ref());
        if st.factors.is_empty() {
            check.add(format!("{key}.factors"), "lists no factor");
        }
        let mut parameters = Vec::new();
        for (fi, f) in st.factors.iter().enumerate() {
            let fkey = format!("{key}.factors[{fi}] ({})", f.factor);
            let known = hj212_factor(&f.factor);
            let (Some(name), Some(unit)) = (
                f.name.clone().or(known.map(|k| k.parameter.to_owned())),
                f.unit.clone().or(known.map(|k| k.unit.to_owned())),
            ) else {
                check.add(&fkey, "unknown factor code: give it a name and a unit");
                continue;
            };
            if parameters.iter().any(|p: &StationParameter| p.name == name || p.factor == f.factor) {
                check.add(&fkey, "factor or parameter listed twice");
            }
            let (low, high) = check.quality_limits(&fkey, site, &name, f.low, f.high);
            parameters.push(StationParameter { factor: f.factor.clone(), name, unit, low, high });
        }
        stations.push(Arc::new(StationSpec {
            id: DeviceId::new(st.id.clone()),
            name: st.name.clone().unwrap_or_else(|| st.id.clone()),
            region: region.id.clone(),
            mn: st.mn.clone(),
            password: st.password.clone(),
            interval,
            parameters,
            utc_offset_minutes,
        }));
    }
    stations
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::testing::{check, MINIMAL};
    use super::parse_utc_offset;

    fn station(extra: &str, factors: &str) -> String {
        format!(
            "[hj212]\nlisten = \"127.0.0.1:9212\"\n{MINIMAL}[[region.station]]\nid = \"s1\"\nmn = \"MN1\"\n{extra}\nfactors = {factors}\n"
        )
    }

    #[test]
    fn known_factor_codes_get_their_name_unit_and_the_site_types_limits() {
        let params = |text: &str| {
            let c = parse("t", text, None).unwrap_or_else(|e| panic!("{e}"));
            let s = &c.tree.regions[0].stations[0];
            s.parameters.iter().map(|p| (p.name.clone(), p.unit.clone(), p.low, p.high)).collect::<Vec<_>>()
        };
        let factors = "[{ factor = \"w01001\" }, { factor = \"w01009\" }]";
        assert_eq!(
            params(&station("", factors)),
            vec![
                ("ph".into(), "pH".into(), Some(6.5), Some(8.5)),
                ("dissolved_oxygen".into(), "mg/L".into(), None, None)
            ]
        );
        assert_eq!(
            params(&station("site_type = \"source\"", factors)),
            vec![("ph".into(), "pH".into(), None, None), ("dissolved_oxygen".into(), "mg/L".into(), Some(5.0), None)]
        );
        check(&station("", "[{ factor = \"w99999\" }]"), &["station[0] (s1).factors[0] (w99999): unknown factor code"]);
        check(&station("site_type = \"river\"", factors), &["station[0] (s1).site_type: \"river\" is not a site type"]);
        check(
            &station("", "[{ factor = \"w01001\", low = 9, high = 8 }]"),
            &["factors[0] (w01001): low (9) must be below high (8)"],
        );
    }

    #[test]
    fn utc_offsets_parse() {
        assert_eq!(parse_utc_offset("+08:00"), Ok(480));
        assert_eq!(parse_utc_offset("-05:30"), Ok(-330));
        assert_eq!(parse_utc_offset("Z"), Ok(0));
        assert_eq!(
            parse_utc_offset("08:00").map_err(|e| e.to_string()),
            Err("\"08:00\" is not a UTC offset like \"+08:00\" or \"Z\"".to_owned())
        );
        assert!(parse_utc_offset("+15:00").is_err());
    }
}
