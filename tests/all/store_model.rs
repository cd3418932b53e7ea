//! Model-based test of the redb store: random batches of changes go to both the redb store and the
//! in-memory model (plain ordered maps), and every read query must answer the same after each
//! commit. A seeded generator keeps failures reproducible.

use std::collections::BTreeMap;
use std::sync::Arc;

use flowgate::definition::{Definition, EndOutcome, EndStep, Step};
use flowgate::engine::{
    Actor, Event, EventKind, Instance, Notification, NotificationKind, PluginRequest, Status,
    Subscription, Task, TaskStatus, Timer, TimerKind,
};
use flowgate::store::{
    Change, CompletionKey, Inbox, IndexKeys, InstanceFilter, MemStore, MessageRecord,
    MessageStatus, OutboxEntry, RedbStore, Storage, StoredDefinition,
};

/// xorshift64*: small, seeded, good enough to pick cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const TENANTS: [&str; 2] = ["acme", "globex"];
const PEOPLE: [&str; 3] = ["ann", "bob", "cy"];
const ROLES: [&str; 3] = ["manager", "finance", "it"];

fn blank(tenant: &str, id: &str) -> Instance {
    Instance {
        id: id.to_string(),
        tenant: tenant.to_string(),
        // Two workflows, so that filtered lists have something to leave out.
        definition_id: if id.bytes().last().is_some_and(|b| b % 2 == 1) {
            "e"
        } else {
            "d"
        }
        .to_string(),
        definition_version: 1,
        plugins: BTreeMap::new(),
        status: Status::Running,
        data: serde_json::Map::new(),
        tokens: BTreeMap::new(),
        tasks: BTreeMap::new(),
        timers: BTreeMap::new(),
        forks: BTreeMap::new(),
        subscriptions: BTreeMap::new(),
        paused: None,
        held: Vec::new(),
        parent: None,
        process: String::new(),
        started_by: "t".to_string(),
        started_at: 0,
        ended_at: None,
        version: 0,
        history_len: 0,
        next_id: 1,
    }
}

/// A random next state of `current`: tasks opened, completed, reassigned; timers armed, fired.
fn mutate(rng: &mut Rng, current: &Instance) -> Instance {
    let mut next = current.clone();
    next.version += 1;
    next.started_at = rng.below(1_000);
    next.status = *rng.pick(&[Status::Running, Status::Running, Status::Completed]);
    next.ended_at = (next.status != Status::Running).then(|| 1_000 + rng.below(1_000));
    for _ in 0..rng.below(3) {
        let n = next.next_id;
        next.next_id += 1;
        let id = format!("{}.t{n}", next.id);
        let (assignee, role) = if rng.below(2) == 0 {
            (Some(rng.pick(&PEOPLE).to_string()), None)
        } else {
            (None, Some(rng.pick(&ROLES).to_string()))
        };
        next.tasks.insert(
            id.clone(),
            Task {
                id,
                instance: next.id.clone(),
                token: 1,
                activation: 1,
                step: "s".to_string(),
                title: "t".to_string(),
                assignee,
                role,
                candidates: Vec::new(),
                claimed_by: None,
                claimed_at: None,
                status: TaskStatus::Open,
                stage: None,
                outcomes: Vec::new(),
                created_at: 0,
                due_at: None,
                completed_at: None,
                completed_by: None,
                outcome: None,
                link_expires_at: None,
            },
        );
    }
    let ids: Vec<String> = next.tasks.keys().cloned().collect();
    for id in ids {
        if let Some(task) = next.tasks.get_mut(&id) {
            match rng.below(6) {
                0 => {
                    task.status = TaskStatus::Completed;
                    task.completed_by = Some(rng.pick(&PEOPLE).to_string());
                }
                1 => task.status = TaskStatus::Cancelled,
                2 => task.claimed_by = Some(rng.pick(&PEOPLE).to_string()),
                3 => task.role = Some(rng.pick(&ROLES).to_string()),
                _ => {}
            }
        }
    }
    for _ in 0..rng.below(3) {
        let id = format!("x{}", next.next_id);
        next.next_id += 1;
        let due_at = rng.below(100);
        next.timers.insert(
            id.clone(),
            Timer {
                id,
                due_at,
                kind: TimerKind::Wait {
                    token: 1,
                    activation: 1,
                },
            },
        );
    }
    if rng.below(3) == 0
        && let Some(first) = next.timers.keys().next().cloned()
    {
        next.timers.remove(&first);
    }
    if rng.below(4) == 0 {
        // Joined to another instance's process (as a following workflow would be).
        next.process = rng.pick(&["i1", "i2"]).to_string();
    }
    for _ in 0..rng.below(2) {
        let id = format!("m{}", next.next_id);
        next.next_id += 1;
        next.subscriptions.insert(
            id.clone(),
            Subscription {
                id,
                message: rng.pick(&MESSAGES).to_string(),
                correlation: rng.pick(&CORRELATIONS).to_string(),
                token: 1,
                activation: 1,
                step: "r".to_string(),
                since: 0,
            },
        );
    }
    if rng.below(3) == 0
        && let Some(first) = next.subscriptions.keys().next().cloned()
    {
        next.subscriptions.remove(&first);
    }
    next
}

const MESSAGES: [&str; 2] = ["go", "stop"];
const CORRELATIONS: [&str; 2] = ["c0", "c1"];

fn message(rng: &mut Rng, tenant: &str) -> MessageRecord {
    let status = match rng.below(3) {
        0 => MessageStatus::Delivered {
            instances: vec![format!("i{}", rng.below(6))],
            at: rng.below(100),
        },
        _ => MessageStatus::Buffered {
            expires_at: rng.below(100),
        },
    };
    MessageRecord {
        tenant: tenant.to_string(),
        id: format!("m{}", rng.below(4)),
        name: rng.pick(&MESSAGES).to_string(),
        correlation: rng.pick(&CORRELATIONS).to_string(),
        data: serde_json::Map::new(),
        sent_by: "s".to_string(),
        process: None,
        fingerprint: "f".to_string(),
        received_at: rng.below(50),
        status,
    }
}

fn event(seq: u64) -> Event {
    Event {
        seq,
        at: seq,
        actor: Actor::System,
        kind: EventKind::TaskClaimed {
            task: format!("t{seq}"),
        },
        reason: None,
    }
}

fn definition(tenant: &str, id: &str, version: u32) -> StoredDefinition {
    StoredDefinition {
        tenant: tenant.to_string(),
        version,
        definition: Definition {
            id: id.to_string(),
            name: String::new(),
            description: String::new(),
            start: "end".to_string(),
            start_form: Vec::new(),
            start_messages: Vec::new(),
            schedules: Vec::new(),
            steps: vec![Step::End(EndStep {
                id: "end".to_string(),
                title: String::new(),
                outcome: EndOutcome::Completed,
                then: None,
            })],
        },
        source: String::new(),
        deployed_at: 0,
    }
}

/// Everything a store answers, for comparison.
fn snapshot(store: &dyn Storage) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("tenants {:?}", store.tenants().ok()));
    line(format!("last outbox {:?}", store.last_outbox_id().ok()));
    for tenant in TENANTS {
        let all = InstanceFilter {
            limit: usize::MAX,
            ..Default::default()
        };
        let instances = store.instances(tenant, &all).unwrap_or_default();
        line(format!(
            "{tenant} instances {:?}",
            instances
                .iter()
                .map(|i| (&i.id, i.version))
                .collect::<Vec<_>>()
        ));
        for i in &instances {
            line(format!(
                "{tenant} get {} {:?}",
                i.id,
                store.instance(tenant, &i.id).ok().flatten() == Some(i.clone())
            ));
            line(format!(
                "{tenant} history {} {:?}",
                i.id,
                store.history(tenant, &i.id, 0, usize::MAX).ok()
            ));
            let both = store.instance_with_history(tenant, &i.id).ok().flatten();
            line(format!(
                "{tenant} with history {} {:?}",
                i.id,
                both.map(|(found, history)| (found == *i, history.len()))
            ));
            line(format!(
                "{tenant} size {} {:?}",
                i.id,
                store.instance_size(tenant, &i.id).ok().flatten()
            ));
        }
        line(format!(
            "{tenant} ended {:?}",
            store.ended_before(tenant, u64::MAX, 100).ok()
        ));
        for workflow in ["d", "e"] {
            line(format!(
                "{tenant} archived {workflow} {:?}",
                store.archived_facts(tenant, workflow, 0).ok()
            ));
        }
        for process in ["i1", "i2"] {
            let of_process = InstanceFilter {
                process: Some(process.to_string()),
                limit: usize::MAX,
                ..Default::default()
            };
            line(format!(
                "{tenant} process {process} {:?}",
                store
                    .instances(tenant, &of_process)
                    .map(|v| v.iter().map(|i| i.id.clone()).collect::<Vec<_>>())
                    .ok()
            ));
        }
        let running = InstanceFilter {
            status: Some("running".into()),
            limit: 3,
            ..Default::default()
        };
        line(format!(
            "{tenant} running page {:?}",
            store.instances(tenant, &running).map(|v| v.len()).ok()
        ));
        for (definition, status, newest_first) in [None, Some("d"), Some("e")]
            .into_iter()
            .flat_map(|d| [None, Some("running"), Some("completed")].map(|s| (d, s)))
            .flat_map(|(d, s)| [(d, s, false), (d, s, true)])
        {
            let mut filter = InstanceFilter {
                definition: definition.map(str::to_string),
                status: status.map(str::to_string),
                limit: 2,
                newest_first,
                ..Default::default()
            };
            let first = store.instances(tenant, &filter).unwrap_or_default();
            filter.after = first.last().map(|i| i.id.clone());
            let second = store.instances(tenant, &filter).unwrap_or_default();
            let ids = |v: &[Instance]| v.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
            line(format!(
                "{tenant} list {definition:?} {status:?} newest first {newest_first} {:?} then {:?}",
                ids(&first),
                ids(&second)
            ));
        }
        for key in ["c0", "c1", "c2"] {
            line(format!(
                "{tenant} completion key {key} {:?}",
                store.completion_key(tenant, key).ok()
            ));
        }
        let inboxes = PEOPLE
            .iter()
            .map(|p| Inbox::Person(p.to_string()))
            .chain(ROLES.iter().map(|r| Inbox::Role(r.to_string())));
        for inbox in inboxes {
            for status in ["open", "completed", "cancelled"] {
                line(format!(
                    "{tenant} inbox {inbox:?} {status} {:?}",
                    store.inbox(tenant, &inbox, status, None, usize::MAX).ok()
                ));
            }
            let first = store
                .inbox(tenant, &inbox, "open", None, 1)
                .unwrap_or_default();
            let after = first.first().map(|t| t.task.clone());
            line(format!(
                "{tenant} inbox page2 {inbox:?} {:?}",
                store
                    .inbox(tenant, &inbox, "open", after.as_deref(), 2)
                    .ok()
            ));
        }
        for now in [0, 25, 50, 99] {
            line(format!(
                "{tenant} due {now} {:?}",
                store.due_timers(tenant, now, usize::MAX).ok()
            ));
        }
        line(format!(
            "{tenant} outbox {:?}",
            store.outbox(tenant, 0, usize::MAX).ok()
        ));
        line(format!(
            "{tenant} outbox after 5 {:?}",
            store.outbox(tenant, 5, 3).ok()
        ));
        for now in [0, 200, 500, 2_000] {
            let due = store
                .due_outbox(tenant, now, 4, &|_| false)
                .unwrap_or_default();
            let due: Vec<(u64, u32, u64)> =
                due.iter().map(|e| (e.id, e.attempts, e.due_at)).collect();
            line(format!("{tenant} outbox due by {now} {due:?}"));
            // What the driver does under way: the odd ids taken, the next ones reached.
            let rest = store
                .due_outbox(tenant, now, 4, &|id| id % 2 == 1)
                .unwrap_or_default();
            let rest: Vec<u64> = rest.iter().map(|e| e.id).collect();
            line(format!(
                "{tenant} outbox due by {now} past the odd ids {rest:?}"
            ));
        }
        for key in ["k0", "k1", "k2"] {
            line(format!(
                "{tenant} key {key} {:?}",
                store.started_with_key(tenant, key).ok()
            ));
        }
        for name in MESSAGES {
            for correlation in CORRELATIONS {
                line(format!(
                    "{tenant} subscribers {name} {correlation} {:?}",
                    store
                        .subscribers(tenant, name, correlation, usize::MAX)
                        .ok()
                ));
                line(format!(
                    "{tenant} buffered {name} {correlation} {:?}",
                    store.buffered(tenant, name, correlation, usize::MAX).ok()
                ));
            }
        }
        line(format!(
            "{tenant} messages {:?} then {:?}",
            store.messages(tenant, None, usize::MAX).ok(),
            store.messages(tenant, Some("m1"), 2).ok()
        ));
        line(format!(
            "{tenant} message m0 {:?}",
            store.message(tenant, "m0").ok()
        ));
        line(format!(
            "{tenant} definitions {:?}",
            store.definitions(tenant).ok()
        ));
        for id in ["d", "e"] {
            line(format!(
                "{tenant} latest {id} {:?}",
                store.definition(tenant, id, None).ok()
            ));
            line(format!(
                "{tenant} v1 {id} {:?}",
                store.definition(tenant, id, Some(1)).ok()
            ));
        }
    }
    out
}

#[test]
fn redb_answers_like_the_model_after_random_batches() {
    for seed in [1u64, 7, 42] {
        compare_after_random_batches(seed, 150);
    }
}

/// Commits `steps` random batches (from `seed`) to redb and to the model, comparing what each
/// answers after every one. The fuzz tests run it from seeds proptest picks.
pub(crate) fn compare_after_random_batches(seed: u64, steps: usize) {
    {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let redb = RedbStore::open(dir.path().join("model.redb")).unwrap_or_else(|e| panic!("{e}"));
        let model = MemStore::new();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut state: BTreeMap<(String, String), Instance> = BTreeMap::new();
        let mut outbox: Vec<(String, u64)> = Vec::new();
        let mut next_outbox = 1;
        let mut versions: BTreeMap<(String, String), u32> = BTreeMap::new();
        for step in 0..steps {
            let mut batch = Vec::new();
            for _ in 0..=rng.below(4) {
                let tenant = rng.pick(&TENANTS).to_string();
                match rng.below(10) {
                    0 => {
                        let id = rng.pick(&["d", "e"]).to_string();
                        let v = versions.entry((tenant.clone(), id.clone())).or_insert(0);
                        *v += 1;
                        batch.push(Change::Definition(definition(&tenant, &id, *v)));
                    }
                    // Clears of one to three entries of a tenant, sometimes of one already gone.
                    1 if !outbox.is_empty() => {
                        let (tenant, id) = outbox.remove(rng.below(outbox.len() as u64) as usize);
                        let mut ids = vec![id];
                        for _ in 0..rng.below(3) {
                            match outbox.iter().position(|(t, _)| *t == tenant) {
                                Some(at) if rng.below(2) == 0 => ids.push(outbox.remove(at).1),
                                _ => ids.push(id),
                            }
                        }
                        batch.push(Change::ClearOutbox {
                            tenant,
                            outbox: ids,
                        });
                    }
                    // A failed attempt, sometimes of an entry already done.
                    2 if next_outbox > 1 => {
                        batch.push(Change::Retry {
                            tenant,
                            outbox: 1 + rng.below(next_outbox - 1),
                            attempts: 1 + rng.below(5) as u32,
                            due_at: rng.below(1_000),
                        });
                    }
                    // Completion keys made before a time are forgotten, a few at a time.
                    3 => {
                        batch.push(Change::ExpireCompletionKeys {
                            before: rng.below(100),
                            limit: 1 + rng.below(3) as usize,
                        });
                    }
                    // A message recorded, or buffered ones expired.
                    4 => batch.push(Change::Message(Box::new(message(&mut rng, &tenant)))),
                    5 if rng.below(2) == 0 => batch.push(Change::ExpireMessages {
                        now: rng.below(100),
                        limit: 1 + rng.below(3) as usize,
                    }),
                    // A finished instance archived (retention), its facts kept.
                    6 if rng.below(2) == 0 => {
                        let finished = state
                            .iter()
                            .find(|((t, _), i)| *t == tenant && i.ended_at.is_some())
                            .map(|(k, i)| (k.clone(), i.clone()));
                        if let Some((key, instance)) = finished {
                            state.remove(&key);
                            batch.push(Change::Archive {
                                tenant,
                                instance: instance.id.clone(),
                                workflow: instance.definition_id.clone(),
                                ended_at: instance.ended_at.unwrap_or_default(),
                                facts: Box::new(flowgate::metrics::Facts {
                                    instance: instance.id.clone(),
                                    started_at: instance.started_at,
                                    ..Default::default()
                                }),
                            });
                        }
                    }
                    _ => {
                        let id = format!("i{}", rng.below(6));
                        let key = (tenant.clone(), id.clone());
                        let before = state.get(&key).cloned();
                        let mut after =
                            mutate(&mut rng, before.as_ref().unwrap_or(&blank(&tenant, &id)));
                        let events: Vec<Event> = (0..rng.below(3))
                            .map(|n| event(after.history_len + n))
                            .collect();
                        after.history_len += events.len() as u64;
                        let effects: Vec<OutboxEntry> = (0..rng.below(3))
                            .map(|_| {
                                let entry = OutboxEntry {
                                    id: next_outbox,
                                    tenant: tenant.clone(),
                                    instance: id.clone(),
                                    created_at: 0,
                                    effect: flowgate::engine::Effect::Notify(Notification {
                                        kind: NotificationKind::Reminder,
                                        task: None,
                                        title: format!("n{next_outbox}"),
                                        assignee: None,
                                        roles: Vec::new(),
                                        link_expires_at: None,
                                    }),
                                    attempts: 0,
                                    due_at: rng.below(400),
                                };
                                outbox.push((tenant.clone(), next_outbox));
                                next_outbox += 1;
                                entry
                            })
                            .collect();
                        let idempotency_key = (before.is_none() && rng.below(2) == 0)
                            .then(|| format!("k{}", rng.below(3)));
                        let completion_key = (rng.below(3) == 0).then(|| {
                            Box::new(CompletionKey {
                                key: format!("c{}", rng.below(3)),
                                fingerprint: format!("f{}", rng.below(2)),
                                task: format!("{id}.t0"),
                                answer: serde_json::json!({"version": after.version}),
                                at: rng.below(100),
                            })
                        });
                        state.insert(key, after.clone());
                        batch.push(Change::Instance {
                            before: before.as_ref().map(IndexKeys::of),
                            after: Arc::new(after),
                            events,
                            outbox: effects,
                            idempotency_key,
                            completion_key,
                        });
                    }
                }
            }
            redb.commit(batch.clone().into())
                .unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
            model
                .commit(batch.clone().into())
                .unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
            let (got, want) = (snapshot(&redb), snapshot(&model));
            if got != want {
                let diff: Vec<_> = got
                    .lines()
                    .zip(want.lines())
                    .filter(|(a, b)| a != b)
                    .take(3)
                    .collect();
                panic!("seed {seed} step {step}: redb differs from the model: {diff:#?}");
            }
            // Now and then the commits so far become durable in redb itself (a checkpoint),
            // and the log starts over.
            if rng.below(20) == 0 {
                redb.checkpoint()
                    .unwrap_or_else(|e| panic!("seed {seed} step {step}: checkpoint: {e}"));
            }
            // What a kill -9 now would leave: the files as they are (the page cache's view),
            // with commits since the last checkpoint only in the write-ahead log. Opened, it
            // answers as the model does, torn tail or not.
            if rng.below(10) == 0 {
                let crashed = dir.path().join(format!("crash-{step}.redb"));
                std::fs::copy(dir.path().join("model.redb"), &crashed)
                    .unwrap_or_else(|e| panic!("{e}"));
                let mut log = std::fs::read(dir.path().join("model.redb-wal"))
                    .unwrap_or_else(|e| panic!("{e}"));
                if rng.below(2) == 0 {
                    // A record torn at the end: garbage where the next one would start.
                    let end = log.iter().rposition(|b| *b != 0).unwrap_or(0) + 1;
                    log.truncate(end);
                    log.extend_from_slice(&[0xAB; 40]);
                }
                std::fs::write(dir.path().join(format!("crash-{step}.redb-wal")), log)
                    .unwrap_or_else(|e| panic!("{e}"));
                let reopened =
                    RedbStore::open(&crashed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                assert!(
                    snapshot(&reopened) == want,
                    "seed {seed} step {step}: the store after a crash differs from the model"
                );
                assert_eq!(reopened.last_outbox_id().ok(), redb.last_outbox_id().ok());
            }
        }
        // An online backup of it answers alike, every table copied.
        let copy = dir.path().join("backup.redb");
        redb.backup(&copy)
            .unwrap_or_else(|e| panic!("seed {seed}: backup: {e}"));
        let restored = RedbStore::open(&copy).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(
            snapshot(&restored) == snapshot(&redb),
            "seed {seed}: the backup differs from its store"
        );
        assert_eq!(restored.last_outbox_id().ok(), redb.last_outbox_id().ok());
    }
}

#[test]
fn a_file_of_another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("old.redb");
    {
        let db = redb::Database::create(&path).unwrap_or_else(|e| panic!("{e}"));
        let txn = db.begin_write().unwrap_or_else(|e| panic!("{e}"));
        {
            let def: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            let mut meta = txn.open_table(def).unwrap_or_else(|e| panic!("{e}"));
            meta.insert("schema_version", 99)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        txn.commit().unwrap_or_else(|e| panic!("{e}"));
    }
    let err = RedbStore::open(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("schema version 99") && err.contains("reads version 5"),
        "{err}"
    );
}

#[test]
fn a_version_1_file_gets_its_listing_and_ended_indexes_when_opened() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("v1.redb");
    let mut done = blank("acme", "i1");
    done.status = Status::Completed;
    done.ended_at = Some(500);
    let instances = [blank("acme", "i0"), done, blank("acme", "i2")];
    {
        let store = RedbStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let changes: Vec<Change> = instances
            .iter()
            .map(|i| Change::Instance {
                before: None,
                after: Arc::new(i.clone()),
                events: Vec::new(),
                outbox: Vec::new(),
                idempotency_key: None,
                completion_key: None,
            })
            .collect();
        store
            .commit(changes.clone().into())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Make it a version 1 file: no listing table, version 1.
    {
        let db = redb::Database::create(&path).unwrap_or_else(|e| panic!("{e}"));
        let txn = db.begin_write().unwrap_or_else(|e| panic!("{e}"));
        let listing: redb::TableDefinition<(&str, &str, &str), ()> =
            redb::TableDefinition::new("listing");
        assert!(txn.delete_table(listing).unwrap_or(false));
        let ended: redb::TableDefinition<(&str, u64, &str), ()> =
            redb::TableDefinition::new("ended");
        assert!(txn.delete_table(ended).unwrap_or(false));
        {
            let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            let mut meta = txn.open_table(meta).unwrap_or_else(|e| panic!("{e}"));
            meta.insert("schema_version", 1)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        txn.commit().unwrap_or_else(|e| panic!("{e}"));
    }
    let store = RedbStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let list = |definition: &str, status: &str| {
        let filter = InstanceFilter {
            definition: Some(definition.to_string()),
            status: Some(status.to_string()),
            limit: 10,
            ..Default::default()
        };
        let found = store.instances("acme", &filter).unwrap_or_default();
        found.into_iter().map(|i| i.id).collect::<Vec<_>>()
    };
    assert_eq!(list("d", "running"), ["i0", "i2"]);
    assert_eq!(list("e", "completed"), ["i1"]);
    assert!(list("e", "running").is_empty());
    // Finished instances by their end, for retention (schema 5).
    let ended = store.ended_before("acme", u64::MAX, 10);
    assert_eq!(ended.ok(), Some(vec![(500, "i1".to_string())]));
}

/// Schema 2 stored the three plugin calls as three effects; schema 3 has one. A call still
/// pending in the outbox of a schema 2 file must be carried out after the upgrade, not refused
/// as corrupt.
#[test]
fn a_version_2_outbox_keeps_its_pending_plugin_calls() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("v2.redb");
    drop(RedbStore::open(&path).unwrap_or_else(|e| panic!("{e}")));
    let old = [
        serde_json::json!({"effect": "run-action", "token": 1, "activation": 2, "attempt": 1,
            "step": "pay", "plugin": "bank", "action": "transfer", "params": {"to": "x"},
            "key": "i0/pay/2/1"}),
        serde_json::json!({"effect": "evaluate-policy", "token": 1, "activation": 3, "attempt": 2,
            "step": "approval", "plugin": "policy", "amount": 1200, "currency": "USD",
            "category": "office", "requester": "alice"}),
        serde_json::json!({"effect": "evaluate-route", "token": 4, "activation": 5, "attempt": 1,
            "step": "triage", "plugin": "router", "candidates": ["a", "b"]}),
    ];
    {
        let db = redb::Database::create(&path).unwrap_or_else(|e| panic!("{e}"));
        let txn = db.begin_write().unwrap_or_else(|e| panic!("{e}"));
        {
            let outbox: redb::TableDefinition<(&str, u64), &[u8]> =
                redb::TableDefinition::new("outbox");
            let due: redb::TableDefinition<(&str, u64, u64), ()> =
                redb::TableDefinition::new("outbox_due");
            let mut outbox = txn.open_table(outbox).unwrap_or_else(|e| panic!("{e}"));
            let mut due = txn.open_table(due).unwrap_or_else(|e| panic!("{e}"));
            for (n, effect) in old.iter().enumerate() {
                let id = n as u64 + 1;
                let entry = serde_json::json!({"id": id, "tenant": "acme", "instance": "i0",
                    "created_at": 0, "effect": effect, "attempts": 0, "due_at": 0});
                let bytes = serde_json::to_vec(&entry).unwrap_or_default();
                outbox
                    .insert(("acme", id), bytes.as_slice())
                    .unwrap_or_else(|e| panic!("{e}"));
                due.insert(("acme", 0, id), ())
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            let mut meta = txn.open_table(meta).unwrap_or_else(|e| panic!("{e}"));
            meta.insert("schema_version", 2)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        txn.commit().unwrap_or_else(|e| panic!("{e}"));
    }
    let store = RedbStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let pending = store
        .due_outbox("acme", 10, 10, &|_| false)
        .unwrap_or_else(|e| panic!("{e}"));
    let calls: Vec<(String, PluginRequest)> = pending
        .into_iter()
        .filter_map(|entry| match entry.effect {
            flowgate::engine::Effect::CallPlugin(call) => Some((call.plugin, call.request)),
            _ => None,
        })
        .collect();
    assert_eq!(
        calls,
        [
            (
                "bank".to_string(),
                PluginRequest::StepAction {
                    action: "transfer".into(),
                    params: serde_json::json!({"to": "x"}),
                    key: "i0/pay/2/1".into(),
                }
            ),
            (
                "policy".to_string(),
                PluginRequest::ApprovalPolicy {
                    amount: Some(1200),
                    currency: "USD".into(),
                    category: "office".into(),
                    requester: "alice".into(),
                }
            ),
            (
                "router".to_string(),
                PluginRequest::Router {
                    candidates: vec!["a".into(), "b".into()]
                }
            ),
        ]
    );
}

fn call_record(plugin: &str, instance: &str) -> flowgate::store::CallRecord {
    flowgate::store::CallRecord {
        tenant: "t".to_string(),
        plugin: plugin.to_string(),
        seq: 0,
        at: 1_000,
        sha256: "ab".repeat(32),
        instance: instance.to_string(),
        workflow: "w".to_string(),
        workflow_version: 1,
        step: "s".to_string(),
        request: PluginRequest::Router {
            candidates: vec!["a".to_string()],
        },
        data: "{}".to_string(),
        decision: serde_json::json!({"next": ["a"]}),
        fuel: 10,
        replayable: true,
    }
}

#[test]
fn recorded_calls_keep_the_newest_per_plugin_in_both_stores_and_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("calls.redb");
    let redb = RedbStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let mem = MemStore::new();
    let record = |plugin: &str, instance: &str, keep: u64| Change::RecordCall {
        record: Box::new(call_record(plugin, instance)),
        keep,
    };
    let batches = [
        vec![
            record("p", "i1", 3),
            record("p", "i2", 3),
            record("q", "j1", 3),
        ],
        vec![record("p", "i3", 3), record("p", "i4", 3)],
        // The window shrinks: older ones beyond it go too.
        vec![record("p", "i5", 2)],
    ];
    let seen = |store: &dyn Storage, plugin: &str| -> Vec<(u64, String)> {
        store
            .call_records("t", plugin, 10)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|r| (r.seq, r.instance))
            .collect()
    };
    for batch in &batches {
        redb.commit(batch.clone().into())
            .unwrap_or_else(|e| panic!("{e}"));
        mem.commit(batch.clone().into())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let newest = vec![(5, "i5".to_string()), (4, "i4".to_string())];
    assert_eq!(seen(&redb, "p"), newest);
    assert_eq!(seen(&mem, "p"), newest);
    assert_eq!(seen(&redb, "q"), vec![(1, "j1".to_string())]);
    assert_eq!(seen(&mem, "q"), seen(&redb, "q"));
    assert_eq!(
        redb.call_records("t", "p", 1).map(|r| r.len()).ok(),
        Some(1)
    );
    // Kept through a close without a checkpoint's help: numbering goes on.
    drop(redb);
    let redb = RedbStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    redb.commit(Arc::from([record("p", "i6", 2)]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        seen(&redb, "p"),
        vec![(6, "i6".to_string()), (5, "i5".to_string())]
    );
}

/// redb applies commits behind the write-ahead log, on a thread of its own; a read, on the
/// committing thread or another, still sees every commit acknowledged before it began, and so do
/// the indexes a list reads.
#[test]
fn a_read_sees_every_commit_acknowledged_before_it_while_redb_applies_them_behind_the_log() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("behind.redb");
    let store = Arc::new(RedbStore::open(&path).unwrap_or_else(|e| panic!("{e}")));
    let acknowledged = Arc::new(std::sync::atomic::AtomicU64::new(0));
    const COMMITS: u64 = 400;
    // Another thread reads while the commits go on: whatever it saw acknowledged, it reads.
    let reader = {
        let (store, acknowledged) = (store.clone(), acknowledged.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            loop {
                let seen = acknowledged.load(std::sync::atomic::Ordering::Acquire);
                let stored = store
                    .instance("acme", "i1")
                    .unwrap_or_else(|e| panic!("{e}"))
                    .map_or(0, |i| i.version);
                assert!(
                    stored >= seen,
                    "version {seen} was acknowledged, the store read {stored}"
                );
                reads += 1;
                if seen == COMMITS {
                    return reads;
                }
            }
        })
    };
    let mut before: Option<IndexKeys> = None;
    for version in 1..=COMMITS {
        let mut after = blank("acme", "i1");
        after.version = version;
        // The instance moves between the two workflows, so the listing index changes each time.
        after.definition_id = if version % 2 == 0 { "d" } else { "e" }.to_string();
        let keys = IndexKeys::of(&after);
        store
            .commit(Arc::from([Change::Instance {
                before: before.replace(keys),
                after: Arc::new(after),
                events: vec![event(version)],
                outbox: Vec::new(),
                idempotency_key: None,
                completion_key: None,
            }]))
            .unwrap_or_else(|e| panic!("{e}"));
        acknowledged.store(version, std::sync::atomic::Ordering::Release);
        let listed = |workflow: &str| {
            let filter = InstanceFilter {
                definition: Some(workflow.to_string()),
                limit: 10,
                ..InstanceFilter::default()
            };
            store
                .instances("acme", &filter)
                .unwrap_or_else(|e| panic!("{e}"))
                .iter()
                .map(|i| i.version)
                .collect::<Vec<_>>()
        };
        let (now_in, not_in) = if version % 2 == 0 {
            ("d", "e")
        } else {
            ("e", "d")
        };
        assert_eq!(listed(now_in), vec![version], "commit {version}");
        assert!(listed(not_in).is_empty(), "commit {version}");
    }
    let reads = reader
        .join()
        .unwrap_or_else(|_| panic!("the reader failed"));
    assert!(reads > 0);
    // And all of it is there after a close and an open.
    drop(store);
    let store = RedbStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let stored = store
        .instance("acme", "i1")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored.map(|i| i.version), Some(COMMITS));
}

/// Checkpoints run beside commits (a checkpoint holds commits only for its short second step):
/// none fails or waits on the other for good, and what a kill -9 after the last checkpoint
/// leaves (the files as they are) opens with every commit acknowledged, those the log alone
/// holds included. (A copy of the files keeps what the page cache holds, as a kill -9 does, so
/// this does not stand for a power loss.)
#[test]
fn commits_made_while_checkpoints_run_survive_a_crash_after_them() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("busy.redb");
    let store = Arc::new(RedbStore::open(&path).unwrap_or_else(|e| panic!("{e}")));
    const COMMITS: u64 = 300;
    const INSTANCES: u64 = 40;
    // Checkpoints run until this many commits are acknowledged; the rest are only in the log.
    const CHECKPOINTS_UNTIL: u64 = 240;
    let acknowledged = Arc::new(AtomicU64::new(0));
    let checkpoints = {
        let (store, acknowledged) = (store.clone(), acknowledged.clone());
        std::thread::spawn(move || {
            let mut made = 0;
            while acknowledged.load(Ordering::Acquire) < CHECKPOINTS_UNTIL {
                store
                    .checkpoint()
                    .unwrap_or_else(|e| panic!("checkpoint: {e}"));
                made += 1;
            }
            made
        })
    };
    let id = |commit: u64, n: u64| format!("c{commit}-i{n}");
    for commit in 1..=COMMITS {
        if commit == CHECKPOINTS_UNTIL + 1 {
            // The last checkpoint has finished before the commits only the log will hold.
            while !checkpoints.is_finished() {
                std::thread::yield_now();
            }
        }
        let changes: Vec<Change> = (0..INSTANCES)
            .map(|n| Change::Instance {
                before: None,
                after: Arc::new(blank("acme", &id(commit, n))),
                events: vec![event(1)],
                outbox: Vec::new(),
                idempotency_key: None,
                completion_key: None,
            })
            .collect();
        store
            .commit(changes.clone().into())
            .unwrap_or_else(|e| panic!("commit {commit}: {e}"));
        acknowledged.store(commit, Ordering::Release);
    }
    let made = checkpoints
        .join()
        .unwrap_or_else(|_| panic!("the checkpoints failed"));
    assert!(made > 1, "only {made} checkpoint(s) ran beside the commits");
    let crashed = dir.path().join("crashed.redb");
    std::fs::copy(&path, &crashed).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(
        dir.path().join("busy.redb-wal"),
        dir.path().join("crashed.redb-wal"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let reopened = RedbStore::open(&crashed).unwrap_or_else(|e| panic!("{e}"));
    let missing: Vec<u64> = (1..=COMMITS)
        .filter(|commit| {
            (0..INSTANCES).any(|n| {
                reopened
                    .instance("acme", &id(*commit, n))
                    .unwrap_or_else(|e| panic!("{e}"))
                    .is_none()
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged commits lost after the crash, the first {:?}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
}
