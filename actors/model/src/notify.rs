//! Notifications as the outbox holds them (issue 10 §1): what is sent, to whom, through which kind of channel,
//! and why, with the key that makes it one notification however often it is enqueued.
//!
//! A notification is committed to the outbox before anything is sent (at least once); its [`Notification::key`]
//! is the outbox's primary key, so enqueuing the same origin for the same person through the same channel a
//! second time (a feed batch handled again after a crash, an escalation timer re-armed at start) adds nothing.
//!
//! What it deliberately does not do: decide who is told (rosters, escalation), render templates, or send; it
//! is the shape every part of the notifier agrees on. Pure: time is passed in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::alarm::Priority;
use crate::reading::Timestamp;

/// How a notification travels. SMS goes through a modem or an HTTP gateway (the dispatcher's route decides,
/// with fallback); the robots post to a group's webhook, whose name is the notification's `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    /// A WeChat Work (企业微信) group robot.
    Wecom,
    /// A DingTalk (钉钉) group robot.
    Dingtalk,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Email, Channel::Sms, Channel::Wecom, Channel::Dingtalk];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Wecom => "wecom",
            Channel::Dingtalk => "dingtalk",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Why a notification exists: the first part of its dedupe key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// An alarm's activation: `alarm` is the alarm id (`AlarmKey::id`), `activation` the journal number of the
    /// record that activated it (so a later activation of the same alarm is a new notification).
    Alarm { alarm: String, activation: u64 },
    /// An escalation of an unacknowledged alarm activation to level `level` (1 = the first step past the duty
    /// operator).
    Escalation { alarm: String, activation: u64, level: u8 },
    /// One summary in place of a flood of alarm notifications, for the window starting at `window_start`.
    FloodSummary { window_start: Timestamp },
    /// A work order's step (`event`: `dispatched`, `sla_contact_breached`, …).
    WorkOrder { order: String, event: String },
    /// An incident (E2): opened, each hourly progress report (`update` counts them), closed.
    Incident { incident: String, update: u32 },
    /// A test message an administrator asked for.
    Test { by: String, at: Timestamp },
}

impl Origin {
    /// The origin part of the dedupe key.
    pub fn key(&self) -> String {
        match self {
            Origin::Alarm { alarm, activation } => format!("alarm/{alarm}/{activation}"),
            Origin::Escalation { alarm, activation, level } => format!("escalation/{alarm}/{activation}/{level}"),
            Origin::FloodSummary { window_start } => format!("flood/{}", window_start.0),
            Origin::WorkOrder { order, event } => format!("work_order/{order}/{event}"),
            Origin::Incident { incident, update } => format!("incident/{incident}/{update}"),
            Origin::Test { by, at } => format!("test/{by}/{}", at.0),
        }
    }
}

/// A template reference for channels that only send pre-approved templates (the cloud SMS gateways): the
/// template's name in the configuration and its parameters. The rendered `text` is sent where free text goes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRef {
    pub name: String,
    pub params: BTreeMap<String, String>,
}

/// One message to one recipient through one kind of channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub origin: Origin,
    pub channel: Channel,
    /// The person told (their id in the configuration), or the robot's name for group robots.
    pub person: String,
    /// Where it goes: an e-mail address, a phone number (E.164, `+86…`), or the robot's configured name.
    pub to: String,
    /// The mail subject; the first line of an SMS or robot message may repeat it.
    pub subject: String,
    /// The plain text (SMS, the mail's text part, the robot's markdown source).
    pub text: String,
    /// The mail's HTML part, where the template has one.
    pub html: Option<String>,
    pub template: Option<TemplateRef>,
    /// The alarm's priority, where it has one (quiet hours and rate limits are by priority).
    pub priority: Option<Priority>,
    pub created: Timestamp,
}

impl Notification {
    /// The dedupe key, and the outbox's primary key: origin, person and channel.
    pub fn key(&self) -> String {
        format!("{}|{}|{}", self.origin.key(), self.person, self.channel.as_str())
    }
}

/// A person the notifier may tell (`[[person]]`): duty operators, shift leads, managers, crew members, the
/// technical team. Rosters, escalation chains, crews and incident teams name people by `id`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub id: String,
    pub name: String,
    /// Mobile number, E.164 (`+8613800138000`; an 11-digit Chinese mobile number is written as such).
    pub phone: Option<String>,
    pub email: Option<String>,
    /// Their login, if they have one (a crew member's phone page, acknowledging from the HMI).
    pub user: Option<String>,
    /// Groups they belong to (`technical`, `crew-dongcun`, `managers`), as rosters and incidents name them.
    pub teams: Vec<String>,
}

/// A phone number in E.164 form: `+` and 8–15 digits; an 11-digit Chinese mobile number (`1…`) gains `+86`.
/// `None` if it is neither.
pub fn normalise_phone(raw: &str) -> Option<String> {
    let s: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits = s.strip_prefix('+').unwrap_or(&s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !s.starts_with('+') {
        return (digits.len() == 11 && digits.starts_with('1')).then(|| format!("+86{digits}"));
    }
    (8..=15).contains(&digits.len()).then(|| s.clone())
}

/// A text message received by a modem (issue 10 §2: an acknowledgement by reply carries the alarm's short code).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundSms {
    /// The sender's number as the network gave it (normalised to `+86…` where it had a country code).
    pub from: String,
    pub text: String,
    pub received: Timestamp,
    /// The modem's configured name.
    pub via: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(origin: Origin, person: &str, channel: Channel) -> Notification {
        Notification {
            origin,
            channel,
            person: person.into(),
            to: "+8613800138000".into(),
            subject: "s".into(),
            text: "t".into(),
            html: None,
            template: None,
            priority: None,
            created: Timestamp(1),
        }
    }

    #[test]
    fn the_key_tells_activations_people_and_channels_apart_and_nothing_else() {
        let a1 = Origin::Alarm { alarm: "quality_low~L1~cl".into(), activation: 7 };
        let a2 = Origin::Alarm { alarm: "quality_low~L1~cl".into(), activation: 9 };
        let base = note(a1.clone(), "wang", Channel::Sms);
        let mut later = base.clone();
        later.created = Timestamp(99);
        later.text = "other words".into();
        assert_eq!(base.key(), later.key(), "the same origin, person and channel is one notification");
        assert_ne!(base.key(), note(a2, "wang", Channel::Sms).key());
        assert_ne!(base.key(), note(a1.clone(), "li", Channel::Sms).key());
        assert_ne!(base.key(), note(a1, "wang", Channel::Email).key());
    }

    #[test]
    fn phone_numbers_are_normalised_to_e164_or_refused() {
        assert_eq!(normalise_phone("13800138000").as_deref(), Some("+8613800138000"));
        assert_eq!(normalise_phone("+86 138-0013-8000").as_deref(), Some("+8613800138000"));
        assert_eq!(normalise_phone("+4420794600").as_deref(), Some("+4420794600"));
        for bad in ["", "+", "23800138000", "1380013800", "+86abc", "+1234567", "+1234567890123456"] {
            assert_eq!(normalise_phone(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn channel_names_round_trip() {
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        assert_eq!(Channel::parse("fax"), None);
    }
}
