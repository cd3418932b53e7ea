//! Scheduled starts on a redb store with a clock the test moves: each due time starts once,
//! across a restart; downtime is caught up within the window and counted as missed past it;
//! overlap policies; pause and resume.

use std::sync::Arc;
use std::time::Duration;

use flowgate::engine::Person;
use flowgate::plugin::PluginRegistry;
use flowgate::service::{Flowgate, ManualClock, RecordingNotifier, ScheduleView};
use flowgate::store::{InstanceFilter, RedbStore};

/// 2026-03-29T00:30:00Z: Berlin moves its clocks from 02:00 to 03:00 half an hour later.
const T0: u64 = 1_774_744_200_000;
const HOUR: u64 = 3_600_000;

const REPORT: &str = r#"
id = "report"
start = "review"
start_form = [{ name = "kind", type = "text", required = true }]

[[schedules]]
id = "hourly"
cron = "0 * * * *"
timezone = "Europe/Berlin"
overlap = "allow"
catch_up = "3h"
data = { kind = "hourly" }

[[steps]]
id = "review"
kind = "task"
role = "analyst"
next = "done"

[[steps]]
id = "done"
kind = "end"
"#;

/// Opens the store (once the last Flowgate on it has let go) with a Flowgate on it.
async fn open(path: &std::path::Path, clock: Arc<ManualClock>) -> Flowgate {
    let store: RedbStore = crate::common::reopen(path).await;
    let registry = PluginRegistry::new(crate::common::runtime().clone());
    Flowgate::open(
        Arc::new(store),
        Arc::new(registry),
        clock,
        Arc::new(RecordingNotifier::default()),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn settle(flowgate: &Flowgate) {
    flowgate
        .run_until_idle()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

fn view(flowgate: &Flowgate, schedule: &str) -> ScheduleView {
    flowgate
        .schedules("acme")
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .find(|v| v.schedule.id == schedule)
        .unwrap_or_else(|| panic!("no schedule {schedule}"))
}

/// The instances of `workflow` started by `schedule`, oldest first.
fn started(flowgate: &Flowgate, workflow: &str, schedule: &str) -> Vec<flowgate::engine::Instance> {
    let filter = InstanceFilter {
        definition: Some(workflow.to_string()),
        limit: 1_000,
        ..Default::default()
    };
    let mut found: Vec<_> = flowgate
        .instances("acme", &filter)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|i| i.started_by == format!("schedule {schedule}"))
        .collect();
    found.sort_by_key(|i| i.started_at);
    found
}

#[test]
fn each_due_time_starts_once_across_a_restart_and_downtime_is_caught_up_within_its_window() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("flowgate.redb");
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        let clock = Arc::new(ManualClock::new(T0));
        let flowgate = open(&path, clock.clone()).await;
        flowgate
            .deploy("acme", "report.toml", REPORT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        settle(&flowgate).await;
        // Seen at 00:30Z: the first due time is 01:00Z, which is 03:00 in Berlin (CEST).
        assert_eq!(view(&flowgate, "hourly").next_due, Some(T0 + HOUR / 2));
        assert!(started(&flowgate, "report", "hourly").is_empty());
        clock.set(T0 + HOUR / 2);
        settle(&flowgate).await;
        settle(&flowgate).await;
        let first = started(&flowgate, "report", "hourly");
        assert_eq!(first.len(), 1, "one start for the 01:00Z due time");
        assert_eq!(first[0].data["kind"], "hourly");
        drop(flowgate);

        // Down for five hours: 02:00Z is four hours old when it comes back (past the 3h
        // window), 03:00Z to 06:00Z are within it.
        clock.set(T0 + HOUR / 2 + 5 * HOUR);
        let flowgate = open(&path, clock.clone()).await;
        settle(&flowgate).await;
        let all = started(&flowgate, "report", "hourly");
        assert_eq!(all.len(), 5, "01:00Z before, then 03:00Z to 06:00Z");
        let schedule = view(&flowgate, "hourly");
        assert_eq!((schedule.state.started, schedule.state.missed), (5, 1));
        let dues: Vec<u64> = schedule
            .state
            .recent
            .iter()
            .filter(|r| r.outcome == "started")
            .map(|r| r.due)
            .collect();
        let hours: Vec<u64> = (0..5)
            .map(|h| T0 + HOUR / 2 + if h == 0 { 0 } else { (h + 1) * HOUR })
            .collect();
        assert_eq!(dues, hours);
        // Another restart at the same moment starts nothing again.
        drop(flowgate);
        let flowgate = open(&path, clock.clone()).await;
        settle(&flowgate).await;
        assert_eq!(started(&flowgate, "report", "hourly").len(), 5);
    });
}

const AUDIT: &str = r#"
id = "audit"
start = "check"

[[schedules]]
id = "skip"
every = "1h"
overlap = "skip"

[[schedules]]
id = "keep"
every = "1h"
overlap = "buffer-one"

[[steps]]
id = "check"
kind = "task"
role = "auditor"
next = "done"

[[steps]]
id = "done"
kind = "end"
"#;

#[test]
fn overlap_skips_or_keeps_one_while_the_last_instance_runs_and_pause_holds_every_due_time() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        // On the hour, so that due times fall on the hours after.
        let t = T0 - HOUR / 2;
        let clock = Arc::new(ManualClock::new(t));
        let flowgate = open(&dir.path().join("f.redb"), clock.clone()).await;
        flowgate
            .deploy("acme", "audit.toml", AUDIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        settle(&flowgate).await;
        for hour in 1..=3 {
            clock.set(t + hour * HOUR);
            settle(&flowgate).await;
        }
        // Both started at +1h; the skipping one skipped +2h and +3h; the keeping one kept +2h
        // and skipped +3h.
        assert_eq!(started(&flowgate, "audit", "skip").len(), 1);
        assert_eq!(started(&flowgate, "audit", "keep").len(), 1);
        let skip = view(&flowgate, "skip");
        assert_eq!((skip.state.started, skip.state.skipped), (1, 2));
        let keep = view(&flowgate, "keep");
        assert_eq!(keep.state.pending, Some(t + 2 * HOUR));
        assert_eq!(keep.state.skipped, 1);

        // The kept one starts as soon as its blocker ends.
        let blocker = started(&flowgate, "audit", "keep")[0].id.clone();
        let task = flowgate
            .instance("acme", &blocker)
            .unwrap_or_else(|e| panic!("{e}"))
            .open_tasks()
            .next()
            .map(|t| t.id.clone())
            .unwrap_or_default();
        flowgate
            .complete_task(
                "acme",
                &task,
                Person::new("al", &["auditor"]),
                None,
                Default::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The driver looks at the schedules a few times a second.
        clock.advance(Duration::from_secs(1));
        settle(&flowgate).await;
        let kept = started(&flowgate, "audit", "keep");
        assert_eq!(kept.len(), 2, "the kept due time started");
        assert_eq!(view(&flowgate, "keep").state.pending, None);

        // Paused, nothing starts; resumed, it goes on from now.
        flowgate
            .pause_schedule("acme", "audit", "keep", true, "audit freeze".into())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let again = flowgate
            .pause_schedule("acme", "audit", "keep", true, "twice".into())
            .await;
        assert!(again.is_err(), "pausing a paused schedule is refused");
        clock.advance(Duration::from_secs(5 * 3600));
        settle(&flowgate).await;
        assert_eq!(started(&flowgate, "audit", "keep").len(), 2);
        assert_eq!(view(&flowgate, "keep").next_due, None);
        let resumed = flowgate
            .pause_schedule("acme", "audit", "keep", false, "freeze over".into())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let now = t + 8 * HOUR + 1_000;
        assert_eq!(
            resumed.next_due,
            Some(now - 1_000 + HOUR),
            "what fell due while paused is skipped"
        );
    });
}
