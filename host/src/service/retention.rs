//! Retention: a tenant's finished instances older than its `[retention]` leave the hot store.
//! Each is first appended, state and whole history, as one JSON line to a file of the day it
//! ended (`<archive>/<tenant>/2026-12-06.jsonl`), files an operator can ship elsewhere; once the
//! files are synced, one commit removes the instances with their history and index entries and
//! keeps what they contribute to their workflow's metrics (`metrics::Facts`), so reports still cover the
//! archived period. A crash between the two writes the same lines again on the next pass: a
//! reader keeps the last line of an instance id.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::writer::Request;
use super::{Flowgate, ServiceError};
use crate::engine::{Event, Instance, Millis};
use crate::store::Change;

/// What one pass archived.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Archived {
    pub instances: usize,
    /// The files it appended to.
    pub files: Vec<PathBuf>,
}

/// One line of an archive file.
#[derive(Serialize)]
struct Line<'a> {
    instance: &'a Instance,
    history: &'a [Event],
    #[serde(with = "crate::engine::time::rfc3339")]
    archived_at: Millis,
}

impl Flowgate {
    /// Archives up to `limit` of `tenant`'s instances that finished before `before` into
    /// `dir/<tenant>/`, then removes them from the store, keeping their metrics facts.
    pub async fn archive_finished(
        &self,
        tenant: &str,
        before: Millis,
        limit: usize,
        dir: &Path,
    ) -> Result<Archived, ServiceError> {
        let this = self.clone();
        let (owner, dir) = (tenant.to_string(), dir.to_path_buf());
        let written =
            tokio::task::spawn_blocking(move || this.write_archive(&owner, before, limit, &dir))
                .await
                .map_err(|e| {
                    ServiceError::Unavailable(format!("the archive pass stopped: {e}"))
                })??;
        let (archived, changes) = written;
        if changes.is_empty() {
            return Ok(archived);
        }
        self.send("archive", tenant, |reply| Request::Archive {
            changes,
            reply,
        })
        .await?;
        Ok(archived)
    }

    /// Appends the instances to their day's files and syncs them; the changes that remove them.
    fn write_archive(
        &self,
        tenant: &str,
        before: Millis,
        limit: usize,
        dir: &Path,
    ) -> Result<(Archived, Vec<Change>), ServiceError> {
        let store = &self.shared.store;
        let now = self.shared.clock.now();
        let calendar = self.shared.calendar(tenant);
        let costs = self.process_settings(tenant).costs.clone();
        let mut lines: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
        let mut changes = Vec::new();
        let mut done: BTreeSet<String> = BTreeSet::new();
        for (_, id) in store.ended_before(tenant, before, limit)? {
            if done.contains(&id) {
                continue;
            }
            let Some(instance) = store.instance(tenant, &id)? else {
                continue;
            };
            // A case leaves whole, once every instance of it ended before `before`: its
            // figures are computed from all of them, and kept on the one that ended it last.
            let members = self.case(tenant, instance.process_id())?;
            let finished = members
                .iter()
                .all(|(m, _)| m.ended_at.is_some_and(|at| at < before));
            if !finished {
                continue;
            }
            let figures = crate::engine::process::case_figures(&members, &calendar, costs.as_ref());
            let root = members
                .iter()
                .find(|(m, _)| m.id == instance.process_id())
                .map(|(m, _)| m.definition_id.clone());
            let last = members
                .iter()
                .max_by_key(|(m, _)| (m.ended_at, m.started_at, m.id.clone()))
                .map(|(m, _)| m.id.clone());
            for (member, history) in &members {
                done.insert(member.id.clone());
                let mut facts = self.archive_facts(tenant, member, history, &calendar)?;
                if Some(&member.id) == last.as_ref()
                    && let Some(root_workflow) = &root
                {
                    facts.case = Some(crate::metrics::ArchivedCase {
                        root: instance.process_id().to_string(),
                        root_workflow: root_workflow.clone(),
                        figures: figures.clone(),
                    });
                }
                let ended_at = member.ended_at.unwrap_or_default();
                let line = Line {
                    instance: member,
                    history,
                    archived_at: now,
                };
                append_line(
                    lines.entry(day_file(dir, tenant, ended_at)).or_default(),
                    &line,
                )?;
                changes.push(Change::Archive {
                    tenant: tenant.to_string(),
                    instance: member.id.clone(),
                    workflow: member.definition_id.clone(),
                    ended_at,
                    facts: Box::new(facts),
                });
            }
        }
        let failed = |path: &Path, e: std::io::Error| {
            ServiceError::Unavailable(format!("cannot write the archive {}: {e}", path.display()))
        };
        for (path, bytes) in &lines {
            if let Some(folder) = path.parent() {
                std::fs::create_dir_all(folder).map_err(|e| failed(folder, e))?;
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| failed(path, e))?;
            file.write_all(bytes).map_err(|e| failed(path, e))?;
            file.sync_all().map_err(|e| failed(path, e))?;
        }
        let archived = Archived {
            instances: changes.len(),
            files: lines.into_keys().collect(),
        };
        Ok((archived, changes))
    }

    /// What an instance contributes to its workflow's metrics.
    fn archive_facts(
        &self,
        tenant: &str,
        instance: &Instance,
        history: &[Event],
        calendar: &crate::engine::calendar::Calendar,
    ) -> Result<crate::metrics::Facts, ServiceError> {
        let def =
            self.shared
                .definition(tenant, &instance.definition_id, instance.definition_version)?;
        Ok(crate::metrics::facts(&def, instance, history, calendar))
    }
}

/// Adds an instance's line, as JSON, to the bytes of its day's file.
fn append_line(out: &mut Vec<u8>, line: &Line<'_>) -> Result<(), ServiceError> {
    serde_json::to_writer(&mut *out, line).map_err(|e| {
        ServiceError::Unavailable(format!("cannot encode instance {}: {e}", line.instance.id))
    })?;
    out.push(b'\n');
    Ok(())
}

/// The archive file of the day an instance ended: `<dir>/<tenant>/<yyyy-mm-dd>.jsonl`.
fn day_file(dir: &Path, tenant: &str, ended_at: Millis) -> PathBuf {
    let day = crate::engine::time::format(ended_at).to_string();
    dir.join(tenant).join(format!("{}.jsonl", &day[..10]))
}
