//! The workflow engine's pure core: a command and an instance's state go in; the new state,
//! history events and effects come out. Time is an input; effects (plugin calls, timers,
//! notifications, sub-workflows) are data that a driver carries out after the commit.
//!
//! ```
//! use flowgate_engine::calendar::Calendar;
//! use flowgate_engine::definition::{Format, parse};
//! use flowgate_engine::{Command, Ctx, Effect, Person, StartSpec, apply, start};
//!
//! let def = parse("hello.toml", r#"
//! id = "hello"
//! start = "greet"
//! [[steps]]
//! id = "greet"
//! kind = "task"
//! role = "greeter"
//! next = "done"
//! [[steps]]
//! id = "done"
//! kind = "end"
//! "#, Format::Toml).expect("valid");
//! let calendar = Calendar::default();
//! let ctx = Ctx { def: &def, now: 1_000, calendar: &calendar };
//! let spec = StartSpec {
//!     id: "i-1".into(), version: 1, tenant: "acme".into(), data: Default::default(),
//!     plugins: Default::default(), parent: None, process: None, started_by: "ann".into(),
//! };
//! let (instance, _) = start(ctx, spec).expect("starts");
//! let task = instance.open_tasks().next().expect("a task").id.clone();
//! let done = Command::CompleteTask {
//!     task, by: Person::new("bo", &["greeter"]), outcome: None,
//!     data: Default::default(), expected_version: None, comment: None,
//! };
//! let (instance, applied) = apply(Ctx { def: &def, now: 2_000, calendar: &calendar }, instance, done).expect("completes");
//! assert!(applied.effects.iter().any(|e| matches!(e, Effect::Notify(_))));
//! assert_eq!(instance.status.as_str(), "completed");
//! ```

pub mod calendar;
mod capability;
mod command;
pub mod definition;
mod effect;
mod event;
mod fanout;
mod handoff;
mod lifecycle;
mod messages;
pub mod metrics;
pub mod process;
mod results;
mod run;
pub mod schedule;
mod state;
mod steps;
mod tasks;
pub mod time;

pub use capability::Capability;
pub use command::*;
pub use effect::{Effect, Notification, NotificationKind, PluginCall, PluginRequest};
pub use event::{Actor, Event, EventKind};
pub use lifecycle::migration_problems;
pub use messages::{MAX_CORRELATION, correlation_of};
pub use run::{Applied, Ctx, StartSpec, apply, start};
pub use state::*;

/// Milliseconds since the Unix epoch: the engine's only notion of time.
pub type Millis = u64;

/// The value at a dotted path (`customer.tier`) in instance data; a number picks an element of
/// a list (`quotes.0.price`).
pub fn data_path<'a>(
    data: &'a serde_json::Map<String, serde_json::Value>,
    path: &str,
) -> Option<&'a serde_json::Value> {
    let mut parts = path.split('.');
    let first = data.get(parts.next()?)?;
    parts.try_fold(first, |value, part| match value {
        serde_json::Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => value.get(part),
    })
}
