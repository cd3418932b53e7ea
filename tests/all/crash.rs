//! Crash consistency: a real process streams commands into a redb file and is killed with SIGKILL
//! mid-stream. After the restart every acknowledged command is there, nothing is half-applied
//! (indexes agree with instance state, histories are gapless), and armed timers still fire, once.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowgate::engine::{EventKind, Status, TaskStatus, Wait};
use flowgate::plugin::PluginRegistry;
use flowgate::service::{Clock, Flowgate, ManualClock, RecordingNotifier, SystemClock};
use flowgate::store::{Inbox, InstanceFilter, RedbStore, Storage};

/// Acknowledgements to wait for before the kill.
const ACKS_BEFORE_KILL: usize = 300;

#[test]
fn acknowledged_commands_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("crash.redb");
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
        .arg(&path)
        .arg("16")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn crash-writer: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut started: BTreeMap<String, String> = BTreeMap::new();
    let mut completed: BTreeSet<String> = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut lines = BufReader::new(stdout).lines();
    while started.len() + completed.len() < ACKS_BEFORE_KILL && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["started", key, id] => drop(started.insert(key.to_string(), id.to_string())),
            ["completed", id] => drop(completed.insert(id.to_string())),
            _ => panic!("unexpected line {line:?}"),
        }
    }
    // SIGKILL, in the middle of the stream: the writer is still committing.
    child.kill().unwrap_or_else(|e| panic!("kill: {e}"));
    let _ = child.wait();
    assert!(
        started.len() + completed.len() >= ACKS_BEFORE_KILL,
        "the writer made too little progress"
    );

    let store = RedbStore::open(&path).unwrap_or_else(|e| panic!("reopen after kill: {e}"));
    for (key, id) in &started {
        assert_eq!(
            store.started_with_key("acme", key).ok().flatten().as_ref(),
            Some(id),
            "start {key} lost"
        );
        let instance = store
            .instance("acme", id)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("instance {id} lost"));
        if completed.contains(id) {
            let first = instance.tasks.values().find(|t| t.step == "first");
            assert_eq!(
                first.map(|t| t.status),
                Some(TaskStatus::Completed),
                "completion of {id} lost"
            );
        }
    }

    // Nothing half-applied: indexes and histories agree with every stored instance.
    let all = store
        .instances(
            "acme",
            &InstanceFilter {
                limit: usize::MAX,
                ..Default::default()
            },
        )
        .unwrap_or_default();
    let mut open_tasks = BTreeSet::new();
    let mut waiting = BTreeSet::new();
    for instance in &all {
        let history = store
            .history("acme", &instance.id, 0, usize::MAX)
            .unwrap_or_default();
        assert_eq!(
            history.len() as u64,
            instance.history_len,
            "history of {}",
            instance.id
        );
        open_tasks.extend(instance.open_tasks().map(|t| t.id.clone()));
        if instance
            .tokens
            .values()
            .any(|t| matches!(t.wait, Wait::Timer { .. }))
        {
            waiting.insert(instance.id.clone());
        }
    }
    let indexed: BTreeSet<String> = store
        .inbox(
            "acme",
            &Inbox::Role("clerk".into()),
            "open",
            None,
            usize::MAX,
        )
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.task)
        .collect();
    assert_eq!(indexed, open_tasks, "the task index matches the instances");
    assert!(
        waiting.len() >= completed.len(),
        "every completed first task armed a timer"
    );

    // After the restart, the one-hour timers fire, each once.
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(async {
        let clock = Arc::new(ManualClock::new(SystemClock.now() + 2 * 3_600_000));
        let registry = PluginRegistry::new(crate::common::runtime().clone());
        let flowgate = Flowgate::open(
            Arc::new(store),
            Arc::new(registry),
            clock,
            Arc::new(RecordingNotifier::default()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        flowgate
            .run_until_idle()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        flowgate
            .run_until_idle()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for id in &waiting {
            let instance = flowgate
                .instance("acme", id)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(instance.status, Status::Running);
            let second: Vec<_> = instance
                .open_tasks()
                .filter(|t| t.step == "second")
                .collect();
            assert_eq!(second.len(), 1, "{id}: the wait ended once");
            let history = flowgate.history("acme", id).unwrap_or_default();
            let waits_ended = history
                .iter()
                .filter(
                    |e| matches!(&e.kind, EventKind::StepCompleted { step, .. } if step == "pause"),
                )
                .count();
            assert_eq!(waits_ended, 1, "{id}");
        }
    });
}
