//! Streams commands into a redb store through the real service and prints each acknowledgement:
//! `started <key> <instance>` and `completed <instance>`. The crash test kills it with SIGKILL at
//! an arbitrary moment and checks that everything acknowledged survived.
//!
//! Usage: `crash-writer <store.redb> <workers>`

use std::sync::Arc;

use flowgate::engine::Person;
use flowgate::plugin::{PluginRegistry, PluginRuntime, RuntimeConfig};
use flowgate::service::{Flowgate, LogNotifier, SystemClock};
use flowgate::store::RedbStore;
use tokio::io::AsyncWriteExt;

/// A task, then a one-hour wait, then another task.
pub const WORKFLOW: &str = r#"
id = "crash"
start = "first"
[[steps]]
id = "first"
kind = "task"
role = "clerk"
next = "pause"
[[steps]]
id = "pause"
kind = "wait"
duration = "1h"
next = "second"
[[steps]]
id = "second"
kind = "task"
role = "clerk"
next = "end"
[[steps]]
id = "end"
kind = "end"
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: crash-writer <store.redb> <workers>"))?;
    let workers: usize = args.next().unwrap_or_else(|| "8".to_string()).parse()?;
    let store = Arc::new(RedbStore::open(&path)?);
    let runtime = PluginRuntime::new(RuntimeConfig {
        pool_slots: None,
        ..RuntimeConfig::default()
    })?;
    let flowgate = Flowgate::open(
        store,
        Arc::new(PluginRegistry::new(runtime)),
        Arc::new(SystemClock),
        Arc::new(LogNotifier),
    )?;
    flowgate.deploy("acme", "crash.toml", WORKFLOW).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for worker in 0..workers {
        let flowgate = flowgate.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let clerk = Person::new(format!("clerk-{worker}"), &["clerk"]);
            for n in 0.. {
                let key = format!("w{worker}-{n}");
                let Ok(instance) = flowgate
                    .start(
                        "acme",
                        "crash",
                        Default::default(),
                        "writer",
                        Some(key.clone()),
                    )
                    .await
                else {
                    return;
                };
                let _ = tx.send(format!("started {key} {}\n", instance.id));
                let Some(task) = instance.open_tasks().next().map(|t| t.id.clone()) else {
                    return;
                };
                if flowgate
                    .complete_task("acme", &task, clerk.clone(), None, Default::default())
                    .await
                    .is_ok()
                {
                    let _ = tx.send(format!("completed {}\n", instance.id));
                }
            }
        });
    }
    drop(tx);
    let mut out = tokio::io::stdout();
    while let Some(line) = rx.recv().await {
        out.write_all(line.as_bytes()).await?;
        out.flush().await?;
    }
    Ok(())
}
