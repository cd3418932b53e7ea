//! Scheduled starts: each workflow's schedules (its latest version's) start instances at their
//! due times, exactly once per due time across crashes and restarts.
//!
//! A schedule's state in the store says up to which due time it has handled; the driver looks
//! a few times a second and handles what is due, one start per schedule per pass. A start and
//! the state that records it commit together, and the start carries the idempotency key
//! `schedule:{workflow}:{schedule}:{due}`, so a due time never starts twice. After downtime, due
//! times missed by less than the schedule's catch-up window still start (one per pass); older
//! ones are counted as missed. A new schedule starts at its first due time after it is seen.

use std::sync::Arc;

use super::prepare::StartRequest;
use super::writer::Request;
use super::{Flowgate, ServiceError};
use crate::definition::{Definition, Overlap, Schedule};
use crate::engine::schedule::Due;
use crate::engine::{Millis, Status};
use crate::store::ScheduleState;

/// How often the driver looks at the schedules, at most.
pub(crate) const SCHEDULE_PASS_MS: u64 = 200;

/// Due times one pass walks past at most (missed or skipped), so a long outage of a frequent
/// schedule is caught up over a few passes rather than in one.
const WALK: usize = 10_000;

/// A schedule's state, with what the definition says of it, as the API shows it.
#[derive(Debug, Clone)]
pub struct ScheduleView {
    pub schedule: Schedule,
    pub state: ScheduleState,
    /// Its next due time after what it has handled; none while paused.
    pub next_due: Option<Millis>,
}

impl Flowgate {
    /// Hands each schedule with something due to a task of its own; returns how many.
    pub(crate) fn dispatch_schedules(&self) -> Result<usize, ServiceError> {
        let now = self.shared.clock.now();
        let mut count = 0;
        for tenant in self.shared.store.tenants()? {
            if self.is_paused(&tenant) {
                continue;
            }
            let states = self.shared.store.schedules(&tenant)?;
            for def in self.scheduled(&tenant)? {
                for schedule in &def.schedules {
                    let state = states
                        .iter()
                        .find(|s| s.workflow == def.id && s.schedule == schedule.id);
                    if !has_work(state, schedule, now, |id| self.is_running(&tenant, id)) {
                        continue;
                    }
                    let key = (
                        tenant.clone(),
                        format!("schedule:{}:{}", def.id, schedule.id),
                    );
                    if !self.shared.dispatch.claim(&key) {
                        continue;
                    }
                    count += 1;
                    let running = self.shared.dispatch.started(&self.shared);
                    let (this, tenant, def) = (self.clone(), tenant.clone(), def.clone());
                    let (schedule, state) = (schedule.clone(), state.cloned());
                    tokio::spawn(async move {
                        let _running = running;
                        let result = this.run_schedule(&tenant, &def, &schedule, state).await;
                        this.shared.dispatch.release(&key);
                        if let Err(error) = result {
                            tracing::warn!(%tenant, workflow = %def.id, schedule = %schedule.id, %error, "schedule: a pass failed; it is tried again");
                        }
                    });
                }
            }
        }
        Ok(count)
    }

    /// The latest definitions of the tenant that have schedules.
    fn scheduled(&self, tenant: &str) -> Result<Vec<Arc<Definition>>, ServiceError> {
        let mut out = Vec::new();
        for stored in self.latest_definitions(tenant)? {
            if !stored.definition.schedules.is_empty() {
                out.push(
                    self.shared
                        .definition(tenant, &stored.definition.id, stored.version)?,
                );
            }
        }
        Ok(out)
    }

    fn is_running(&self, tenant: &str, id: &str) -> bool {
        matches!(
            self.shared.committed(tenant, id),
            Ok(Some(instance)) if instance.status == Status::Running
        )
    }

    /// Handles what one schedule has due: at most one start.
    async fn run_schedule(
        &self,
        tenant: &str,
        def: &Definition,
        schedule: &Schedule,
        state: Option<ScheduleState>,
    ) -> Result<(), ServiceError> {
        let now = self.shared.clock.now();
        let Some(mut state) = state else {
            // First seen: due times from now on.
            let state = ScheduleState::new(tenant, &def.id, &schedule.id, now);
            return self.save_schedule(state, None).await.map(drop);
        };
        if state.paused {
            return Ok(());
        }
        let Ok(due) = Due::of(schedule) else {
            return Ok(());
        };
        let before = state.clone();
        let running = state
            .last_instance
            .as_deref()
            .is_some_and(|id| self.is_running(tenant, id));
        let mut start = None;
        if let Some(kept) = state.pending.filter(|_| !running) {
            state.pending = None;
            start = Some(kept);
        } else {
            let catch_up = u64::try_from(schedule.catch_up.as_millis()).unwrap_or(u64::MAX);
            for _ in 0..WALK {
                let Some(next) = due.next_after(state.handled_until).filter(|t| *t <= now) else {
                    break;
                };
                state.handled_until = next;
                if now - next > catch_up {
                    state.note(next, now, "missed");
                    continue;
                }
                match (schedule.overlap, running) {
                    (Overlap::Allow, _) | (_, false) => {
                        start = Some(next);
                        break;
                    }
                    (Overlap::BufferOne, true) if state.pending.is_none() => {
                        state.pending = Some(next);
                        state.note(next, now, "kept");
                    }
                    _ => {
                        state.note(next, now, "skipped");
                    }
                }
            }
        }
        let Some(due_at) = start else {
            if state == before {
                return Ok(());
            }
            return self.save_schedule(state, None).await.map(drop);
        };
        let key = format!("schedule:{}:{}:{due_at}", def.id, schedule.id);
        let request = StartRequest {
            tenant: tenant.to_string(),
            definition: def.id.clone(),
            data: schedule.data.clone(),
            started_by: format!("schedule {}", schedule.id),
            key: Some(key.clone()),
            parent: None,
            process: None,
        };
        match self.prepare_start(&request, now).await {
            Ok(prepared) => {
                state.note(due_at, now, "started");
                self.save_schedule(state, Some((Box::new(prepared), key)))
                    .await?;
            }
            Err(error) => {
                tracing::warn!(%tenant, workflow = %def.id, schedule = %schedule.id, %error, "schedule: a start was refused");
                state.note(due_at, now, "failed").error = Some(error.to_string());
                self.save_schedule(state, None).await?;
            }
        }
        Ok(())
    }

    /// Commits a schedule's new state (refused if another change got there first), with the
    /// start it records.
    async fn save_schedule(
        &self,
        state: ScheduleState,
        start: Option<(Box<super::prepare::Prepared>, String)>,
    ) -> Result<ScheduleState, ServiceError> {
        let tenant = state.tenant.clone();
        self.send("schedule", &tenant, |reply| Request::Schedule {
            state: Box::new(state),
            start,
            reply,
        })
        .await
    }

    /// The tenant's schedules with their states, by workflow and id.
    pub fn schedules(&self, tenant: &str) -> Result<Vec<ScheduleView>, ServiceError> {
        let states = self.shared.store.schedules(tenant)?;
        let mut out = Vec::new();
        for def in self.scheduled(tenant)? {
            for schedule in &def.schedules {
                let state = states
                    .iter()
                    .find(|s| s.workflow == def.id && s.schedule == schedule.id)
                    .cloned()
                    .unwrap_or_else(|| {
                        let now = self.shared.clock.now();
                        ScheduleState::new(tenant, &def.id, &schedule.id, now)
                    });
                let next_due = if state.paused {
                    None
                } else {
                    Due::of(schedule)
                        .ok()
                        .and_then(|d| d.next_after(state.handled_until))
                };
                out.push(ScheduleView {
                    schedule: schedule.clone(),
                    state,
                    next_due,
                });
            }
        }
        Ok(out)
    }

    /// Pauses or resumes a schedule. Resuming starts from now: what fell due while it was
    /// paused does not start.
    pub async fn pause_schedule(
        &self,
        tenant: &str,
        workflow: &str,
        schedule: &str,
        paused: bool,
        reason: String,
    ) -> Result<ScheduleView, ServiceError> {
        let found = self
            .schedules(tenant)?
            .into_iter()
            .find(|v| v.state.workflow == workflow && v.schedule.id == schedule)
            .ok_or_else(|| ServiceError::NotFound {
                what: "schedule",
                id: format!("{workflow}/{schedule}"),
            })?;
        let mut state = found.state;
        if state.paused == paused {
            let what = if paused { "paused" } else { "running" };
            return Err(ServiceError::Command(
                crate::engine::CommandError::Conflict(format!(
                    "schedule `{schedule}` of `{workflow}` is {what} already"
                )),
            ));
        }
        state.paused = paused;
        state.pause_reason = paused.then_some(reason);
        if !paused {
            state.handled_until = state.handled_until.max(self.shared.clock.now());
            state.pending = None;
        }
        let state = self.save_schedule(state, None).await?;
        let next_due = if state.paused {
            None
        } else {
            Due::of(&found.schedule)
                .ok()
                .and_then(|d| d.next_after(state.handled_until))
        };
        Ok(ScheduleView {
            schedule: found.schedule,
            state,
            next_due,
        })
    }
}

/// Whether a schedule has something to do now: no state yet, a kept due time whose blocker
/// ended, or a due time reached.
fn has_work(
    state: Option<&ScheduleState>,
    schedule: &Schedule,
    now: Millis,
    running: impl Fn(&str) -> bool,
) -> bool {
    let Some(state) = state else {
        return true;
    };
    if state.paused {
        return false;
    }
    if state.pending.is_some() && !state.last_instance.as_deref().is_some_and(&running) {
        return true;
    }
    Due::of(schedule)
        .ok()
        .and_then(|d| d.next_after(state.handled_until))
        .is_some_and(|t| t <= now)
}
