//! Messages from other systems: a step subscribes to a message by name and correlation (the
//! value of a field of the instance data), and the message moves it on when it arrives.
//!
//! A `receive` step waits for its message; a message boundary on a human step withdraws the
//! step's open tasks and takes another way. Which instances a message reaches is the store's
//! index over the subscriptions; here one instance takes it.

use serde_json::Value;

use super::command::{CommandError, Message};
use super::effect::{Effect, Notification, NotificationKind};
use super::event::{Actor, EventKind};
use super::run::Run;
use super::state::{DeadlinePoint, Subscription, TaskStatus, TimerKind, Wait};
use super::{Millis, data_path};
use crate::definition::{Escalation, FormField, ReceiveStep, Step};

/// The longest correlation a message may carry, in bytes.
pub const MAX_CORRELATION: usize = 512;

/// The correlation a data value gives: text as it is, an integer in decimal. Other values (a
/// fraction, a list) do not identify a business case and are refused.
pub fn correlation_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() && s.len() <= MAX_CORRELATION => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

impl Run<'_> {
    /// The correlation value of data field `field`, or why there is none.
    fn correlation(&self, field: &str) -> Result<String, String> {
        match data_path(&self.inst.data, field) {
            None | Some(Value::Null) => Err(format!(
                "correlate: the data has no field `{field}` to match messages on"
            )),
            Some(value) => correlation_of(value).ok_or_else(|| {
                format!(
                    "correlate: `{field}` is {value}; messages are matched on text (at most {MAX_CORRELATION} bytes) or an integer"
                )
            }),
        }
    }

    /// Subscribes token `id` (at `activation`) of step `step` to `message`.
    fn subscribe(
        &mut self,
        id: u64,
        activation: u64,
        step: &str,
        message: &str,
        correlation: String,
    ) -> String {
        let sub = format!("m{}", self.next_id());
        self.emit(
            Actor::System,
            EventKind::MessageAwaited {
                step: step.to_string(),
                token: id,
                message: message.to_string(),
                correlation: correlation.clone(),
            },
            None,
        );
        self.inst.subscriptions.insert(
            sub.clone(),
            Subscription {
                id: sub.clone(),
                message: message.to_string(),
                correlation,
                token: id,
                activation,
                step: step.to_string(),
                since: self.ctx.now,
            },
        );
        sub
    }

    /// Entering a `receive` step: subscribe, and arm its deadline.
    pub(crate) fn enter_receive(
        &mut self,
        id: u64,
        activation: u64,
        step: &ReceiveStep,
    ) -> Result<(), CommandError> {
        let correlation = match self.correlation(&step.correlate) {
            Ok(c) => c,
            Err(error) => {
                self.engine_incident(id, error);
                return Ok(());
            }
        };
        let subscription = self.subscribe(id, activation, &step.id, &step.message, correlation);
        self.set_wait(id, Wait::Message { subscription });
        if let Some(deadline) = &step.deadline {
            let now = self.ctx.now;
            let calendar = self.ctx.calendar;
            let due = calendar.after(now, &deadline.due);
            let mut points: Vec<(Millis, DeadlinePoint)> = deadline
                .reminders
                .iter()
                .filter(|before| !before.is_zero())
                .map(|before| (calendar.before(due, before), DeadlinePoint::Reminder))
                .filter(|(at, _)| *at > now)
                .collect();
            points.push((due, DeadlinePoint::Due));
            if let Some(escalation) = &deadline.escalation {
                let at = calendar.after(due, &escalation.after());
                points.push((at, DeadlinePoint::Escalate));
            }
            for (at, point) in points {
                self.arm(
                    at,
                    TimerKind::MessageDeadline {
                        token: id,
                        activation,
                        point,
                    },
                );
            }
        }
        Ok(())
    }

    /// Subscribes a human step's token to the messages that may interrupt it.
    pub(crate) fn subscribe_boundaries(&mut self, id: u64, activation: u64, step: &Step) {
        for boundary in step.boundaries() {
            match self.correlation(&boundary.correlate) {
                Ok(correlation) => {
                    self.subscribe(id, activation, step.id(), &boundary.message, correlation);
                }
                Err(error) => {
                    // Without its correlation the boundary could never be reached: say so
                    // rather than wait on a task that no message can interrupt.
                    self.engine_incident(id, format!("messages: {error}"));
                    return;
                }
            }
        }
    }

    /// Drops the subscriptions and message deadlines of token `id` (it leaves its step).
    pub(crate) fn unsubscribe(&mut self, id: u64) {
        self.inst.subscriptions.retain(|_, s| s.token != id);
        self.inst.timers.retain(
            |_, t| !matches!(t.kind, TimerKind::MessageDeadline { token, .. } if token == id),
        );
    }

    /// A message arrived: every step of this instance that waits for it takes it.
    /// The subscriptions that take `message`, its data checked against each: all of them take
    /// it, or none. A message already held for them (the instance is paused) has them taken.
    pub(crate) fn takers(&self, message: &Message) -> Result<Vec<Subscription>, CommandError> {
        let not_found = || CommandError::NotFound {
            what: "step waiting for the message",
            id: format!("{} ({})", message.name, message.correlation),
        };
        if !self.inst.awaits(&message.name, &message.correlation) {
            return Err(not_found());
        }
        if message
            .process
            .as_deref()
            .is_some_and(|p| p != self.inst.process_id())
        {
            return Err(not_found());
        }
        let subs: Vec<Subscription> = self
            .inst
            .subscriptions
            .values()
            .filter(|s| s.message == message.name && s.correlation == message.correlation)
            .filter(|s| self.live_token(s.token, s.activation).is_some())
            .cloned()
            .collect();
        if subs.is_empty() {
            return Err(not_found());
        }
        for sub in &subs {
            let fields = self.message_fields(sub)?;
            check_message_data(fields, message, &sub.step)?;
        }
        Ok(subs)
    }

    pub(crate) fn receive_message(&mut self, message: Message) -> Result<(), CommandError> {
        let subs = self.takers(&message)?;
        for sub in &subs {
            self.emit(
                Actor::System,
                EventKind::MessageReceived {
                    step: sub.step.clone(),
                    token: sub.token,
                    message: message.name.clone(),
                    id: message.id.clone(),
                },
                Some(format!("sent by {}", message.sent_by)),
            );
        }
        self.merge(message.data.clone(), Actor::System);
        for sub in subs {
            let Some(token) = self.live_token(sub.token, sub.activation) else {
                continue;
            };
            let step = self.step(&token.step.clone())?;
            self.unsubscribe(sub.token);
            match step {
                Step::Receive(_) => self.advance(sub.token, None, Actor::System, None)?,
                _ => {
                    let Some(boundary) =
                        step.boundaries().iter().find(|b| b.message == message.name)
                    else {
                        continue;
                    };
                    let open: Vec<String> = self
                        .inst
                        .tasks
                        .values()
                        .filter(|t| t.token == sub.token && t.status == TaskStatus::Open)
                        .map(|t| t.id.clone())
                        .collect();
                    for task in open {
                        self.cancel_task(&task);
                    }
                    self.emit(
                        Actor::System,
                        EventKind::StepCompleted {
                            step: sub.step.clone(),
                            token: sub.token,
                            outcome: Some(format!("message:{}", message.name)),
                        },
                        None,
                    );
                    let next = boundary.next.clone();
                    self.move_to(sub.token, &next)?;
                }
            }
        }
        Ok(())
    }

    /// The fields the step of `sub` declares for its message.
    fn message_fields(&self, sub: &Subscription) -> Result<&[FormField], CommandError> {
        let step = self.step(&sub.step)?;
        Ok(match step {
            Step::Receive(r) => &r.fields,
            other => other
                .boundaries()
                .iter()
                .find(|b| b.message == sub.message)
                .map(|b| b.fields.as_slice())
                .unwrap_or(&[]),
        })
    }

    /// A point of a receive step's deadline came.
    pub(crate) fn message_deadline(
        &mut self,
        token: u64,
        activation: u64,
        point: DeadlinePoint,
    ) -> Result<(), CommandError> {
        let waiting = self
            .live_token(token, activation)
            .is_some_and(|t| matches!(t.wait, Wait::Message { .. }));
        let Some(Step::Receive(step)) = self.token_step(token).filter(|_| waiting) else {
            return Ok(());
        };
        let step = step.clone();
        let title = format!("{}: waiting for `{}`", step_title(&step), step.message);
        let notify = |kind, roles: Vec<String>| {
            Effect::Notify(Notification {
                kind,
                task: None,
                title: title.clone(),
                assignee: None,
                roles,
                link_expires_at: None,
            })
        };
        let watchers: Vec<String> = step.role.iter().cloned().collect();
        let late = |action: String| EventKind::MessageLate {
            step: step.id.clone(),
            token,
            action,
        };
        match point {
            DeadlinePoint::Reminder => {
                self.emit(Actor::Timer, late("reminded".to_string()), None);
                self.effect(notify(NotificationKind::Reminder, watchers));
            }
            DeadlinePoint::Due => {
                self.emit(Actor::Timer, late("overdue".to_string()), None);
                self.effect(notify(NotificationKind::Overdue, watchers));
            }
            DeadlinePoint::Escalate => {
                match step.deadline.as_ref().and_then(|d| d.escalation.clone()) {
                    Some(Escalation::Notify { roles, .. }) => {
                        self.emit(
                            Actor::Timer,
                            late(format!("notified {}", roles.join(", "))),
                            None,
                        );
                        self.effect(notify(NotificationKind::Escalated, roles));
                    }
                    Some(Escalation::Outcome { outcome, .. }) => {
                        self.emit(Actor::Timer, late(format!("took outcome {outcome}")), None);
                        self.effect(notify(NotificationKind::Escalated, watchers));
                        let Some(next) = step.on.get(&outcome).cloned() else {
                            return Ok(());
                        };
                        self.unsubscribe(token);
                        self.emit(
                            Actor::Timer,
                            EventKind::StepCompleted {
                                step: step.id.clone(),
                                token,
                                outcome: Some(outcome),
                            },
                            Some("overdue".to_string()),
                        );
                        self.move_to(token, &next)?;
                    }
                    // Validation refuses a reassignment: a wait for a message has no task.
                    Some(Escalation::Reassign { .. }) | None => {}
                }
            }
        }
        Ok(())
    }
}

fn step_title(step: &ReceiveStep) -> &str {
    if step.title.is_empty() {
        &step.id
    } else {
        &step.title
    }
}

/// A message's data against the fields its step declares: each declared, of its type; nothing
/// undeclared (the step says what it takes, and nothing else reaches the instance).
fn check_message_data(
    fields: &[FormField],
    message: &Message,
    step: &str,
) -> Result<(), CommandError> {
    if let Some(key) = message
        .data
        .keys()
        .find(|k| !fields.iter().any(|f| f.name == **k))
    {
        let declared: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        let takes = if declared.is_empty() {
            "declares no fields, so the message carries no data".to_string()
        } else {
            format!("takes {}", declared.join(", "))
        };
        return Err(CommandError::invalid(
            format!("data.{key}"),
            format!(
                "step `{step}` waiting for `{}` {takes}; `{key}` is not among them",
                message.name
            ),
        ));
    }
    super::tasks::check_form(fields, &message.data)
}
