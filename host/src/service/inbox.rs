//! Inboxes: a person's or a role's open tasks, with their details, filtered and paged.

use std::collections::BTreeMap;

use super::{Flowgate, ServiceError};
use crate::engine::{Instance, Millis, Task};
use crate::store::{Inbox, TaskRef};

/// Narrows an inbox. Unset fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only tasks of instances of this workflow.
    pub workflow: Option<String>,
    /// Only tasks of this step.
    pub step: Option<String>,
    /// Only tasks due before this time.
    pub due_before: Option<Millis>,
    /// Only tasks nobody has claimed.
    pub unclaimed: bool,
}

impl TaskFilter {
    fn matches(&self, instance: &Instance, task: &Task) -> bool {
        self.workflow
            .as_ref()
            .is_none_or(|w| *w == instance.definition_id)
            && self.step.as_ref().is_none_or(|s| *s == task.step)
            && self
                .due_before
                .is_none_or(|t| task.due_at.is_some_and(|due| due < t))
            && (!self.unclaimed || task.claimed_by.is_none())
    }
}

/// One page of an inbox. `next` is where the following page starts; `None` at the end. A
/// filtered page may hold fewer than `limit` tasks before the end: follow `next` until it is
/// `None`.
#[derive(Debug, Clone, Default)]
pub struct InboxPage {
    pub tasks: Vec<Task>,
    pub next: Option<String>,
}

/// How many index entries one filtered page reads at most, per task asked for.
const SCAN_FACTOR: usize = 20;

impl Flowgate {
    /// A page of a person's or role's open tasks matching `filter`, in task id order after
    /// `after`.
    pub fn inbox_page(
        &self,
        tenant: &str,
        inbox: &Inbox,
        filter: &TaskFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<InboxPage, ServiceError> {
        let store = &self.shared.store;
        let limit = limit.max(1);
        let budget = limit.saturating_mul(SCAN_FACTOR);
        let mut cache: BTreeMap<String, Instance> = BTreeMap::new();
        let mut page = InboxPage::default();
        let mut cursor = after.map(str::to_string);
        let mut scanned = 0;
        loop {
            let refs = store.inbox(tenant, inbox, "open", cursor.as_deref(), limit)?;
            let exhausted = refs.len() < limit;
            for TaskRef { task, instance } in refs {
                scanned += 1;
                cursor = Some(task.clone());
                if !cache.contains_key(&instance)
                    && let Some(found) = store.instance(tenant, &instance)?
                {
                    cache.insert(instance.clone(), found);
                }
                let Some(found) = cache.get(&instance) else {
                    continue;
                };
                if let Some(t) = found.tasks.get(&task)
                    && filter.matches(found, t)
                {
                    page.tasks.push(t.clone());
                    if page.tasks.len() == limit {
                        page.next = cursor;
                        return Ok(page);
                    }
                }
            }
            if exhausted {
                return Ok(page);
            }
            if scanned >= budget {
                page.next = cursor;
                return Ok(page);
            }
        }
    }
}
