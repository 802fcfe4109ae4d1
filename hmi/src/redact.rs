//! What crews may not see (issue 8 §5): the field network's addresses. A crew member (role `crew`) reads
//! meters and watches devices from a phone in the field; the addresses of concentrators and gateways
//! (`10.20.1.11:502`), RS-485 line ids and serial ports, CJ/T 188 meter addresses and HJ 212 station MNs are
//! what an attacker with a lost phone would want, and a crew needs none of them. Everything the server sends a
//! crew member about devices and events passes through here, server side: `GET /api/devices`,
//! `/api/devices/{id}`, `/api/events` and every frame of `/ws`.
//!
//! - A device's `comm.path` keeps only its role (`primary`, `backup 1`) or protocol (`hj212`, `cjt188`).
//! - Error parameters lose `detail` (free text from the driver: addresses, OS errors).
//! - Event parameters `from` and `to` (path switches) are cut like paths.
//! - The free texts (a device's `comm` texts, its `valve` record, an event's `message` and its `error`,
//!   `reason` and `how` parameters) are scrubbed: a word that is an IP address or `host:port`, a serial
//!   device, or an id after `MN`, `rtu`, `tcp`, `line`, `serial`, `via`, `unit` or `address` becomes
//!   `[hidden]`. Names, ids and values are not scrubbed (a device named "Line 3" keeps its name).
//!
//! Meter ids, device ids and names, values and codes stay: they are the crew's work.

use serde_json::Value;

use actors::model::Role;

/// What replaces a hidden word.
pub const HIDDEN: &str = "[hidden]";

/// Whether `role` sees redacted views.
pub fn applies(role: Role) -> bool {
    role == Role::Crew
}

/// A path as a crew sees it: `primary tcp 10.0.0.5:502 unit 1` → `primary`; `backup 1 rtu rs485-1 unit 7` →
/// `backup 1`; `hj212 MN 8888…` → `hj212`; `cjt188 via gw meter 1234` → `cjt188`.
pub fn path(full: &str) -> String {
    let mut words = full.split_whitespace();
    match (words.next(), words.next()) {
        (Some("backup"), Some(n)) if n.bytes().all(|b| b.is_ascii_digit()) => format!("backup {n}"),
        (Some(first), _) if matches!(first, "primary" | "backup" | "hj212" | "cjt188" | "mqtt") => first.to_owned(),
        (Some(_), _) => HIDDEN.to_owned(),
        (None, _) => String::new(),
    }
}

/// Words after which the next word names a place in the field network.
const MARKERS: &[&str] = &["mn", "rtu", "line", "serial", "via", "address", "tcp", "unit"];

/// Whether a word (punctuation trimmed) is an address: an IPv4 address, `host:port`, a bracketed IPv6
/// address, or a serial device.
fn is_address(word: &str) -> bool {
    let w = word.trim_matches(|c: char| matches!(c, ',' | ';' | ':' | '(' | ')' | '"' | '\'' | '.'));
    if w.starts_with("/dev/") || w.starts_with("tty") || w.starts_with('[') {
        return !w.is_empty();
    }
    let host = match w.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            return true;
        }
        _ => w,
    };
    let parts: Vec<&str> = host.split('.').collect();
    parts.len() == 4 && parts.iter().all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Scrubs addresses and the words after path markers from free text.
pub fn text(s: &str) -> String {
    let mut out = Vec::new();
    let mut after_marker = false;
    let mut changed = false;
    for word in s.split(' ') {
        let hide = is_address(word)
            || (after_marker
                && !word.is_empty()
                && word.chars().any(|c| c.is_ascii_alphanumeric())
                && !is_plain_word(word));
        after_marker = MARKERS.contains(&word.to_ascii_lowercase().as_str());
        if hide {
            changed = true;
            out.push(HIDDEN);
        } else {
            out.push(word);
        }
    }
    if changed {
        out.join(" ")
    } else {
        s.to_owned()
    }
}

/// An ordinary English word after a marker ("failed to connect", "at once"): letters only, lower case. Ids and
/// addresses have digits, dashes, dots or capitals.
fn is_plain_word(word: &str) -> bool {
    word.chars().all(|c| c.is_ascii_lowercase() || matches!(c, ',' | ';' | ':' | '.'))
}

/// Scrubs every string in a JSON value.
fn scrub(v: &mut Value) {
    match v {
        Value::String(s) => {
            let clean = text(s);
            if clean != *s {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => map.values_mut().for_each(scrub),
        _ => {}
    }
}

/// Drops `detail` from error parameters given as an object, or as JSON text (in event params).
fn drop_detail(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("detail");
        }
        Value::String(s) => {
            if let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(s) {
                if map.remove("detail").is_some() {
                    *s = Value::Object(map).to_string();
                }
            }
        }
        _ => {}
    }
}

/// Redacts a device view (`DeviceView` as JSON) for a crew member.
pub fn device(d: &mut Value) {
    if let Some(comm) = d.get_mut("comm").and_then(Value::as_object_mut) {
        if let Some(Value::String(p)) = comm.get_mut("path") {
            *p = path(p);
        }
        if let Some(params) = comm.get_mut("last_error_params") {
            drop_detail(params);
        }
    }
    if let Some(comm) = d.get_mut("comm") {
        scrub(comm);
    }
    if let Some(valve) = d.get_mut("valve") {
        redact_error_params_deep(valve);
        scrub(valve);
    }
}

/// Drops `detail` from every `error_params` / `last_error_params` object or text below `v`.
fn redact_error_params_deep(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k.ends_with("error_params") {
                    drop_detail(child);
                } else {
                    redact_error_params_deep(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_error_params_deep),
        _ => {}
    }
}

/// Redacts an event (`EventView` or the live stream's event) for a crew member.
pub fn event(e: &mut Value) {
    if let Some(params) = e.get_mut("params").and_then(Value::as_object_mut) {
        for key in ["from", "to"] {
            if let Some(Value::String(p)) = params.get_mut(key) {
                *p = path(p);
            }
        }
    }
    redact_error_params_deep(e);
    if let Some(message) = e.get_mut("message") {
        scrub(message);
    }
    if let Some(params) = e.get_mut("params").and_then(Value::as_object_mut) {
        for key in ["error", "reason", "how", "error_params"] {
            if let Some(v) = params.get_mut(key) {
                scrub(v);
            }
        }
    }
}

/// Redacts one live-stream frame (JSON text) for a crew member: snapshot, delta and event frames.
pub fn frame(json: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(json) else { return json.to_owned() };
    match v.get("type").and_then(Value::as_str) {
        Some("snapshot") => {
            if let Some(devices) = v.get_mut("devices").and_then(Value::as_array_mut) {
                devices.iter_mut().for_each(device);
            }
        }
        Some("delta") => {
            if let Some(d) = v.get_mut("device") {
                device(d);
            }
        }
        Some("event") => {
            if let Some(e) = v.get_mut("event") {
                event(e);
            }
        }
        _ => return json.to_owned(),
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_keep_only_their_role_or_protocol() {
        assert_eq!(path("primary tcp 10.0.0.5:502 unit 1"), "primary");
        assert_eq!(path("backup 1 rtu rs485-1 unit 7"), "backup 1");
        assert_eq!(path("hj212 MN 88888880000001"), "hj212");
        assert_eq!(path("cjt188 via xc-gw meter 12345678901234"), "cjt188");
        assert_eq!(path("primary cjt188 line rs485-2 (/dev/ttyS1)"), "primary");
        assert_eq!(path("10.0.0.5:502"), HIDDEN);
    }

    #[test]
    fn texts_lose_addresses_and_the_names_after_path_words() {
        assert_eq!(text("cannot connect to 10.20.1.11:502: refused"), "cannot connect to [hidden] refused");
        assert_eq!(
            text("primary tcp 10.0.0.5:502 unit 1 failed; now on backup 1 rtu rs485-1 unit 7"),
            "primary tcp [hidden] unit [hidden] failed; now on backup 1 rtu [hidden] unit [hidden]"
        );
        assert_eq!(text("station MN 88888880000001 silent"), "station MN [hidden] silent");
        assert_eq!(text("no reply within 250ms"), "no reply within 250ms");
        assert_eq!(text("connection closed by device"), "connection closed by device");
        assert_eq!(text("gateway at 192.168.1.20"), "gateway at [hidden]");
        assert_eq!(text("open /dev/ttyUSB0 failed"), "open [hidden] failed");
    }

    #[test]
    fn device_views_and_events_are_redacted_but_keep_their_business_data() {
        let mut d = json!({
            "id": "east-c1", "name": "东村1号集中器",
            "comm": { "path": "primary tcp 10.0.0.5:502 unit 1", "last_error": "cannot connect to 10.0.0.5:502: refused",
                      "last_error_code": "connect_failed", "last_error_params": { "detail": "10.0.0.5:502 refused" } },
            "meters": [{ "id": "E1-001", "volume_m3": "12.345" }]
        });
        device(&mut d);
        let text = d.to_string();
        assert!(!text.contains("10.0.0.5"), "{text}");
        assert_eq!(d["comm"]["path"], "primary");
        assert_eq!(d["comm"]["last_error_params"], json!({}));
        assert_eq!((d["meters"][0]["id"].as_str(), d["name"].as_str()), (Some("E1-001"), Some("东村1号集中器")));
        let mut e = json!({ "kind": "path_switched", "message": "primary tcp 10.0.0.5:502 unit 1 failed; now on backup 1 tcp 10.0.9.5:502 unit 1",
                            "params": { "from": "primary tcp 10.0.0.5:502 unit 1", "to": "backup 1 tcp 10.0.9.5:502 unit 1",
                                        "error_params": "{\"detail\":\"10.0.0.5\",\"ms\":250}" } });
        event(&mut e);
        let text = e.to_string();
        assert!(!text.contains("10.0."), "{text}");
        assert_eq!((e["params"]["from"].as_str(), e["params"]["to"].as_str()), (Some("primary"), Some("backup 1")));
        assert_eq!(e["params"]["error_params"], "{\"ms\":250}");
    }
}
