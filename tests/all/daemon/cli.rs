//! `flowgate --url --token`: the command line against a running daemon, through its API.

use serde_json::{Value, json};

use super::harness::*;

/// Runs `flowgate --url <daemon> --token <token> args...`: whether it succeeded, what it printed
/// (as JSON) and its stderr.
fn flowgate(d: &Daemon, token: &str, args: &[&str]) -> (bool, Value, String) {
    let mut all = vec!["--url", d.base.as_str(), "--token", token];
    all.extend_from_slice(args);
    run_cli(&all)
}

#[test]
fn the_command_line_lists_starts_completes_and_resolves_against_a_running_daemon() {
    let d = start(1 << 20);
    let (ok, listed, err) = flowgate(&d, ACME_ADMIN, &["workflow", "list"]);
    assert!(ok, "{err}");
    assert!(
        listed
            .as_array()
            .is_some_and(|w| w.iter().any(|w| w["id"] == "purchase-request")),
        "{listed}"
    );
    let data = r#"{"amount_cents": 900000, "currency": "USD", "category": "office", "requester": "alice"}"#;
    let (ok, started, err) = flowgate(
        &d,
        ACME_ADMIN,
        &["instance", "start", "purchase-request", "--data", data],
    );
    assert!(ok, "{err}");
    let id = started["instance"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!id.is_empty(), "{started}");

    // A person's token reads its role's inbox and completes the task as that person.
    let dora = "acme-dora-token";
    let (ok, tasks, err) = flowgate(&d, dora, &["task", "list", "--role", "director"]);
    assert!(ok, "{err}");
    let task = tasks
        .as_array()
        .and_then(|t| t.iter().find(|t| t["instance"] == id.as_str()))
        .and_then(|t| t["id"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(!task.is_empty(), "{tasks}");
    let (ok, done, err) = flowgate(
        &d,
        dora,
        &[
            "task",
            "complete",
            &task,
            "--by",
            "dora",
            "--role",
            "director",
            "--outcome",
            "approve",
            "--comment",
            "fine by me",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(done["status"], "running", "{done}");
    let (_, view) = d.call(
        "GET",
        &format!("/api/v1/instances/{id}"),
        Some(ACME_ADMIN),
        None,
    );
    let completed = view["history"]
        .as_array()
        .and_then(|h| h.iter().find(|e| e["event"] == "task-completed").cloned());
    assert_eq!(
        completed.map(|e| (e["actor"]["id"].clone(), e["reason"].clone())),
        Some((json!("dora"), json!("fine by me")))
    );

    // The API's refusals are the command's errors, with their code and message.
    let (ok, _, err) = flowgate(&d, "wrong-token", &["instance", "list"]);
    assert!(!ok);
    assert!(err.contains("401 unauthorized"), "{err}");
    let (ok, _, err) = flowgate(&d, dora, &["instance", "cancel", &id, "--reason", "no"]);
    assert!(!ok);
    assert!(err.contains("403 forbidden"), "{err}");
    let (ok, _, err) = flowgate(&d, ACME_ADMIN, &["tick"]);
    assert!(!ok);
    assert!(err.contains("a daemon fires its own timers"), "{err}");

    // Incidents are listed and resolved.
    let broken = start_purchase(&d, -100, "office");
    let row = eventually("the incident is listed", || {
        let (_, rows, _) = flowgate(&d, ACME_ADMIN, &["incident", "list"]);
        rows.as_array()?
            .iter()
            .find(|r| r["instance"] == broken.as_str())
            .cloned()
    });
    let token = row["token"].to_string();
    let (ok, resolved, err) = flowgate(
        &d,
        ACME_ADMIN,
        &[
            "incident",
            "skip",
            &broken,
            &token,
            "--outcome",
            "reject",
            "--reason",
            "a negative amount",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(resolved["status"], "rejected", "{resolved}");
}

#[test]
fn the_command_line_pauses_resumes_and_migrates_against_a_running_daemon() {
    let d = start(1 << 20);
    let id = start_purchase(&d, 250_000, "office");
    d.task_for(&id, "manager");
    let (ok, paused, err) = flowgate(
        &d,
        ACME_ADMIN,
        &["instance", "pause", &id, "--reason", "budget freeze"],
    );
    assert!(ok, "{err}");
    assert_eq!(paused["paused"]["reason"], "budget freeze");
    let (ok, resumed, err) = flowgate(
        &d,
        ACME_ADMIN,
        &["instance", "resume", &id, "--reason", "thawed"],
    );
    assert!(ok, "{err}");
    assert!(resumed.get("paused").is_none(), "{resumed}");
    let (ok, _, err) = flowgate(
        &d,
        ACME_ADMIN,
        &["instance", "resume", &id, "--reason", "x"],
    );
    assert!(!ok);
    assert!(
        err.contains("409 conflict") && err.contains("not paused"),
        "{err}"
    );

    // Version 1 to version 1 moves nothing, and the dry run says why, per instance.
    let (ok, plan, err) = flowgate(
        &d,
        ACME_ADMIN,
        &[
            "workflow",
            "migrate",
            "purchase-request",
            "--from",
            "1",
            "--to",
            "1",
            "--instance",
            &id,
            "--dry-run",
            "--reason",
            "check",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        plan["instances"][0]["problems"],
        json!(["it is at version 1 already"])
    );
    assert_eq!(plan["movable"], 0);
    let (ok, _, err) = flowgate(
        &d,
        ACME_ADMIN,
        &[
            "workflow",
            "migrate",
            "purchase-request",
            "--from",
            "1",
            "--to",
            "1",
            "--map",
            "nope",
            "--reason",
            "r",
        ],
    );
    assert!(!ok);
    assert!(err.contains("`nope` is not `key=value`"), "{err}");
}

/// Runs `flowgate plugin eval <args>` with its compile cache in `dir`: whether it succeeded,
/// the report it printed, and what it wrote to stderr.
fn plugin_eval(dir: &std::path::Path, args: &[&std::ffi::OsStr]) -> (bool, Value, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args(["plugin", "eval"])
        .args(args)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        printed,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plugin_eval_reports_the_fuel_a_call_used_against_its_budget_and_says_how_to_raise_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let eval = |action: &str, params: Value, fuel: &str| {
        let input = dir.path().join(format!("{action}.json"));
        let request = json!({"action": action, "params": params});
        std::fs::write(&input, request.to_string()).unwrap_or_else(|e| panic!("{e}"));
        let args = [
            flowgate_tests::artifacts::MISBEHAVE,
            "--capability",
            "step-action",
            "--fuel",
            fuel,
            "--input",
        ];
        let mut args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        args.push(input.as_os_str());
        plugin_eval(dir.path(), &args)
    };
    let (ok, report, err) = eval("spin", json!({"iterations": 10_000}), "20000000");
    assert!(ok, "{err}");
    assert_eq!(report["fuel_budget"], 20_000_000, "{report}");
    let used = report["fuel_consumed"].as_u64().unwrap_or(0);
    let share = report["fuel_share"].as_f64().unwrap_or(-1.0);
    assert!(used > 10_000 && used < 20_000_000, "{report}");
    assert!(
        (share - used as f64 / 20_000_000.0).abs() < 1e-9,
        "{report}"
    );

    let (ok, _, err) = eval("loop", json!({}), "1000000");
    assert!(!ok, "an endless loop on a small budget fails");
    assert!(
        err.contains("ran out of fuel: it used all 1000000 units")
            && err.contains("raise `fuel` under the plugin's `[plugins.<name>.limits]`"),
        "{err}"
    );
}

#[test]
fn plugin_eval_tries_a_decision_table_file_and_names_the_cell_at_fault() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    };
    let input = write(
        "request.json",
        &json!({"data": {"customer": {"tier": " Platinum"}}, "candidates": ["priority", "general"]})
            .to_string(),
    );
    let eval = |table: &std::path::Path| {
        let os = std::ffi::OsStr::new;
        let args = [
            os(flowgate_tests::artifacts::DECISION_TABLE),
            os("--capability"),
            os("router"),
            os("--input"),
            input.as_os_str(),
            os("--table"),
            table.as_os_str(),
        ];
        plugin_eval(dir.path(), &args)
    };
    let head = "hit = \"first\"\ninputs = [{ name = \"tier\", from = \"/customer/tier\", lowercase = true }]\noutputs = [\"next\", \"note\"]\n";
    write(
        "rules.csv",
        "tier,next,note\n\"platinum, enterprise\",priority,top tier\n-,general,\n",
    );
    let good = write("good.toml", &format!("{head}rules_file = \"rules.csv\"\n"));
    let (ok, report, err) = eval(&good);
    assert!(ok, "{err}");
    assert_eq!(report["result"]["next"], json!(["priority"]), "{report}");
    assert_eq!(
        report["result"]["reason"], "tier = platinum: rule 1 (top tier)",
        "{report}"
    );

    write(
        "bad.csv",
        "tier,next,note\n-,general,\nPlatinum,priority,\n",
    );
    let bad = write("bad.toml", &format!("{head}rules_file = \"bad.csv\"\n"));
    let (ok, _, err) = eval(&bad);
    assert!(!ok);
    assert!(
        err.contains("rule 2 (bad.csv line 3), column `tier`: `Platinum` has capitals"),
        "{err}"
    );
}

/// Runs `flowgate plugin test` on the purchase-approval component and a fixtures folder.
fn plugin_test(fixtures: &std::path::Path, cache: &std::path::Path) -> (bool, Value, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowgate"))
        .args([
            "plugin",
            "test",
            flowgate_tests::artifacts::PURCHASE_APPROVAL,
        ])
        .arg(fixtures)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plugin_test_checks_a_component_against_fixtures_and_names_each_difference() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/purchase-approval/fixtures");
    let (ok, report, err) = plugin_test(&shipped, dir.path());
    assert!(ok, "{err}");
    assert_eq!(
        (report["passed"].as_u64(), report["failed"].as_u64()),
        (Some(4), Some(0))
    );
    let fuel = report["fixtures"][1]["fuel_share"].as_f64().unwrap_or(0.0);
    assert!(fuel > 0.0 && fuel < 0.01, "{report}");

    // A fixture that expects the manager where the policy asks the director fails, saying where.
    let wrong = dir.path().join("fixtures");
    std::fs::create_dir(&wrong).unwrap_or_else(|e| panic!("{e}"));
    let fixture = json!({
        "capability": "approval-policy",
        "config": {"manager_threshold": "500", "director_threshold": "5000", "cfo_threshold": "50000"},
        "input": {"amount": {"currency": "USD", "minor_units": 900_000}, "category": "office", "requester": "alice"},
        "expect": {"auto_approve": false, "order": "parallel", "reason": "9000.00 USD is in the director band",
                   "stages": [{"approvers": [{"role": "manager"}], "name": "director", "required": 1}]}
    });
    std::fs::write(wrong.join("director.json"), fixture.to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let (ok, report, err) = plugin_test(&wrong, dir.path());
    assert!(!ok, "a failing fixture fails the run");
    assert_eq!(report["failed"], 1, "{report}");
    assert!(err.contains("FAIL director"), "{err}");
    assert!(
        err.contains(r#"result.stages[0].approvers[0].role: expected "manager", got "director""#),
        "{err}"
    );
}

/// Runs a command in `dir`, asserting it succeeded; its stdout.
fn run_in(dir: &std::path::Path, program: &str, args: &[&str], target: &std::path::Path) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} in {}:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_plugin_made_by_plugin_new_builds_tests_uploads_and_decides_for_an_instance_as_it_is() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let flowgate = env!("CARGO_BIN_EXE_flowgate");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    // The plugins' own target folder: the SDK and its dependencies are built there already.
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/target");
    let made = run_in(
        dir.path(),
        flowgate,
        &[
            "plugin",
            "new",
            "shop-policy",
            "--capability",
            "approval-policy",
        ],
        &target,
    );
    assert!(made.contains("shop-policy"), "{made}");
    let root = dir.path().join("shop-policy");
    let (again, _, err) = {
        let out = std::process::Command::new(flowgate)
            .args(["plugin", "new", "shop-policy", "--capability", "router"])
            .current_dir(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        (
            out.status.success(),
            (),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(!again && err.contains("exists already"), "{err}");

    // It builds and its own test passes, as made, outside this repository.
    let wasm_target = [
        "build",
        "--offline",
        "--release",
        "--target",
        "wasm32-wasip2",
    ];
    run_in(&root, &cargo, &wasm_target, &target);
    run_in(&root, &cargo, &["test", "--offline"], &target);
    let wasm = target.join("wasm32-wasip2/release/shop_policy.wasm");
    let wasm_path = wasm.to_string_lossy().into_owned();
    let inspected = run_in(&root, flowgate, &["plugin", "inspect", &wasm_path], &target);
    assert!(inspected.contains("approval-policy"), "{inspected}");
    let cache = dir.path().join("cache").to_string_lossy().into_owned();
    let tested = run_in(
        &root,
        flowgate,
        &[
            "plugin",
            "test",
            &wasm_path,
            "fixtures",
            "--cache-dir",
            &cache,
        ],
        &target,
    );
    assert!(tested.contains("\"failed\": 0"), "{tested}");

    // Uploaded to a running daemon, it decides an instance's approval.
    let d = start(4 << 20);
    let bytes = std::fs::read(&wasm).unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = d.raw(
        "/api/v1/plugins/shop-policy",
        ACME_ADMIN,
        "application/wasm",
        &bytes,
    );
    assert_eq!(status, 201, "{body}");
    let source = r#"
id = "shop-purchase"
start = "approve"
[[steps]]
id = "approve"
kind = "approval"
policy = "shop-policy"
request = { amount = "amount_cents", currency = "currency", category = "category", requester = "requester" }
on = { approve = "done", reject = "done" }
[[steps]]
id = "done"
kind = "end"
"#;
    let (status, body) = d.call(
        "POST",
        "/api/v1/definitions",
        Some(ACME_ADMIN),
        Some(json!({"file": "shop-purchase.toml", "source": source})),
    );
    assert_eq!(status, 201, "{body}");
    let start_with = |cents: i64| {
        let data = json!({"amount_cents": cents, "currency": "USD", "category": "office", "requester": "ann"});
        let (status, body) = d.call(
            "POST",
            "/api/v1/instances",
            Some(ACME_ADMIN),
            Some(json!({"workflow": "shop-purchase", "data": data})),
        );
        assert_eq!(status, 201, "{body}");
        body
    };
    // Over the default limit of 500.00: a manager's task, opened by the plugin's decision.
    let large = start_with(90_000);
    let tasks: Vec<Value> = large["tasks"]
        .as_object()
        .map(|t| t.values().cloned().collect())
        .unwrap_or_default();
    assert_eq!(tasks.len(), 1, "{large}");
    assert_eq!(tasks[0]["role"], "manager", "{large}");
    // Under it: approved at once.
    let small = start_with(1_000);
    assert_eq!(small["status"], "completed", "{small}");
}

#[test]
fn plugin_eval_calls_an_http_action_against_the_hosts_it_is_allowed() {
    use flowgate_tests::receivers::{ApiServer, Reply};
    let crm = ApiServer::start(|_, _| Reply::json(200, json!({"id": "acct-1"})))
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let input = dir.path().join("create.json");
    let request = json!({
        "action": "create",
        "data": {"name": "Ada"},
        "params": {"url": format!("{}/accounts", crm.base), "into": "crm"}
    });
    std::fs::write(&input, request.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let eval = |allow: &str| {
        let args: Vec<&std::ffi::OsStr> = [
            flowgate_tests::artifacts::HTTP_CONNECTOR,
            "--capability",
            "step-action",
            "--timeout",
            "10000",
            "--allow-host",
            allow,
            "--input",
        ]
        .into_iter()
        .map(std::ffi::OsStr::new)
        .chain([input.as_os_str()])
        .collect();
        plugin_eval(dir.path(), &args)
    };
    let (ok, report, err) = eval(&crm.base);
    assert!(ok, "{err}");
    assert_eq!(
        report["result"]["data"],
        json!({"crm": {"id": "acct-1"}}),
        "{report}"
    );
    assert_eq!(crm.received().len(), 1);

    let (ok, _, err) = eval("https://crm.example.com");
    assert!(!ok, "another host is refused");
    assert!(err.contains("not in this plugin's allowed_hosts"), "{err}");
    assert_eq!(crm.received().len(), 1, "nothing more reached the server");
}
