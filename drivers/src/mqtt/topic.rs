//! MQTT topic filters: checking one (MQTT 3.1.1 §4.7) and matching a topic name against it.
//!
//! Pure string work; it knows nothing of brokers or payloads.

/// Why a subscription filter is not valid (MQTT 3.1.1 §4.7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("a topic filter must not be empty")]
    Empty,
    #[error("topic filter {0:?} contains a NUL character")]
    Nul(String),
    #[error("topic filter {0:?}: '#' must be a whole level and the last one")]
    MultiLevel(String),
    #[error("topic filter {0:?}: '+' must be a whole level")]
    SingleLevel(String),
}

/// Checks that `filter` is a valid subscription filter: not empty, no NUL, `+` and `#` only as whole levels,
/// `#` only as the last level.
pub fn check_filter(filter: &str) -> Result<(), FilterError> {
    if filter.is_empty() {
        return Err(FilterError::Empty);
    }
    if filter.contains('\0') {
        return Err(FilterError::Nul(filter.to_owned()));
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != last) {
            return Err(FilterError::MultiLevel(filter.to_owned()));
        }
        if level.contains('+') && *level != "+" {
            return Err(FilterError::SingleLevel(filter.to_owned()));
        }
    }
    Ok(())
}

/// Whether the topic name `topic` matches the (valid) filter `filter`.
///
/// As the standard says (§4.7.2), a filter starting with a wildcard does not match a topic starting with `$`
/// (such as `$SYS/...`); and `a/#` also matches `a` itself.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        if level == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(t) if level == "+" || level == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

/// What a filter can say about topic level `index` (0-based): whether every matching topic has that level.
pub(crate) fn filter_has_level(filter: &str, index: usize) -> bool {
    filter.split('/').enumerate().any(|(i, level)| i == index && level != "#")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_the_standard_says() {
        assert!(topic_matches("water/+/reading", "water/M1/reading"));
        assert!(!topic_matches("water/+/reading", "water/M1/reading/x"));
        assert!(!topic_matches("water/+/reading", "water/reading"));
        assert!(topic_matches("water/#", "water"));
        assert!(topic_matches("water/#", "water/a/b"));
        assert!(topic_matches("+/+", "/x"));
        assert!(!topic_matches("#", "$SYS/broker"));
        assert!(topic_matches("$SYS/#", "$SYS/broker"));
        assert_eq!(check_filter("a/#/b"), Err(FilterError::MultiLevel("a/#/b".into())));
        assert_eq!(
            check_filter("a/b+").map_err(|e| e.to_string()),
            Err("topic filter \"a/b+\": '+' must be a whole level".to_owned())
        );
        assert_eq!(check_filter(""), Err(FilterError::Empty));
        assert!(check_filter("a/+/#").is_ok());
        assert!(filter_has_level("water/+/reading", 1));
        assert!(!filter_has_level("water/#", 1));
        assert!(!filter_has_level("water/+", 2));
    }
}
