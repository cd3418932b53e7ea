//! Scheduled starts in the running daemon: a schedule deployed over the API starts instances,
//! keeps counting through a kill -9 and restart without starting a due time twice, and pauses.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::harness::*;

const TICKER: &str = r#"
id = "ticker"
start = "done"

[[schedules]]
id = "every-second"
every = "1s"
overlap = "allow"

[[steps]]
id = "done"
kind = "end"
"#;

fn schedule(d: &Daemon) -> Value {
    let (status, body) = d.call("GET", "/api/v1/schedules", Some(ACME_ADMIN), None);
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .and_then(|all| all.iter().find(|s| s["workflow"] == "ticker").cloned())
        .unwrap_or_else(|| panic!("no ticker schedule in {body}"))
}

fn instances(d: &Daemon) -> Vec<Value> {
    let (status, body) = d.call(
        "GET",
        "/api/v1/instances?workflow=ticker&limit=1000",
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body.as_array().cloned().unwrap_or_default()
}

fn started_at_least(d: &Daemon, n: u64) -> Value {
    eventually(&format!("{n} scheduled starts"), || {
        let s = schedule(d);
        (s["started"].as_u64().unwrap_or(0) >= n).then_some(s)
    })
}

#[test]
fn a_schedule_starts_instances_through_a_crash_and_restart_once_per_due_time_and_pauses() {
    let mut d = start(1 << 20);
    let deploy = json!({"file": "ticker.toml", "source": TICKER});
    let (status, body) = d.call(
        "POST",
        "/api/v1/definitions",
        Some(ACME_ADMIN),
        Some(deploy),
    );
    assert_eq!(status, 201, "{body}");
    started_at_least(&d, 2);
    crash(&mut d);
    std::thread::sleep(Duration::from_millis(2_500));
    let d = start_in(folder_of(d), 1 << 20);
    let before = schedule(&d)["started"].as_u64().unwrap_or(0);
    // The seconds missed while it was down are within the default hour's catch-up.
    let after = started_at_least(&d, before + 3);
    let dues: Vec<u64> = after["recent"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["outcome"] == "started")
        .filter_map(|r| r["due"].as_u64())
        .collect();
    let mut unique = dues.clone();
    unique.dedup();
    assert_eq!(dues, unique, "each due time started once");
    assert!(dues.windows(2).all(|w| w[1] - w[0] == 1_000), "{dues:?}");

    let pause = json!({"reason": "quarter close"});
    let path = "/api/v1/definitions/ticker/schedules/every-second/pause";
    let (status, paused) = d.call("POST", path, Some(ACME_ADMIN), Some(pause.clone()));
    assert_eq!((status, &paused["paused"]), (200, &json!(true)), "{paused}");
    let (status, body) = d.call("POST", path, Some(ACME_ADMIN), Some(pause));
    assert_eq!((status, code(&body)), (409, "conflict"), "{body}");
    let (status, body) = d.call(
        "POST",
        path,
        Some("acme-dora-token"),
        Some(json!({"reason": "x"})),
    );
    assert_eq!(status, 403, "{body}");
    // Whatever was in flight when it paused has landed within a second.
    std::thread::sleep(Duration::from_millis(1_000));
    let held = instances(&d).len();
    let counted = schedule(&d)["started"].as_u64().unwrap_or(0);
    std::thread::sleep(Duration::from_millis(2_000));
    assert_eq!(instances(&d).len(), held, "nothing starts while paused");
    assert_eq!(
        held as u64, counted,
        "every start counted is an instance, and no more"
    );

    let resume = "/api/v1/definitions/ticker/schedules/every-second/resume";
    let (status, body) = d.call(
        "POST",
        resume,
        Some(ACME_ADMIN),
        Some(json!({"reason": "done"})),
    );
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while instances(&d).len() <= held && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(instances(&d).len() > held, "it starts again once resumed");
    let (status, body) = d.call(
        "POST",
        "/api/v1/definitions/ticker/schedules/nope/pause",
        Some(ACME_ADMIN),
        Some(json!({"reason": "x"})),
    );
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
}
