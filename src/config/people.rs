//! `[[person]]` (issue 10 §2): the people the notifier may tell, named by id in rosters, escalation chains,
//! crews and incident teams.
//!
//! ```toml
//! [[person]]
//! id = "wang"
//! name = "王师傅"
//! phone = "13800138000"        # E.164, or an 11-digit Chinese mobile number (+86 is added)
//! email = "wang@example.cn"
//! user = "wang"                # their login, if any
//! teams = ["technical", "crew-dongcun"]
//! ```
//!
//! Checked: id syntax and uniqueness, the phone number's form, the e-mail's form (one `@`, no spaces, at most
//! 254 characters), team names as ids, at least one way to reach the person.

use std::collections::HashSet;

use actors::model::notify::{normalise_phone, Person};
use serde::Deserialize;

use super::problems::Check;

/// One `[[person]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPerson {
    id: String,
    name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    user: Option<String>,
    #[serde(default)]
    teams: Vec<String>,
}

/// Resolves every `[[person]]`.
pub(super) fn resolve_people(check: &mut Check, raw: &[RawPerson]) -> Vec<Person> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let key = format!("person[{i}]");
        check.id(&format!("{key}.id"), &p.id);
        if !seen.insert(p.id.as_str()) {
            check.add(format!("{key}.id"), format!("person {:?} is defined twice", p.id));
        }
        let phone = p.phone.as_deref().and_then(|raw| {
            let n = normalise_phone(raw);
            if n.is_none() {
                check.add(
                    format!("{key}.phone"),
                    format!(
                        "{raw:?} is not a phone number: +country code and 8-15 digits, or an 11-digit mobile number"
                    ),
                );
            }
            n
        });
        if let Some(e) = &p.email {
            let ok = e.len() <= 254
                && e.matches('@').count() == 1
                && !e.starts_with('@')
                && !e.ends_with('@')
                && !e.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                check.add(format!("{key}.email"), format!("{e:?} is not an e-mail address"));
            }
        }
        if p.phone.is_none() && p.email.is_none() && p.user.is_none() {
            check.add(&key, format!("person {:?} has no phone, email or user: nothing can reach them", p.id));
        }
        for t in &p.teams {
            check.id(&format!("{key}.teams"), t);
        }
        out.push(Person {
            id: p.id.clone(),
            name: p.name.clone().unwrap_or_else(|| p.id.clone()),
            phone,
            email: p.email.clone(),
            user: p.user.clone(),
            teams: p.teams.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::testing::{check, MINIMAL};

    #[test]
    fn people_resolve_with_normalised_phones() {
        let text = format!(
            "{MINIMAL}[[person]]\nid = \"wang\"\nname = \"王师傅\"\nphone = \"13800138000\"\nteams = [\"technical\"]\n"
        );
        let c = parse("test.toml", &text, None).unwrap();
        let p = &c.tree.people[0];
        assert_eq!((p.name.as_str(), p.phone.as_deref()), ("王师傅", Some("+8613800138000")));
    }

    #[test]
    fn bad_people_are_refused_at_their_keys() {
        check(
            &format!(
                "{MINIMAL}[[person]]\nid = \"a\"\nphone = \"12345\"\n[[person]]\nid = \"a\"\nemail = \"no-at\"\n[[person]]\nid = \"b\"\n"
            ),
            &[
                "person[0].phone: \"12345\" is not a phone number",
                "person[1].id: person \"a\" is defined twice",
                "person[1].email: \"no-at\" is not an e-mail address",
                "person[2]: person \"b\" has no phone, email or user",
            ],
        );
    }
}
