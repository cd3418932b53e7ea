//! The same commands against a running daemon: with `--url` (and `--token`), `flowgate` talks to
//! its HTTP API, as `temporal` and Camunda's CLI do, rather than opening a local data file (which
//! a running daemon holds). The token says who acts and in which tenant; what is printed is the
//! API's answer.

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};

use super::engine_cmds::{IncidentCommand, InstanceCommand, TaskCommand, WorkflowCommand};
use super::local::json_object;
use super::print_json;

/// Where a running daemon is.
#[derive(Debug, Clone, Args)]
pub(crate) struct RemoteArgs {
    /// A running daemon (`http://localhost:8080`): commands go to its API instead of a local
    /// data file.
    #[arg(long, global = true, env = "FLOWGATE_URL")]
    pub url: Option<String>,
    /// The API token to act with at `--url` (its tenant and person or administrator).
    #[arg(long, global = true, env = "FLOWGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// A daemon's API.
pub(crate) struct Remote {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl RemoteArgs {
    /// The daemon to talk to, if `--url` was given.
    pub fn connect(&self) -> anyhow::Result<Option<Remote>> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let token = self
            .token
            .clone()
            .context("--url needs --token (or FLOWGATE_TOKEN): the API acts as a token's holder")?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .into();
        Ok(Some(Remote {
            base: url.trim_end_matches('/').to_string(),
            token,
            agent,
        }))
    }
}

impl Remote {
    fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let mut request = self
            .agent
            .get(&format!("{}{path}", self.base))
            .header("authorization", &format!("Bearer {}", self.token));
        for (key, value) in query {
            request = request.query(*key, value);
        }
        answer(path, request.call())
    }

    fn post_bytes(
        &self,
        path: &str,
        query: &[(&str, String)],
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<Value> {
        let mut request = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("authorization", &format!("Bearer {}", self.token))
            .header("content-type", content_type);
        for (key, value) in query {
            request = request.query(*key, value);
        }
        answer(path, request.send(body))
    }

    fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let request = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("authorization", &format!("Bearer {}", self.token));
        answer(path, request.send_json(body))
    }
}

/// Replays a candidate on the daemon's recorded calls and prints the report.
pub(crate) fn replay(r: &Remote, args: super::plugin::ReplayArgs) -> anyhow::Result<()> {
    let wasm = std::fs::read(&args.wasm)
        .with_context(|| format!("cannot read {}", args.wasm.display()))?;
    let mut query = Vec::new();
    if let Some(last) = args.last {
        query.push(("last", last.to_string()));
    }
    if let Some(workflow) = args.workflow {
        query.push(("workflow", workflow));
    }
    if let Some(since) = args.since {
        query.push(("since", since));
    }
    let path = format!("/api/v1/plugins/{}/replay", args.name);
    let report = r.post_bytes(&path, &query, "application/wasm", &wasm)?;
    print_json(&report)?;
    let count = |key: &str| report[key].as_array().map_or(0, Vec::len);
    let (differ, failed) = (count("differ"), count("errors"));
    if args.expect_same && differ + failed > 0 {
        anyhow::bail!(
            "the candidate decided {differ} of {} recorded calls otherwise and failed on {failed}",
            report["replayed"]
        );
    }
    Ok(())
}

/// Asks the daemon for an online backup (the operator's token) and prints where it went.
pub(crate) fn backup(r: &Remote) -> anyhow::Result<()> {
    print_json(&r.post("/api/v1/operator/backups", &json!({}))?)
}

/// The body of a 2xx answer; any other is an error with the API's code, message and details.
fn answer(
    path: &str,
    sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> anyhow::Result<Value> {
    let mut response = sent.with_context(|| format!("cannot reach the daemon for {path}"))?;
    let status = response.status();
    let text = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("{path}: cannot read the answer"))?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        return Ok(body);
    }
    let error = &body["error"];
    let mut message = format!(
        "{path}: {} {}: {}",
        status.as_u16(),
        error["code"].as_str().unwrap_or("error"),
        error["message"].as_str().unwrap_or("(no message)")
    );
    if error["details"].as_object().is_some_and(|d| !d.is_empty()) {
        message.push_str(&format!(" ({})", error["details"]));
    }
    anyhow::bail!(message)
}

fn person(by: String, roles: Vec<String>) -> Value {
    json!({"id": by, "roles": roles})
}

pub(crate) fn workflow(r: &Remote, command: WorkflowCommand) -> anyhow::Result<()> {
    let source = |file: &std::path::Path| {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        Ok::<_, anyhow::Error>(json!({"file": file.display().to_string(), "source": text}))
    };
    let shown = match command {
        WorkflowCommand::Validate { file } => {
            r.post("/api/v1/definitions/validate", &source(&file)?)?
        }
        WorkflowCommand::Deploy { file } => r.post("/api/v1/definitions", &source(&file)?)?,
        WorkflowCommand::List => r.get("/api/v1/definitions", &[])?,
        // Who migrates is the token's holder.
        WorkflowCommand::Migrate {
            workflow,
            from_version,
            to_version,
            steps,
            plugins,
            instances,
            dry_run,
            by: _,
            reason,
        } => {
            let steps: serde_json::Map<String, Value> =
                steps.into_iter().map(|(a, b)| (a, b.into())).collect();
            let plugins: serde_json::Map<String, Value> =
                plugins.into_iter().map(|(a, b)| (a, b.into())).collect();
            let mut body = json!({"from_version": from_version, "to_version": to_version, "steps": steps, "plugins": plugins, "dry_run": dry_run, "reason": reason});
            if !instances.is_empty() {
                body["instances"] = json!(instances);
            }
            r.post(&format!("/api/v1/definitions/{workflow}/migrations"), &body)?
        }
    };
    print_json(&shown)
}

pub(crate) fn instance(r: &Remote, command: InstanceCommand) -> anyhow::Result<()> {
    let shown = match command {
        // Who starts it is the token's holder.
        InstanceCommand::Start {
            workflow,
            data,
            by: _,
            key,
        } => {
            let mut body = json!({"workflow": workflow, "data": json_object(&data)?});
            if let Some(key) = key {
                body["idempotency_key"] = key.into();
            }
            let started = r.post("/api/v1/instances", &body)?;
            let id = started["id"].as_str().unwrap_or_default().to_string();
            r.get(&format!("/api/v1/instances/{id}"), &[])?
        }
        InstanceCommand::Show { id } => r.get(&format!("/api/v1/instances/{id}"), &[])?,
        InstanceCommand::List {
            workflow,
            status,
            limit,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(workflow.map(|w| ("workflow", w)));
            query.extend(status.map(|s| ("status", s)));
            r.get("/api/v1/instances", &query)?
        }
        InstanceCommand::Cancel { id, by: _, reason } => r.post(
            &format!("/api/v1/instances/{id}/cancel"),
            &json!({"reason": reason}),
        )?,
        InstanceCommand::Pause { id, by: _, reason } => r.post(
            &format!("/api/v1/instances/{id}/pause"),
            &json!({"reason": reason}),
        )?,
        InstanceCommand::Resume { id, by: _, reason } => r.post(
            &format!("/api/v1/instances/{id}/resume"),
            &json!({"reason": reason}),
        )?,
    };
    print_json(&shown)
}

pub(crate) fn task(r: &Remote, command: TaskCommand) -> anyhow::Result<()> {
    let shown = match command {
        TaskCommand::List { person, role } => {
            let query: Vec<(&str, String)> = match (person, role) {
                (Some(p), _) => vec![("person", p)],
                (None, Some(role)) => vec![("role", role)],
                (None, None) => Vec::new(),
            };
            r.get("/api/v1/tasks", &query)?["tasks"].take()
        }
        TaskCommand::Claim { task, by, roles } => r.post(
            &format!("/api/v1/tasks/{task}/claim"),
            &json!({"by": person(by, roles)}),
        )?,
        TaskCommand::Complete {
            task,
            by,
            roles,
            outcome,
            data,
            comment,
        } => r.post(
            &format!("/api/v1/tasks/{task}/complete"),
            &json!({"by": person(by, roles), "outcome": outcome, "data": json_object(&data)?, "comment": comment}),
        )?,
    };
    print_json(&shown)
}

pub(crate) fn incident(r: &Remote, command: IncidentCommand) -> anyhow::Result<()> {
    let shown = match command {
        IncidentCommand::List => r.get("/api/v1/incidents", &[])?,
        IncidentCommand::Retry {
            instance,
            incident: token,
            by: _,
            reason,
            current,
        } => r.post(
            &format!("/api/v1/instances/{instance}/incidents/{token}/retry"),
            &json!({"reason": reason, "current": current}),
        )?,
        IncidentCommand::Skip {
            instance,
            incident: token,
            by: _,
            reason,
            outcome,
            data,
        } => r.post(
            &format!("/api/v1/instances/{instance}/incidents/{token}/skip"),
            &json!({"reason": reason, "outcome": outcome, "data": json_object(&data)?}),
        )?,
    };
    print_json(&shown)
}
