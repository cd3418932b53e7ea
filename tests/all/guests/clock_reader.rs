//! A guest that imports the wall clock is refused unless its tenant granted clocks.

use flowgate::plugin::{Grants, PluginFailure, PluginSettings};
use flowgate_tests::artifacts::CLOCK_READER;
use serde_json::json;

use crate::common::{action, load};

#[test]
fn refused_at_load_without_the_clocks_grant() {
    let err = load(CLOCK_READER, "clock", PluginSettings::default()).err();
    let Some(err) = err else {
        panic!("a clock-reading plugin loaded without the clocks grant");
    };
    let message = err.to_string();
    // std links the monotonic clock as well as the wall clock: both are named, and the grant.
    assert!(message.contains("`wasi:clocks/wall-clock@"), "{message}");
    assert!(
        message.contains("`wasi:clocks/monotonic-clock@"),
        "{message}"
    );
    assert!(
        message.contains("the tenant grants it `clocks`"),
        "{message}"
    );
    let PluginFailure::ImportNotGranted { refused } = &*err.failure else {
        panic!("{err}");
    };
    assert!(refused.len() >= 2, "{refused:?}");
    assert!(
        refused.iter().all(|r| r.grant.as_deref() == Some("clocks")),
        "{refused:?}"
    );
}

#[test]
fn runs_with_the_clocks_grant() {
    let settings = PluginSettings {
        grants: Grants {
            clocks: true,
            ..Grants::default()
        },
        ..PluginSettings::default()
    };
    let plugin = load(CLOCK_READER, "clock", settings).unwrap_or_else(|e| panic!("{e}"));
    let called = plugin.run_action(&action("now", json!({}), json!({})));
    let now = called
        .map(|c| c.value.data["now_secs"].as_u64())
        .ok()
        .flatten();
    // 2020-01-01: any real clock is past it.
    assert!(now.is_some_and(|secs| secs > 1_577_836_800), "{now:?}");
}
