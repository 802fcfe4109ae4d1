//! The OpenAPI 3.1 document of the HTTP API, served at `/api/openapi.json`. Hand-written: the API is small,
//! and a test checks that every path listed here refuses unauthenticated requests.

use serde_json::{json, Value};

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn op(summary: &str, roles: &str) -> Value {
    json!({
        "summary": summary,
        "description": format!("Roles: {roles}."),
        "responses": {
            "200": { "description": "OK" },
            "401": error_response("Not logged in"),
            "403": error_response("Role not allowed")
        }
    })
}

/// An admin's change to an account at `/api/users/{name}/…`.
fn account_change(summary: &str, body: Option<Value>, ok: &str) -> Value {
    let mut op = json!({
        "summary": summary,
        "description": "Roles: admin. Refusals are audited too. The last enabled admin cannot be disabled, deleted or demoted (409 last_admin).",
        "parameters": [ { "name": "name", "in": "path", "required": true, "schema": { "type": "string", "maxLength": 64 } } ],
        "responses": {
            ok: { "description": "Done (the account, or nothing for 204)" },
            "400": error_response("Bad body or a password that breaks the policy (code and params)"),
            "401": error_response("Not logged in"),
            "403": error_response("Not an admin (forbidden), or password_change_required"),
            "404": error_response("no_such_user"),
            "409": error_response("last_admin")
        }
    });
    if let Some(schema) = body {
        op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": schema } } });
    }
    op
}

/// The paths that require authentication, with their methods (used by tests too).
pub const AUTHENTICATED: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/assets/app.js"),
    ("GET", "/assets/app.css"),
    ("GET", "/assets/vendor/uplot.js"),
    ("GET", "/assets/vendor/uplot.css"),
    ("GET", "/ws"),
    ("GET", "/metrics"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/me"),
    ("POST", "/api/logout"),
    ("GET", "/api/devices"),
    ("GET", "/api/devices/{id}"),
    ("GET", "/api/readings"),
    ("GET", "/api/events"),
    ("POST", "/api/valves/{id}/command"),
    ("POST", "/api/valves/{id}/reset"),
    ("GET", "/api/users"),
    ("POST", "/api/users"),
    ("GET", "/api/audit"),
    ("GET", "/admin"),
    ("GET", "/assets/admin.js"),
    ("GET", "/account"),
    ("GET", "/assets/account.js"),
    ("GET", "/assets/accounts-common.js"),
    ("GET", "/assets/accounts.css"),
    ("POST", "/api/me/password"),
    ("POST", "/api/me/totp"),
    ("POST", "/api/me/totp/confirm"),
    ("DELETE", "/api/users/{name}/totp"),
    ("DELETE", "/api/users/{name}"),
    ("POST", "/api/users/{name}/password"),
    ("POST", "/api/users/{name}/disable"),
    ("POST", "/api/users/{name}/enable"),
    ("POST", "/api/users/{name}/role"),
    ("GET", "/api/sessions"),
    ("DELETE", "/api/sessions/{id}"),
    ("GET", "/audit"),
    ("GET", "/assets/audit.js"),
    ("GET", "/assets/audit.css"),
    ("GET", "/api/system/supervision"),
    ("GET", "/api/alarms"),
    ("GET", "/api/alarms/journal"),
    ("POST", "/api/alarms/{id}/ack"),
    ("POST", "/api/alarms/{id}/shelve"),
    ("POST", "/api/alarms/ack"),
    ("POST", "/api/alarms/{id}/unshelve"),
    ("POST", "/api/alarms/{id}/out-of-service"),
    ("POST", "/api/alarms/{id}/return-to-service"),
    ("GET", "/alarms"),
    ("GET", "/assets/alarms.js"),
    ("GET", "/assets/alarms.css"),
    ("GET", "/assets/banner.js"),
    ("GET", "/assets/banner.css"),
    ("GET", "/api/alarm-settings"),
    ("PUT", "/api/alarm-settings"),
    ("GET", "/alarm-settings"),
    ("GET", "/assets/alarm-settings.js"),
    ("GET", "/assets/alarm-settings.css"),
    ("GET", "/api/usage"),
    ("GET", "/api/zones"),
    ("GET", "/usage"),
    ("GET", "/zones"),
    ("GET", "/assets/usage.js"),
    ("GET", "/assets/usage.css"),
    // Trends and devices (issue 9 §4).
    ("GET", "/api/series"),
    ("GET", "/trends"),
    ("GET", "/devices"),
    ("GET", "/devices/{id}"),
    ("GET", "/assets/trends.js"),
    ("GET", "/assets/devices.js"),
    ("GET", "/assets/console-common.js"),
    ("GET", "/assets/console.css"),
    ("GET", "/api/alarms/kpi"),
    ("GET", "/alarm-kpi"),
    ("GET", "/assets/alarm-kpi.js"),
    ("GET", "/assets/alarm-kpi.css"),
];

pub fn document() -> Value {
    let view = "admin, operator, manager, crew";
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Waterworks API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Supervisory control and business server for water utilities. Every path except /healthz, /login and POST /api/login needs a session cookie (from POST /api/login) or HTTP Basic credentials. A POST, PUT, PATCH or DELETE that carries the session cookie must name this server in Origin (403 otherwise); Basic scripts need not. Bodies are at most 64 KiB (413)." },
        "security": [ { "session": [] }, { "basic": [] } ],
        "paths": {
            "/healthz": { "get": { "summary": "Liveness of store, writer and hub", "security": [], "responses": { "200": { "description": "healthy" }, "503": { "description": "unhealthy" } } } },
            "/api/login": { "post": {
                "summary": "Open a session", "security": [],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false, "required": ["username", "password"],
                    "properties": { "username": { "type": "string" }, "password": { "type": "string" },
                                   "totp": { "type": "string", "description": "the TOTP code, for users with a second factor" } } } } } },
                "responses": { "200": { "description": "Session cookie set; `user.must_change_password` when the password must be changed first" }, "400": error_response("Malformed body"),
                               "401": error_response("Invalid credentials; totp_required (send `totp`) or totp_invalid (wrong or reused code)"), "429": error_response("Too many failures of this user from this address; Retry-After"),
                               "503": error_response("Too many password checks at once; Retry-After") } } },
            "/api/logout": { "post": op("Close the session", "any") },
            "/api/me": { "get": op("The logged-in user", "any") },
            "/api/devices": { "get": op("Regions with their collection progress and comm status (R-A3), and the latest view of every device", view) },
            "/api/devices/{id}": { "get": {
                "summary": "The latest view of one device", "description": format!("Roles: {view}."),
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "responses": { "200": { "description": "OK" }, "401": error_response("Not logged in"), "404": error_response("No such device") } } },
            "/api/readings": { "get": {
                "summary": "Stored readings of a concentrator or meter, or samples of a logger",
                "description": format!("Roles: {view}. Times are milliseconds since the Unix epoch, UTC."),
                "parameters": [
                    { "name": "device", "in": "query", "required": true, "schema": { "type": "string" } },
                    { "name": "from", "in": "query", "schema": { "type": "integer" }, "description": "default: 24 h before `to`" },
                    { "name": "to", "in": "query", "schema": { "type": "integer" }, "description": "default: now" },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 10000 } } ],
                "responses": { "200": { "description": "OK" }, "400": error_response("Bad query"), "401": error_response("Not logged in"), "404": error_response("No such device") } } },
            "/api/events": { "get": {
                "summary": "The event journal: every committed event (comm lost and restored, path switches, limit crossings, restarts), newest first",
                "description": format!("Roles: {view}. Each event has `id` (its change-feed sequence number), `kind`, `device`, `region`, `ts` (ms since the epoch, UTC), `message` (English) and `params` (its fields, for rendering in a language)."),
                "parameters": [
                    { "name": "region", "in": "query", "schema": { "type": "string" } },
                    { "name": "device", "in": "query", "schema": { "type": "string" } },
                    { "name": "kind", "in": "query", "schema": { "type": "string" }, "description": "e.g. comm_lost, comm_restored, path_switched, limit_crossed, limit_cleared, actor_restart" },
                    { "name": "from", "in": "query", "schema": { "type": "integer" } },
                    { "name": "to", "in": "query", "schema": { "type": "integer" } },
                    { "name": "before", "in": "query", "schema": { "type": "integer" }, "description": "only events with a smaller id (paging back)" },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } } ],
                "responses": { "200": { "description": "OK" }, "400": error_response("Bad query"), "401": error_response("Not logged in") } } },
            "/api/valves/{id}/command": { "post": {
                "summary": "Open or close a remote valve and wait for read-back confirmation (audited)",
                "description": "Roles: admin, operator. At most one command per valve is pending: another one meanwhile is refused with 409, and a command that waited longer than the valve's command_expiry is refused with 409 (expired, nothing written). The response is the command record; `result` is confirmed, already_in_position or failed (with `reason`).",
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false, "required": ["action", "reason"],
                    "properties": { "action": { "enum": ["open", "close"] }, "reason": { "type": "string", "minLength": 1, "maxLength": 500 } } } } } },
                "responses": { "200": { "description": "The command record" }, "400": error_response("Bad body or no reason"),
                               "401": error_response("Not logged in"), "403": error_response("Role not allowed"), "404": error_response("No such valve"),
                               "409": error_response("Another command to the valve is pending, or this one expired in the queue") } } },
            "/api/valves/{id}/reset": { "post": {
                "summary": "Reset a valve's latched fault after checking it on site (audited)",
                "description": "Roles: admin, operator. Clears the fault a failed command latched; the state becomes what the valve last reported. The response is the reset record (requested_by, reason, at, cleared, state).",
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false, "required": ["reason"],
                    "properties": { "reason": { "type": "string", "minLength": 1, "maxLength": 500 } } } } } },
                "responses": { "200": { "description": "The reset record" }, "400": error_response("Bad body or no reason"),
                               "401": error_response("Not logged in"), "403": error_response("Role not allowed"), "404": error_response("No such valve"),
                               "409": error_response("Not in fault, or the valve reports a fault itself") } } },
            "/api/users": {
                "get": op("List accounts", "admin"),
                "post": {
                    "summary": "Create an account", "description": "Roles: admin.",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": {
                        "type": "object", "additionalProperties": false, "required": ["username", "password", "role"],
                        "properties": { "username": { "type": "string" }, "password": { "type": "string", "minLength": 10 },
                                        "role": { "enum": ["admin", "operator", "manager", "crew", "billing"] } } } } } },
                    "responses": { "201": { "description": "Created" }, "400": error_response("Bad body"), "401": error_response("Not logged in"),
                                   "403": error_response("Not an admin"), "409": error_response("Exists") } } },
            "/api/users/{name}": { "delete": account_change(
                "Delete an account; its sessions end, its audit entries stay (audited)", None, "204") },
            "/api/users/{name}/password": { "post": account_change(
                "Set a user's password; they must change it at their next login; every session of theirs ends (audited)",
                Some(json!({ "type": "object", "additionalProperties": false, "required": ["password"],
                             "properties": { "password": { "type": "string", "minLength": 10, "maxLength": 1024 } } })), "200") },
            "/api/users/{name}/disable": { "post": account_change(
                "Disable an account; every session of the user ends (audited)", None, "200") },
            "/api/users/{name}/enable": { "post": account_change("Enable an account (audited)", None, "200") },
            "/api/users/{name}/role": { "post": account_change(
                "Change an account's role; every session of the user ends (audited)",
                Some(json!({ "type": "object", "additionalProperties": false, "required": ["role"],
                             "properties": { "role": { "enum": ["admin", "operator", "manager", "crew", "billing"] } } })), "200") },
            "/api/me/password": { "post": {
                "summary": "Change one's own password with the current one (audited)",
                "description": "Roles: any (also while the password must be changed). Every session of the user ends; a fresh session is set in the cookie. Throttled like a login.",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false, "required": ["old_password", "new_password"],
                    "properties": { "old_password": { "type": "string" }, "new_password": { "type": "string", "minLength": 10, "maxLength": 1024 } } } } } },
                "responses": { "200": { "description": "Changed; new session cookie set" },
                               "400": error_response("Bad body, or the new password breaks the policy (code password_too_short, password_too_long, password_blank, password_repetitive, password_contains_username, password_common, password_unchanged; params)"),
                               "401": error_response("Not logged in"), "403": error_response("wrong_password"),
                               "429": error_response("Too many wrong passwords; Retry-After"), "503": error_response("Too many password checks at once") } } },
            "/api/me/totp": { "post": op("Start enrolling one's TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s). The answer holds the secret (base32) and an otpauth:// URI, shown this once; 403 totp_not_for_role, 409 totp_enrolled. Audited", "admin, operator") },
            "/api/me/totp/confirm": { "post": {
                "summary": "Confirm the TOTP enrolment with a code; from then on login needs `totp` (audited)",
                "description": "Roles: admin, operator.",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false, "required": ["code"],
                    "properties": { "code": { "type": "string", "pattern": "^[0-9]{6}$" } } } } } },
                "responses": { "200": { "description": "The account, with totp true" }, "400": error_response("totp_invalid"),
                               "401": error_response("Not logged in"), "409": error_response("totp_not_pending") } } },
            "/api/users/{name}/totp": { "delete": account_change("Remove a user's TOTP second factor, e.g. after a lost phone (audited)", None, "200") },
            "/api/sessions": { "get": op("Open sessions (id, username, created, last_seen, expires, client, current): one's own, or everyone's for an admin. Never the token", "any") },
            "/api/sessions/{id}": { "delete": {
                "summary": "End a session (audited)", "description": "Roles: any for one's own sessions; admin for anyone's.",
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } } ],
                "responses": { "204": { "description": "Ended" }, "401": error_response("Not logged in"),
                               "404": error_response("no_such_session (also for another user's session)") } } },
            "/admin": { "get": op("The user management page (HTML)", "admin") },
            "/account": { "get": op("The account page: change one's password, one's sessions (HTML)", "any") },
            "/api/audit": { "get": {
                "summary": "The audit journal (R-G4), newest first, filtered and paged",
                "description": "Roles: admin. Each entry: `seq` (the paging cursor), `ts` (ms since the epoch, UTC), `actor`, `action` (e.g. login, login.failure, login.throttled, login.refused, login.basic, access.denied, server.start, server.stop, server.crash_detected, config.changed, user.create, valve.close.requested, valve.close, valve.close.interrupted, valve.close.refused, valve.reset), `target`, `detail`, `ok`, `times` (how often it happened: repeats of the same failure within a minute are counted on one entry) and `last_ts`. Text filters match exactly, or a prefix when they end in `*`. A query looks at no more than 20,000 entries; when a page may have older entries, the `X-Next-Before` header gives the `before` of the next page.",
                "parameters": [
                    { "name": "actor", "in": "query", "schema": { "type": "string", "maxLength": 160 } },
                    { "name": "action", "in": "query", "schema": { "type": "string", "maxLength": 160 }, "description": "e.g. access.denied, or valve.* for a prefix" },
                    { "name": "target", "in": "query", "schema": { "type": "string", "maxLength": 160 } },
                    { "name": "ok", "in": "query", "schema": { "type": "boolean" } },
                    { "name": "from", "in": "query", "schema": { "type": "integer" }, "description": "ms since the epoch, inclusive" },
                    { "name": "to", "in": "query", "schema": { "type": "integer" }, "description": "ms since the epoch, inclusive" },
                    { "name": "before", "in": "query", "schema": { "type": "integer", "minimum": 1 }, "description": "only entries with a smaller seq (the X-Next-Before of the previous page)" },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 500, "default": 100 } } ],
                "responses": { "200": { "description": "The entries, newest first; header X-Next-Before when there may be older ones" },
                               "400": error_response("Unknown parameter or bad value (named in the message)"),
                               "401": error_response("Not logged in"), "403": error_response("Not an admin") } } },
            "/audit": { "get": op("The audit journal page (HTML)", "admin") },
            "/api/system/supervision": { "get": op("The supervision tree and restart counts", "admin, operator") },
            "/api/alarms": { "get": op("Standing alarms (every alarm not normal: active, unacknowledged, shelved, suppressed by design, out of service), most urgent first; each with `key` {class, device, detail}, `region`, `priority` (low, medium, high, urgent), `state`, `active`, `since`, `raised_at`, `value`, `limit`, `shelved_until`, `by`, `comment`. An alarm's id is `class~device~detail`", view) },
            "/api/alarm-settings": {
                "get": op("The alarm settings in force (issue 9 §1): `class` (per alarm class `enabled`, `priority`), `site` (per site type plant_outlet, network_end, source) and `device` (per device id) overrides: `class`, `deadband_percent`, `on_delay_s`, `off_delay_s`, `high_high` and `low_low` (absolute, per parameter), `high_high_factor`, `low_low_factor`. Empty tables are left out", view),
                "put": {
                    "summary": "Replace the alarm settings whole; in force at once, kept across restarts (audited old -> new)",
                    "description": "Roles: admin. The body has the shape GET returns; unknown keys, classes, site types, priorities and devices are refused, values are checked like the configuration's [alarms] (deadband 0-50 %, delays at most 86400 s, high_high_factor above 1, low_low_factor below 1).",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "additionalProperties": false, "properties": { "class": { "type": "object" }, "site": { "type": "object" }, "device": { "type": "object" } } } } } },
                    "responses": { "200": { "description": "The settings now in force" }, "400": error_response("Bad settings: every problem with its key"), "401": error_response("Not logged in"), "403": error_response("Not an admin") } } },
            "/api/alarms/journal": { "get": {
                "summary": "The alarm journal: every alarm transition (who, when, what, from, to, value, limit, comment), newest first",
                "description": format!("Roles: {view}. Each record has `id` (for paging with `before`)."),
                "parameters": [
                    { "name": "from", "in": "query", "schema": { "type": "integer" }, "description": "ms since the epoch, UTC" },
                    { "name": "to", "in": "query", "schema": { "type": "integer" } },
                    { "name": "device", "in": "query", "schema": { "type": "string" } },
                    { "name": "region", "in": "query", "schema": { "type": "string" } },
                    { "name": "class", "in": "query", "schema": { "enum": ["quality_high_high", "quality_high", "quality_low", "quality_low_low", "sensor_untrusted", "comm_lost", "meter_comm_lost", "meter_tamper", "meter_reverse_flow", "meter_fault", "meter_battery_low", "meter_valve_fault", "volume_fell", "volume_rollover", "volume_suspected_swap", "valve_command_failed", "valve_uncommanded", "abnormal_usage", "night_flow", "zone_leakage"] } },
                    { "name": "state", "in": "query", "schema": { "enum": ["normal", "unacknowledged", "acknowledged", "returned_unacknowledged", "shelved", "suppressed_by_design", "out_of_service"] }, "description": "the state the transition led to" },
                    { "name": "priority", "in": "query", "schema": { "enum": ["low", "medium", "high", "urgent"] } },
                    { "name": "before", "in": "query", "schema": { "type": "integer" }, "description": "only records with a smaller id (paging back)" },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } } ],
                "responses": { "200": { "description": "OK" }, "400": error_response("Bad query"), "401": error_response("Not logged in") } } },
            "/api/alarms/kpi": { "get": {
                "summary": "Alarm KPIs of a window ending now (ISA-18.2, issue 9 §3): annunciation rate per operator position per 10 minutes and per hour (average, peak, floods of 10 or more in 10 minutes, `per_10min` counts from `buckets_from`), standing, unacknowledged, stale (standing over 24 h), shelved, suppressed, out-of-service counts, chattering alarms (3 or more activations within a minute) and the 10 most frequent, with the `targets`",
                "description": format!("Roles: {view}. Positions come from `[alarm_positions]` (default one, `control_room`)."),
                "parameters": [ { "name": "window", "in": "query", "schema": { "type": "string", "pattern": "^[0-9]{1,6}[mhd]$" }, "description": "10m to 31d, default 24h" } ],
                "responses": { "200": { "description": "OK" }, "400": error_response("Bad window"), "401": error_response("Not logged in") } } },
            "/alarm-kpi": { "get": op("The alarm KPI page (HTML)", view) },
            "/api/alarms/{id}/ack": { "post": {
                "summary": "Acknowledge an alarm, with an optional comment (audited)",
                "description": "Roles: admin, operator. The response is the journal record of the transition.",
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" }, "description": "class~device~detail" } ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false,
                    "properties": { "comment": { "type": "string", "maxLength": 500 } } } } } },
                "responses": { "200": { "description": "The journal record" }, "400": error_response("Bad body"),
                               "401": error_response("Not logged in"), "403": error_response("Role not allowed"), "404": error_response("No such standing alarm"),
                               "409": error_response("The alarm's state does not allow it (e.g. already acknowledged)") } } },
            "/api/alarms/{id}/shelve": { "post": {
                "summary": "Shelve an alarm for a while, with an optional reason (audited); it comes back by itself at the end, re-alarming if its condition still holds",
                "description": "Roles: admin, operator. Operators shelve for at most 480 minutes, admins for at most 7 days. The response is the journal record.",
                "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "string" }, "description": "class~device~detail" } ],
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false, "required": ["minutes"],
                    "properties": { "minutes": { "type": "integer", "minimum": 1 }, "reason": { "type": "string", "maxLength": 500 } } } } } },
                "responses": { "200": { "description": "The journal record" }, "400": error_response("Bad body, or longer than the role may shelve"),
                               "401": error_response("Not logged in"), "403": error_response("Role not allowed"), "404": error_response("No such standing alarm"),
                               "409": error_response("The alarm's state does not allow it (already shelved, suppressed, out of service)") } } },
            "/api/alarms/ack": { "post": {
                "summary": "Acknowledge several alarms with one optional comment (each audited with its outcome)",
                "description": "Roles: admin, operator (403, audited, for any other). At most 200 ids. 200 with `results`, one per id in order: `{id, status: 200, record}` or `{id, status, code, error}` (404 not standing, 409 state does not allow it).",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false, "required": ["ids"],
                    "properties": { "ids": { "type": "array", "items": { "type": "string" }, "minItems": 1, "maxItems": 200 },
                                    "comment": { "type": "string", "maxLength": 500 } } } } } },
                "responses": { "200": { "description": "One result per id" }, "400": error_response("Bad body, no ids or more than 200"),
                               "401": error_response("Not logged in"), "403": error_response("Role not allowed") } } },
            "/api/alarms/{id}/unshelve": { "post": op("Take a shelved alarm off its shelf early (audited); roles admin, operator; 409 if not shelved", "admin, operator") },
            "/api/alarms/{id}/out-of-service": { "post": op("Take an alarm out of service with a required `reason` (body `{\"reason\": …}`, audited)", "admin") },
            "/api/alarms/{id}/return-to-service": { "post": op("Return an alarm to service (audited)", "admin") },
            "/alarms": { "get": op("The alarm summary page (HTML): standing alarms with filter, sort and actions, and the journal", view) },
            "/api/usage": { "get": {
                "summary": "Usage of a meter or a region per hour, day or month (local time), with the same period last year beside each bucket (R-B1)",
                "description": format!("Roles: {view}. Each row: `start`, `end`, `m3` (three decimals), `coverage` (0–1: the share of the bucket with readings on both sides; a gap is not zero use), `complete`, and `last_year` with the same fields. Readings flagged needs_review are skipped. At most 800 buckets, and for a region at most 200000 meters × buckets."),
                "parameters": [
                    { "name": "meter", "in": "query", "schema": { "type": "string", "maxLength": 64 }, "description": "a meter id (or region)" },
                    { "name": "region", "in": "query", "schema": { "type": "string", "maxLength": 64 }, "description": "a region id (or meter)" },
                    { "name": "bucket", "in": "query", "schema": { "enum": ["hour", "day", "month"], "default": "day" } },
                    { "name": "from", "in": "query", "required": true, "schema": { "type": "integer" }, "description": "ms since the epoch; the bucket holding it is the first" },
                    { "name": "to", "in": "query", "required": true, "schema": { "type": "integer" }, "description": "ms since the epoch; the bucket holding it is the last" } ],
                "responses": { "200": { "description": "OK" }, "400": error_response("Bad query, or too many buckets"),
                               "401": error_response("Not logged in"), "404": error_response("No such meter or region") } } },
            "/api/zones": { "get": {
                "summary": "Every zone (district metered area) with its leakage rate per period, latest first (R-B5)",
                "description": format!("Roles: {view}. Each zone: `id`, `name`, `region`, `masters`, `members` (count), `threshold` (0–1), `period` (day, month), `so_far` (the period under way from each meter's first and latest reading: {{`start`, `at`, `master_litres`, `members_litres`, `rate`, `missing_meters`}}; an estimate, never alarmed), `periods`: [{{`start`, `end`, `master_litres`, `members_litres`, `rate` ((master − members) / master, or null), `complete`, `incomplete_meters`, `threshold`}}]."),
                "parameters": [ { "name": "periods", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 400, "default": 60 } } ],
                "responses": { "200": { "description": "OK" }, "400": error_response("Bad query"), "401": error_response("Not logged in") } } },
            "/usage": { "get": op("The usage page (HTML): usage per meter or region with last year beside it", view) },
            "/zones": { "get": op("The zones page (HTML): leakage rate per zone and period against its threshold", view) },
            "/api/series": { "get": {
                "summary": "Trend series: several pens over one range, each cut into at most `points` buckets keeping the minimum, maximum and last value (with their times), so a short dip is never averaged away",
                "description": format!("Roles: {view}. The answer has `from`, `to`, `bucket_ms` and `pens`: per pen `pen`, `kind` (volume, rate, param), `device`, `device_name`, `name`, `unit`, `limits` (high_high, high, low, low_low as the alarm engine applies them), the non-empty buckets as parallel arrays `t` (bucket start), `min`, `min_ts`, `max`, `max_ts`, `last`, `last_ts`, `n`, and `rows` and `truncated` (a pen stops after 1,000,000 stored rows). Bad input is a 400 naming it, counted in `/metrics`."),
                "parameters": [
                    { "name": "pen", "in": "query", "required": true, "schema": { "type": "array", "maxItems": 8, "items": { "type": "string", "maxLength": 200 } }, "style": "form", "explode": true,
                      "description": "repeated: meter:ID (volume, m³), rate:ID (usage rate between readings, m³/h) or param:DEVICE/PARAM (a logger's or station's parameter)" },
                    { "name": "from", "in": "query", "schema": { "type": "integer" }, "description": "ms since the epoch, UTC; default 24 h before `to`" },
                    { "name": "to", "in": "query", "schema": { "type": "integer" }, "description": "ms since the epoch, UTC; default now; at most 400 days after `from`" },
                    { "name": "points", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 2000, "default": 600 }, "description": "buckets per pen (at least 10 are used)" } ],
                "responses": { "200": { "description": "OK" }, "400": error_response("Bad query: no pen, more than 8, an unknown pen, a bad range"), "401": error_response("Not logged in") } } },
            "/trends": { "get": op("The trends page (HTML); pens in the URL: /trends?pen=param:east-wq/free_chlorine", view) },
            "/devices": { "get": op("The device list (HTML): search, only abnormal, kind, region, sort; ?region=ID&abnormal=1 filter it", view) },
            "/devices/{id}": { "get": op("One device's page (HTML): its values, meters, comm history, standing alarms and trend", view) },
            "/api/openapi.json": { "get": op("This document", "any") },
            "/metrics": { "get": op("Prometheus metrics", "admin, operator") },
            "/ws": { "get": op("Live stream (WebSocket): snapshot (devices and standing alarms), then deltas, events and alarm transitions (`{type: alarm, seq, id, journal, alarm|null, record}`, after their commit, in journal order) with rising seq, and `{type: heartbeat, seq, every_ms}` every live.heartbeat; ?since=SEQ&epoch=E resumes", view) }
        },
        "components": {
            "securitySchemes": {
                "session": { "type": "apiKey", "in": "cookie", "name": crate::cookie::COOKIE, "description": "`__Host-session` when the server runs with TLS or `secure_cookies`" },
                "basic": { "type": "http", "scheme": "basic" }
            },
            "schemas": { "Error": { "type": "object", "required": ["error", "code"],
                                    "properties": { "error": { "type": "string" }, "code": { "type": "string" },
                                                    "params": { "type": "object", "description": "values for the code's text (e.g. min, existing)" } } } }
        }
    })
}

#[cfg(test)]
mod tests {
    use actors::model::AlarmClass;

    /// The journal's documented `class` values are the engine's classes, all of them (a new class must be
    /// documented where clients look).
    #[test]
    fn the_journal_documents_every_alarm_class() {
        let doc = super::document();
        let params = doc["paths"]["/api/alarms/journal"]["get"]["parameters"].as_array().expect("parameters");
        let class = params.iter().find(|p| p["name"] == "class").expect("a class parameter");
        let documented: Vec<&str> =
            class["schema"]["enum"].as_array().expect("an enum").iter().filter_map(|v| v.as_str()).collect();
        let engine: Vec<&str> = AlarmClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(documented, engine);
    }
}
