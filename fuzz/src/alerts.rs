//! `oint serve`'s webhook bodies (`oint::alerts::render`), with the default templates.
//! No panic; a refusal is one non-empty line; an accepted body gives 1 to
//! `MAX_NOTIFICATIONS` notifications (exactly one per group), none empty, each tag short,
//! plain and under the route's name.

use oint::alerts::{MAX_NOTIFICATIONS, MAX_TAG, Route, RouteConfig, Source, render};

/// Fuzz input: the first byte chooses the source (bit 0), per group (bit 1), Markdown
/// (bit 2) and no tags (bit 3); the rest is the body.
pub fn run(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let source = if mode & 1 == 0 {
        Source::Alertmanager
    } else {
        Source::Grafana
    };
    let config = RouteConfig {
        users: vec![1],
        system: false,
        template: None,
        markdown: mode & 4 != 0,
        group: mode & 2 != 0,
        tags: mode & 8 == 0,
    };
    let route = Route::new("fuzz-route", config.clone()).expect("a valid route");
    match render(source, &route, body) {
        Err(reason) => {
            assert!(!reason.is_empty(), "an empty reason");
            assert!(
                !reason.contains(['\n', '\r']),
                "a reason on two lines: {reason:?}"
            );
        }
        Ok(out) => {
            assert!(!out.is_empty(), "accepted, but no notification");
            assert!(
                out.len() <= MAX_NOTIFICATIONS,
                "{} notifications",
                out.len()
            );
            if config.group {
                assert_eq!(out.len(), 1, "per group, but {} notifications", out.len());
            }
            for r in &out {
                assert!(!r.text.trim().is_empty(), "an empty text");
                let Some(tag) = &r.tag else { continue };
                assert!(config.tags, "tagged with tags off: {tag:?}");
                assert!(tag.len() <= MAX_TAG, "tag too long: {tag:?}");
                let id = tag.strip_prefix("fuzz-route:").expect("the route's tag");
                assert!(
                    !id.is_empty()
                        && id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                    "tag not plain: {tag:?}"
                );
            }
        }
    }
}
