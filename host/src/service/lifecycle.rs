//! Pausing, resuming and migrating instances, one at a time or every running instance of a
//! definition version. Each instance changes in its own command, so each move is atomic and a
//! version-wide pause is as durable as one pause; an instance that another command changed in
//! between is checked again against its state as it is then.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Flowgate, ServiceError};
use crate::engine::{Command, Instance, Migration, Status, migration_problems};
use crate::plugin::PluginId;
use crate::store::InstanceFilter;

/// The instances one version-wide request reads at most; the answer says where to go on.
pub const MAX_PER_REQUEST: usize = 10_000;

/// What a version-wide pause or resume did, per instance.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Bulk {
    /// The instances it paused (or resumed).
    pub changed: Vec<String>,
    /// Those it left as they were, and why (paused already, not paused, moved on meanwhile).
    pub skipped: Vec<Skipped>,
    /// When more instances remain than one request reads: the `after` to go on from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// An instance a version-wide action left as it was.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Skipped {
    pub id: String,
    pub why: String,
}

/// Every running instance of a definition version, from the instance id after `after`.
#[derive(Debug, Clone)]
pub struct VersionWide {
    pub definition: String,
    pub version: u32,
    pub by: String,
    pub reason: String,
    pub after: Option<String>,
}

/// A migration of running instances from one version of a definition to another.
#[derive(Debug, Clone)]
pub struct MigrationRequest {
    pub definition: String,
    pub from_version: u32,
    pub to_version: u32,
    /// Step of `from_version` → step of `to_version`, for the steps that are not the same id.
    pub steps: BTreeMap<String, String>,
    /// Plugin name → a loaded version's sha256 to pin instead of the instance's own.
    pub plugins: BTreeMap<String, String>,
    /// Only these instances; otherwise every running instance of `from_version`.
    pub instances: Option<Vec<String>>,
    /// Report what would happen, and change nothing.
    pub dry_run: bool,
    /// Instance ids greater than this (paging through a large version).
    pub after: Option<String>,
    pub by: String,
    pub reason: String,
}

/// What a migration did (or, in a dry run, would do), per instance.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MigrationReport {
    pub dry_run: bool,
    pub from_version: u32,
    pub to_version: u32,
    pub instances: Vec<InstanceMove>,
    /// How many moved (or, in a dry run, can move).
    pub movable: usize,
    /// When more instances remain than one request reads: the `after` to go on from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One instance in a migration.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InstanceMove {
    pub id: String,
    /// Whether it can move: every step it is in has a counterpart that waits the same way.
    pub can_move: bool,
    /// Why not, one line per step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub problems: Vec<String>,
    /// The plugin versions it is pinned to after the move, where they change.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(required = false)]
    pub plugins: BTreeMap<String, String>,
    /// Whether it moved (never in a dry run).
    pub moved: bool,
}

impl Flowgate {
    /// Pauses an instance, with the reason in its history.
    pub async fn pause(
        &self,
        tenant: &str,
        instance: &str,
        by: &str,
        reason: String,
    ) -> Result<Instance, ServiceError> {
        let command = Command::Pause {
            by: by.to_string(),
            reason,
        };
        self.command(tenant, instance, command).await
    }

    /// Resumes a paused instance: what arrived meanwhile is applied, in order.
    pub async fn resume(
        &self,
        tenant: &str,
        instance: &str,
        by: &str,
        reason: Option<String>,
    ) -> Result<Instance, ServiceError> {
        let command = Command::Resume {
            by: by.to_string(),
            reason,
        };
        self.command(tenant, instance, command).await
    }

    /// Pauses (`pause`) or resumes every running instance of a definition version.
    pub async fn pause_version(
        &self,
        tenant: &str,
        which: &VersionWide,
        pause: bool,
    ) -> Result<Bulk, ServiceError> {
        let VersionWide {
            definition,
            version,
            by,
            reason,
            after,
        } = which;
        self.definition(tenant, definition, *version)?;
        let (instances, next) = self.running_of(tenant, definition, *version, after.clone())?;
        let mut bulk = Bulk {
            next,
            ..Bulk::default()
        };
        for instance in instances {
            if instance.paused.is_some() == pause {
                let why = if pause {
                    "paused already"
                } else {
                    "not paused"
                };
                bulk.skipped.push(Skipped {
                    id: instance.id,
                    why: why.to_string(),
                });
                continue;
            }
            let result = if pause {
                self.pause(tenant, &instance.id, by, reason.clone()).await
            } else {
                self.resume(tenant, &instance.id, by, Some(reason.clone()))
                    .await
            };
            match result {
                Ok(_) => bulk.changed.push(instance.id),
                Err(ServiceError::Command(error)) => bulk.skipped.push(Skipped {
                    id: instance.id,
                    why: error.to_string(),
                }),
                Err(error) => return Err(error),
            }
        }
        Ok(bulk)
    }

    /// Checks, and unless it is a dry run carries out, a migration; see [`MigrationRequest`].
    pub async fn migrate(
        &self,
        tenant: &str,
        req: MigrationRequest,
    ) -> Result<MigrationReport, ServiceError> {
        let from = self.definition(tenant, &req.definition, req.from_version)?;
        let to = self.definition(tenant, &req.definition, req.to_version)?;
        for (source, target) in &req.steps {
            if from.step(source).is_none() {
                return Err(ServiceError::Invalid {
                    field: format!("steps.{source}"),
                    message: format!("version {} has no step `{source}`", req.from_version),
                });
            }
            if to.step(target).is_none() {
                return Err(ServiceError::Invalid {
                    field: format!("steps.{source}"),
                    message: format!("version {} has no step `{target}`", req.to_version),
                });
            }
        }
        for (name, sha) in &req.plugins {
            let id = PluginId::new(tenant.to_string(), name.clone());
            if self.shared.plugins.version(&id, sha).is_none() {
                return Err(ServiceError::Invalid {
                    field: format!("plugins.{name}"),
                    message: format!(
                        "plugin `{name}` has no loaded version {sha} in tenant `{tenant}`"
                    ),
                });
            }
        }
        let (instances, next) = match &req.instances {
            Some(ids) => {
                let mut found = Vec::with_capacity(ids.len());
                for id in ids.iter().take(MAX_PER_REQUEST) {
                    found.push(self.instance(tenant, id)?);
                }
                (found, None)
            }
            None => {
                self.running_of(tenant, &req.definition, req.from_version, req.after.clone())?
            }
        };
        let mut report = MigrationReport {
            dry_run: req.dry_run,
            from_version: req.from_version,
            to_version: req.to_version,
            instances: Vec::with_capacity(instances.len()),
            movable: 0,
            next,
        };
        for instance in instances {
            let mut problems = Vec::new();
            if instance.definition_version != req.from_version
                && instance.definition_id == req.definition
            {
                problems.push(format!(
                    "it is at version {}, not {}",
                    instance.definition_version, req.from_version
                ));
            }
            let migration = Migration {
                to_version: req.to_version,
                steps: req.steps.clone(),
                plugins: self.pins(tenant, &to, &instance, &req.plugins, &mut problems),
                by: req.by.clone(),
                reason: req.reason.clone(),
            };
            if problems.is_empty() {
                problems = migration_problems(&to, &instance, &migration);
            }
            let plugins = migration
                .plugins
                .iter()
                .filter(|(name, sha)| instance.plugins.get(*name) != Some(sha))
                .map(|(name, sha)| (name.clone(), sha.clone()))
                .collect();
            let mut row = InstanceMove {
                id: instance.id.clone(),
                can_move: problems.is_empty(),
                problems,
                plugins,
                moved: false,
            };
            if row.can_move && !req.dry_run {
                match self
                    .command(tenant, &instance.id, Command::Migrate(migration))
                    .await
                {
                    Ok(_) => row.moved = true,
                    // It changed meanwhile and no longer fits: say why, and go on.
                    Err(ServiceError::Command(error)) => {
                        row.can_move = false;
                        row.problems.push(error.to_string());
                    }
                    Err(error) => return Err(error),
                }
            }
            report.movable += usize::from(row.can_move);
            report.instances.push(row);
        }
        Ok(report)
    }

    /// The plugin pins an instance has after a move: the ones asked for, the instance's own
    /// for the rest, and the current version of any plugin the new version uses that the
    /// instance has never been pinned to.
    fn pins(
        &self,
        tenant: &str,
        to: &crate::definition::Definition,
        instance: &Instance,
        asked: &BTreeMap<String, String>,
        problems: &mut Vec<String>,
    ) -> BTreeMap<String, String> {
        let mut pins = asked.clone();
        for name in to.plugins() {
            if pins.contains_key(name) || instance.plugins.contains_key(name) {
                continue;
            }
            let id = PluginId::new(tenant.to_string(), name);
            match self.shared.plugins.current(&id) {
                Some(current) => {
                    pins.insert(name.to_string(), current.sha256().to_string());
                }
                None => problems.push(format!(
                    "the new version uses plugin `{name}`, which tenant `{tenant}` does not have loaded"
                )),
            }
        }
        pins
    }

    /// The running instances of a definition version, in id order, from after `after`: at
    /// most [`MAX_PER_REQUEST`], and where to go on if there are more.
    fn running_of(
        &self,
        tenant: &str,
        definition: &str,
        version: u32,
        mut after: Option<String>,
    ) -> Result<(Vec<Instance>, Option<String>), ServiceError> {
        let mut found = Vec::new();
        loop {
            let filter = InstanceFilter {
                definition: Some(definition.to_string()),
                status: Some(Status::Running.as_str().to_string()),
                after: after.clone(),
                limit: 1_000,
                ..InstanceFilter::default()
            };
            let page = self.instances(tenant, &filter)?;
            let last = page.last().map(|i| i.id.clone());
            let full = page.len() == filter.limit;
            found.extend(page.into_iter().filter(|i| i.definition_version == version));
            if found.len() >= MAX_PER_REQUEST {
                found.truncate(MAX_PER_REQUEST);
                let next = found.last().map(|i| i.id.clone());
                return Ok((found, next));
            }
            if !full {
                return Ok((found, None));
            }
            after = last;
        }
    }
}
