//! The single writer: commands arrive on a channel, and everything that is waiting when the
//! writer is free goes into one durable transaction (group commit). A command is acknowledged
//! only after its transaction committed.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use super::{ServiceError, Shared};
use crate::definition::Definition;
use crate::engine::{self, Applied, Command, CommandError, Ctx, Instance, ParentLink, StartSpec};
use crate::plugin::PluginId;
use crate::store::{Change, OutboxEntry, StoredDefinition};

/// Commands waiting when the writer is free are committed together, up to this many.
const MAX_BATCH: usize = 512;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, ServiceError>>;

/// A start request.
pub(crate) struct StartRequest {
    pub tenant: String,
    pub definition: String,
    pub data: Map<String, Value>,
    pub started_by: String,
    pub key: Option<String>,
    pub parent: Option<ParentLink>,
}

pub(crate) enum Request {
    Deploy {
        tenant: String,
        definition: Box<Definition>,
        source: String,
        reply: Reply<(StoredDefinition, bool)>,
    },
    Start {
        start: Box<StartRequest>,
        reply: Reply<Instance>,
    },
    Command {
        tenant: String,
        instance: String,
        command: Box<Command>,
        /// The outbox entry this command reports on, cleared in the same transaction.
        done: Option<u64>,
        reply: Reply<Instance>,
    },
    Done {
        tenant: String,
        outbox: u64,
        reply: Reply<()>,
    },
    /// An outbox entry failed: its attempts and next try, stored.
    Retry {
        tenant: String,
        outbox: u64,
        attempts: u32,
        due_at: u64,
        reply: Reply<()>,
    },
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    next_outbox: u64,
}

/// An answer waiting for the commit.
enum Pending {
    Deploy(
        Reply<(StoredDefinition, bool)>,
        Result<(StoredDefinition, bool), ServiceError>,
    ),
    Instance(Reply<Instance>, Result<Instance, ServiceError>),
    Done(Reply<()>),
}

/// What one batch has changed so far, so that later commands in it see earlier ones.
#[derive(Default)]
struct Batch {
    changes: Vec<Change>,
    instances: HashMap<(String, String), Instance>,
    start_keys: HashMap<(String, String), String>,
    definitions: HashMap<(String, String), StoredDefinition>,
}

impl Writer {
    pub fn new(shared: Arc<Shared>, last_outbox: u64) -> Self {
        Writer {
            shared,
            next_outbox: last_outbox + 1,
        }
    }

    pub fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut requests = vec![first];
            while requests.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(more) => requests.push(more),
                    Err(_) => break,
                }
            }
            self.process(requests);
        }
    }

    fn process(&mut self, requests: Vec<Request>) {
        let now = self.shared.clock.now();
        let outbox_before = self.next_outbox;
        let mut batch = Batch::default();
        let mut pending = Vec::with_capacity(requests.len());
        for request in requests {
            match request {
                Request::Deploy {
                    tenant,
                    definition,
                    source,
                    reply,
                } => {
                    let result = self.deploy(&mut batch, tenant, *definition, source, now);
                    pending.push(Pending::Deploy(reply, result));
                }
                Request::Start { start, reply } => {
                    let result = self.start(&mut batch, *start, now);
                    pending.push(Pending::Instance(reply, result));
                }
                Request::Command {
                    tenant,
                    instance,
                    command,
                    done,
                    reply,
                } => {
                    let result = self.command(&mut batch, &tenant, &instance, *command, now);
                    if let Some(outbox) = done {
                        batch.changes.push(Change::Done { tenant, outbox });
                    }
                    pending.push(Pending::Instance(reply, result));
                }
                Request::Done {
                    tenant,
                    outbox,
                    reply,
                } => {
                    batch.changes.push(Change::Done { tenant, outbox });
                    pending.push(Pending::Done(reply));
                }
                Request::Retry {
                    tenant,
                    outbox,
                    attempts,
                    due_at,
                    reply,
                } => {
                    batch.changes.push(Change::Retry {
                        tenant,
                        outbox,
                        attempts,
                        due_at,
                    });
                    pending.push(Pending::Done(reply));
                }
            }
        }
        let committed = if batch.changes.is_empty() {
            Ok(())
        } else {
            let started = std::time::Instant::now();
            let committed = self.shared.store.commit(&batch.changes);
            let seconds = started.elapsed().as_secs_f64();
            self.shared.telemetry.commit(pending.len(), seconds);
            committed
        };
        match committed {
            Ok(()) => {
                for p in pending {
                    match p {
                        Pending::Deploy(reply, result) => drop(reply.send(result)),
                        Pending::Instance(reply, result) => drop(reply.send(result)),
                        Pending::Done(reply) => drop(reply.send(Ok(()))),
                    }
                }
                self.shared.watchers.changed(batch.instances.keys());
                if !batch.changes.is_empty() {
                    // notify_one keeps a permit when the driver is busy: no commit goes unnoticed.
                    self.shared.wake.notify_one();
                }
            }
            Err(error) => {
                // Nothing of the batch is stored: nobody is told it succeeded.
                tracing::error!(%error, "store.commit failed; the batch is refused");
                self.next_outbox = outbox_before;
                let message = error.to_string();
                for p in pending {
                    let failed = || {
                        ServiceError::Unavailable(format!("the store could not commit: {message}"))
                    };
                    match p {
                        Pending::Deploy(reply, _) => drop(reply.send(Err(failed()))),
                        Pending::Instance(reply, _) => drop(reply.send(Err(failed()))),
                        Pending::Done(reply) => drop(reply.send(Err(failed()))),
                    }
                }
            }
        }
    }

    fn deploy(
        &mut self,
        batch: &mut Batch,
        tenant: String,
        definition: Definition,
        source: String,
        now: u64,
    ) -> Result<(StoredDefinition, bool), ServiceError> {
        let key = (tenant.clone(), definition.id.clone());
        let latest = match batch.definitions.get(&key) {
            Some(d) => Some(d.clone()),
            None => self
                .shared
                .store
                .definition(&tenant, &definition.id, None)?,
        };
        if let Some(latest) = &latest
            && latest.definition == definition
        {
            return Ok((latest.clone(), false));
        }
        let stored = StoredDefinition {
            tenant,
            version: latest.map_or(1, |d| d.version + 1),
            definition,
            source,
            deployed_at: now,
        };
        batch.definitions.insert(key, stored.clone());
        batch.changes.push(Change::Definition(stored.clone()));
        Ok((stored, true))
    }

    fn start(
        &mut self,
        batch: &mut Batch,
        req: StartRequest,
        now: u64,
    ) -> Result<Instance, ServiceError> {
        let tenant = req.tenant.clone();
        if let Some(key) = &req.key {
            let known = match batch.start_keys.get(&(tenant.clone(), key.clone())) {
                Some(id) => Some(id.clone()),
                None => self.shared.store.started_with_key(&tenant, key)?,
            };
            if let Some(id) = known {
                return self.load(batch, &tenant, &id);
            }
        }
        let stored = match batch
            .definitions
            .get(&(tenant.clone(), req.definition.clone()))
        {
            Some(d) => d.clone(),
            None => self
                .shared
                .store
                .definition(&tenant, &req.definition, None)?
                .ok_or_else(|| ServiceError::NotFound {
                    what: "workflow",
                    id: req.definition.clone(),
                })?,
        };
        let def = self
            .shared
            .definition(&tenant, &stored.definition.id, stored.version)?;
        let mut plugins = std::collections::BTreeMap::new();
        for name in def.plugins() {
            let id = PluginId::new(tenant.clone(), name);
            let current = self.shared.plugins.current(&id).ok_or_else(|| {
                ServiceError::Invalid {
                    field: "definition".to_string(),
                    message: format!("workflow `{}` uses plugin `{name}`, which tenant `{tenant}` does not have loaded", def.id),
                }
            })?;
            plugins.insert(name.to_string(), current.sha256().to_string());
        }
        let spec = StartSpec {
            id: uuid::Uuid::now_v7().to_string(),
            version: stored.version,
            tenant: tenant.clone(),
            data: req.data,
            plugins,
            parent: req.parent,
            started_by: req.started_by,
        };
        let (instance, applied) = engine::start(Ctx { def: &def, now }, spec)?;
        if let Some(key) = &req.key {
            batch
                .start_keys
                .insert((tenant, key.clone()), instance.id.clone());
        }
        self.record(batch, None, instance.clone(), applied, req.key, now);
        Ok(instance)
    }

    fn command(
        &mut self,
        batch: &mut Batch,
        tenant: &str,
        id: &str,
        command: Command,
        now: u64,
    ) -> Result<Instance, ServiceError> {
        let before = self.load(batch, tenant, id)?;
        let def =
            self.shared
                .definition(tenant, &before.definition_id, before.definition_version)?;
        let mut after = before.clone();
        let applied = engine::apply(Ctx { def: &def, now }, &mut after, command)?;
        if applied.is_empty() {
            return Ok(before);
        }
        self.record(batch, Some(before), after.clone(), applied, None, now);
        Ok(after)
    }

    fn load(&self, batch: &Batch, tenant: &str, id: &str) -> Result<Instance, ServiceError> {
        if let Some(found) = batch.instances.get(&(tenant.to_string(), id.to_string())) {
            return Ok(found.clone());
        }
        self.shared.store.instance(tenant, id)?.ok_or_else(|| {
            ServiceError::from(CommandError::NotFound {
                what: "instance",
                id: id.to_string(),
            })
        })
    }

    fn record(
        &mut self,
        batch: &mut Batch,
        before: Option<Instance>,
        after: Instance,
        applied: Applied,
        idempotency_key: Option<String>,
        now: u64,
    ) {
        let outbox = applied
            .effects
            .into_iter()
            .map(|effect| {
                let id = self.next_outbox;
                self.next_outbox += 1;
                OutboxEntry {
                    id,
                    tenant: after.tenant.clone(),
                    instance: after.id.clone(),
                    created_at: now,
                    effect,
                    attempts: 0,
                    due_at: now,
                }
            })
            .collect();
        batch
            .instances
            .insert((after.tenant.clone(), after.id.clone()), after.clone());
        batch.changes.push(Change::Instance {
            before: before.map(Box::new),
            after: Box::new(after),
            events: applied.events,
            outbox,
            idempotency_key,
        });
    }
}
