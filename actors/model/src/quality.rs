//! Water-quality domain tables: default limits by site type (GB 5749-2022, and GB 3838-2002 for source
//! water), default sampling cycles per parameter (R-A2), and the names and units of HJ 212 factor codes.
//!
//! These are facts of the domain, not of the configuration file: configuration takes them as defaults that a
//! site overrides (`low`/`high`/`cycle`), and the alarm engine to come will read the same table. Parameters are
//! named as device models name them (`free_chlorine`, `ph`, …); a name the table does not know has no default
//! limits (`None`) and the general default cycle. This module deliberately does not decide whether a value
//! is out of range for a reading (that is the sample's flags and, later, the alarm rules).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where a water-quality measurement is taken: it decides which limits apply by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteType {
    /// 出厂水: water leaving the plant for the network (GB 5749-2022 Tables 1 and 2, plant-outlet residual).
    #[default]
    PlantOutlet,
    /// 末梢水: water at the user's tap or the network end (GB 5749-2022 Tables 1 and 2, tap residual).
    NetworkEnd,
    /// 水源: raw source water before treatment (GB 3838-2002 class III, not GB 5749).
    Source,
}

impl SiteType {
    /// Every site type, in the order they are documented.
    pub const ALL: [SiteType; 3] = [SiteType::PlantOutlet, SiteType::NetworkEnd, SiteType::Source];

    /// The configuration spelling: `plant_outlet`, `network_end`, `source`.
    pub fn as_str(self) -> &'static str {
        match self {
            SiteType::PlantOutlet => "plant_outlet",
            SiteType::NetworkEnd => "network_end",
            SiteType::Source => "source",
        }
    }
}

impl fmt::Display for SiteType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A site type spelled in a way this model does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a site type; expected \"plant_outlet\" (出厂水), \"network_end\" (末梢水) or \"source\" (水源)")]
pub struct UnknownSiteType(pub String);

impl FromStr for SiteType {
    type Err = UnknownSiteType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SiteType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| UnknownSiteType(s.to_owned()))
    }
}

/// The acceptable range of a parameter: a value below `low` or above `high` is out of limits. A side that
/// the standard does not bound is `None`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub low: Option<f64>,
    pub high: Option<f64>,
}

const fn at_most(high: f64) -> Limits {
    Limits { low: None, high: Some(high) }
}

const fn at_least(low: f64) -> Limits {
    Limits { low: Some(low), high: None }
}

const fn between(low: f64, high: f64) -> Limits {
    Limits { low: Some(low), high: Some(high) }
}

/// GB 5749-2022 Table 1 (常规指标) limits that hold for drinking water wherever it is sampled, plant outlet
/// or tap (DOMAIN.md §1.2; third-party transcription of the official scan).
fn gb5749_table1(parameter: &str) -> Option<Limits> {
    Some(match parameter {
        "turbidity" => at_most(1.0),
        "ph" => between(6.5, 8.5),
        "ammonia" => at_most(0.5),
        "tds" => at_most(1000.0),
        "iron" => at_most(0.3),
        "manganese" => at_most(0.1),
        "lead" => at_most(0.01),
        "cadmium" => at_most(0.005),
        "arsenic" => at_most(0.01),
        "chromium6" => at_most(0.05),
        "mercury" => at_most(0.001),
        "permanganate_index" => at_most(3.0),
        _ => return None,
    })
}

/// The default limits of `parameter` at a site of type `site`, or `None` when the standard gives none.
///
/// - Plant outlet (出厂水): GB 5749-2022 Table 1, and Table 2 free chlorine ≤ 2 mg/L with a residual of at
///   least 0.3 mg/L (DOMAIN.md §1.2).
/// - Network end (末梢水): the same Table 1 limits; Table 2 free chlorine ≤ 2 mg/L with a residual of at least
///   0.05 mg/L.
/// - Source (水源): GB 5749 does not apply to raw water; GB 3838-2002 class III surface water (as DOMAIN.md
///   §1.2 quotes it): dissolved oxygen ≥ 5 mg/L, ammonia ≤ 1.0 mg/L, permanganate index ≤ 6 mg/L. Other
///   parameters have no default at a source.
///
/// Dissolved oxygen has no GB 5749-2022 limit, so it has none at the plant outlet or network end.
pub fn default_limits(site: SiteType, parameter: &str) -> Option<Limits> {
    match (site, parameter) {
        (SiteType::PlantOutlet, "free_chlorine") => Some(between(0.3, 2.0)),
        (SiteType::NetworkEnd, "free_chlorine") => Some(between(0.05, 2.0)),
        (SiteType::PlantOutlet | SiteType::NetworkEnd, p) => gb5749_table1(p),
        (SiteType::Source, "dissolved_oxygen") => Some(at_least(5.0)),
        (SiteType::Source, "ammonia") => Some(at_most(1.0)),
        (SiteType::Source, "permanganate_index") => Some(at_most(6.0)),
        (SiteType::Source, _) => None,
    }
}

/// The default sampling cycle of `parameter` (R-A2): pH and dissolved oxygen every 2 h, ammonia and heavy-metal
/// ions every 4 h; free chlorine, turbidity and everything else every 15 min (free chlorine and turbidity have
/// their own configured cycles per R-A2; 15 min is their default).
pub fn default_cycle(parameter: &str) -> Duration {
    match parameter {
        "ph" | "dissolved_oxygen" => Duration::from_secs(2 * 3600),
        "ammonia" | "lead" | "cadmium" | "arsenic" | "mercury" | "chromium6" | "iron" | "manganese" => {
            Duration::from_secs(4 * 3600)
        }
        _ => Duration::from_secs(15 * 60),
    }
}

/// What an HJ 212 water factor code measures: the parameter name used everywhere else, and its unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hj212Factor {
    pub code: &'static str,
    pub parameter: &'static str,
    pub unit: &'static str,
}

/// Common HJ 212-2017 water factor codes (DOMAIN.md §2.7, codes seen in open-source implementations;
/// [UNVERIFIED] against the standard's annex there). Stations name others with `name` and `unit`.
pub const HJ212_FACTORS: &[Hj212Factor] = &[
    Hj212Factor { code: "w01001", parameter: "ph", unit: "pH" },
    Hj212Factor { code: "w01003", parameter: "turbidity", unit: "NTU" },
    Hj212Factor { code: "w01009", parameter: "dissolved_oxygen", unit: "mg/L" },
    Hj212Factor { code: "w01010", parameter: "temperature", unit: "°C" },
    Hj212Factor { code: "w01014", parameter: "conductivity", unit: "µS/cm" },
    Hj212Factor { code: "w01019", parameter: "permanganate_index", unit: "mg/L" },
    Hj212Factor { code: "w21003", parameter: "ammonia", unit: "mg/L" },
    Hj212Factor { code: "w20120", parameter: "lead", unit: "mg/L" },
    Hj212Factor { code: "w20115", parameter: "cadmium", unit: "mg/L" },
    Hj212Factor { code: "w20119", parameter: "arsenic", unit: "mg/L" },
    Hj212Factor { code: "w20111", parameter: "mercury", unit: "mg/L" },
    Hj212Factor { code: "w20117", parameter: "chromium6", unit: "mg/L" },
    Hj212Factor { code: "w20124", parameter: "manganese", unit: "mg/L" },
    Hj212Factor { code: "w20125", parameter: "iron", unit: "mg/L" },
];

/// The factor an HJ 212 code names, if it is a common one.
pub fn hj212_factor(code: &str) -> Option<&'static Hj212Factor> {
    HJ212_FACTORS.iter().find(|f| f.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plant_outlet_limits_are_gb5749_2022_tables_1_and_2() {
        let l = |p| default_limits(SiteType::PlantOutlet, p);
        assert_eq!(l("free_chlorine"), Some(between(0.3, 2.0)));
        assert_eq!(l("turbidity"), Some(at_most(1.0)));
        assert_eq!(l("ph"), Some(between(6.5, 8.5)));
        assert_eq!(l("ammonia"), Some(at_most(0.5)));
        assert_eq!(l("lead"), Some(at_most(0.01)));
        assert_eq!(l("cadmium"), Some(at_most(0.005)));
        assert_eq!(l("arsenic"), Some(at_most(0.01)));
        assert_eq!(l("mercury"), Some(at_most(0.001)));
        assert_eq!(l("chromium6"), Some(at_most(0.05)));
        assert_eq!(l("iron"), Some(at_most(0.3)));
        assert_eq!(l("manganese"), Some(at_most(0.1)));
        // GB 5749-2022 sets no dissolved-oxygen limit; unknown parameters have none either.
        assert_eq!(l("dissolved_oxygen"), None);
        assert_eq!(l("temperature"), None);
    }

    #[test]
    fn the_network_end_needs_only_the_tap_residual_of_free_chlorine() {
        assert_eq!(default_limits(SiteType::NetworkEnd, "free_chlorine"), Some(between(0.05, 2.0)));
        // Table 1 holds at the tap as at the plant.
        for p in ["turbidity", "ph", "ammonia", "lead", "manganese", "tds"] {
            assert_eq!(default_limits(SiteType::NetworkEnd, p), default_limits(SiteType::PlantOutlet, p), "{p}");
        }
    }

    #[test]
    fn source_water_follows_gb3838_class_iii_not_gb5749() {
        let l = |p| default_limits(SiteType::Source, p);
        assert_eq!(l("dissolved_oxygen"), Some(at_least(5.0)));
        assert_eq!(l("ammonia"), Some(at_most(1.0)));
        assert_eq!(l("permanganate_index"), Some(at_most(6.0)));
        // Raw water is not disinfected and its turbidity is treated away: no drinking-water limit applies.
        assert_eq!(l("free_chlorine"), None);
        assert_eq!(l("turbidity"), None);
    }

    #[test]
    fn default_cycles_are_r_a2() {
        assert_eq!(default_cycle("ph"), Duration::from_secs(7200));
        assert_eq!(default_cycle("dissolved_oxygen"), Duration::from_secs(7200));
        assert_eq!(default_cycle("ammonia"), Duration::from_secs(4 * 3600));
        assert_eq!(default_cycle("mercury"), Duration::from_secs(4 * 3600));
        assert_eq!(default_cycle("free_chlorine"), Duration::from_secs(900));
        assert_eq!(default_cycle("turbidity"), Duration::from_secs(900));
        assert_eq!(default_cycle("anything"), Duration::from_secs(900));
    }

    #[test]
    fn site_types_spell_as_configured() {
        for t in SiteType::ALL {
            assert_eq!(t.as_str().parse::<SiteType>(), Ok(t));
        }
        assert_eq!(SiteType::default(), SiteType::PlantOutlet);
        let e = "tap".parse::<SiteType>().unwrap_err().to_string();
        assert!(e.contains("\"tap\" is not a site type") && e.contains("network_end"), "{e}");
    }

    #[test]
    fn hj212_codes_name_parameters_and_units() {
        let f = hj212_factor("w01001").unwrap();
        assert_eq!((f.parameter, f.unit), ("ph", "pH"));
        assert_eq!(hj212_factor("w21003").map(|f| f.parameter), Some("ammonia"));
        assert_eq!(hj212_factor("w99999"), None);
        let mut codes: Vec<_> = HJ212_FACTORS.iter().map(|f| f.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), HJ212_FACTORS.len(), "each code once");
    }
}
