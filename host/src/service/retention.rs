//! Retention: a tenant's finished instances older than its `[retention]` leave the hot store.
//! Each is first appended, state and whole history, as one JSON line to a file of the day it
//! ended (`<archive>/<tenant>/2026-12-06.jsonl`), files an operator can ship elsewhere; once the
//! files are synced, one commit removes the instances with their history and index entries and
//! keeps what they contribute to their workflow's metrics (`metrics::Facts`), so reports still cover the
//! archived period. A crash between the two writes the same lines again on the next pass: a
//! reader keeps the last line of an instance id.

use std::collections::BTreeMap;
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
        let mut lines: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
        let mut changes = Vec::new();
        for (ended_at, id) in store.ended_before(tenant, before, limit)? {
            let Some((instance, history)) = store.instance_with_history(tenant, &id)? else {
                continue;
            };
            let def = self.shared.definition(
                tenant,
                &instance.definition_id,
                instance.definition_version,
            )?;
            let facts = crate::metrics::facts(&def, &instance, &history, &calendar);
            let day = crate::engine::time::format(ended_at).to_string();
            let file = dir.join(tenant).join(format!("{}.jsonl", &day[..10]));
            let line = Line {
                instance: &instance,
                history: &history,
                archived_at: now,
            };
            let out = lines.entry(file).or_default();
            serde_json::to_writer(&mut *out, &line).map_err(|e| {
                ServiceError::Unavailable(format!("cannot encode instance {id}: {e}"))
            })?;
            out.push(b'\n');
            changes.push(Change::Archive {
                tenant: tenant.to_string(),
                instance: id,
                workflow: instance.definition_id.clone(),
                ended_at,
                facts: Box::new(facts),
            });
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
}
