//! Record and replay: the daemon keeps each decision with its input, and runs a candidate
//! version on them before it becomes current, reporting where it decides otherwise.

use serde_json::{Value, json};

use super::harness::*;
use flowgate_tests::artifacts;

fn replay(d: &Daemon, query: &str, wasm_path: &str) -> (u16, Value) {
    let wasm = std::fs::read(wasm_path).unwrap_or_else(|e| panic!("{wasm_path}: {e}"));
    let path = format!("/api/v1/plugins/purchase-approval/replay{query}");
    d.raw(&path, ACME_ADMIN, "application/wasm", &wasm)
}

#[test]
fn a_candidate_replayed_on_recorded_decisions_reports_exactly_the_purchases_it_decides_otherwise() {
    let d = start(8 << 20);
    // Dollars; the candidate moves the director band's start from 5,000 down to 2,000.
    let purchases = [
        (100, "office"),
        (600, "office"),
        (1_999, "office"),
        (2_000, "office"),
        (3_500, "it"),
        (4_999, "office"),
        (5_000, "office"),
        (70_000, "hardware"),
    ];
    let mut in_band = Vec::new();
    for (dollars, category) in purchases {
        let id = start_purchase(&d, dollars * 100, category);
        if (2_000..5_000).contains(&dollars) {
            in_band.push(id);
        }
    }
    let calls = eventually("every decision recorded", || {
        let (status, body) = d.call(
            "GET",
            "/api/v1/plugins/purchase-approval/calls?limit=100",
            Some(ACME_ADMIN),
            None,
        );
        assert_eq!(status, 200, "{body}");
        let rows = body.as_array().cloned().unwrap_or_default();
        (rows.len() == purchases.len()).then_some(rows)
    });
    // Newest first, with the exact input and what was decided.
    let newest = &calls[0];
    assert_eq!(newest["workflow"], "purchase-request", "{newest}");
    assert_eq!(
        newest["request"]["capability"], "approval-policy",
        "{newest}"
    );
    assert_eq!(newest["request"]["amount"], 7_000_000, "{newest}");
    let data: Value =
        serde_json::from_str(newest["data"].as_str().unwrap_or("{}")).unwrap_or(Value::Null);
    assert_eq!(data["category"], "hardware", "{newest}");
    assert_eq!(newest["replayable"], true, "{newest}");
    assert!(newest["fuel"].as_u64().unwrap_or(0) > 0, "{newest}");
    let stages = &newest["decision"]["stages"];
    assert_eq!(stages[0]["name"], "cfo", "{newest}");

    let (status, report) = replay(&d, "?last=100", artifacts::PURCHASE_APPROVAL_NEXT);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["replayed"], purchases.len(), "{report}");
    assert_eq!(report["same"], purchases.len() - in_band.len(), "{report}");
    assert_eq!(report["errors"], json!([]), "{report}");
    let mut differ: Vec<String> = report["differ"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["instance"].as_str().unwrap_or_default().to_string())
        .collect();
    differ.sort();
    in_band.sort();
    assert_eq!(differ, in_band, "{report}");
    // Side by side: the manager then, a director now.
    let first = &report["differ"][0];
    assert_eq!(first["recorded"]["stages"][0]["name"], "manager", "{first}");
    assert_eq!(
        first["candidate"]["stages"][0]["name"], "director",
        "{first}"
    );
    assert!(
        report["fuel"]["candidate_total"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    assert_ne!(report["candidate"], report["current"], "{report}");

    // Nothing was made current, and the instances keep their pinned version.
    let (_, plugins) = d.call("GET", "/api/v1/plugins", Some(ACME_ADMIN), None);
    let current = plugins
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "purchase-approval")
        .map(|p| p["sha256"].clone());
    assert_eq!(current, Some(report["current"].clone()), "{plugins}");

    // The current version replayed on its own decisions decides the same everywhere.
    let (status, same) = replay(
        &d,
        "?workflow=purchase-request",
        artifacts::PURCHASE_APPROVAL,
    );
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["same"], purchases.len(), "{same}");
    assert_eq!(same["differ"], json!([]), "{same}");

    // `last` takes the newest: the last purchase is outside the band.
    let (status, one) = replay(&d, "?last=1", artifacts::PURCHASE_APPROVAL_NEXT);
    assert_eq!(status, 200, "{one}");
    assert_eq!(
        (one["replayed"].clone(), one["same"].clone()),
        (json!(1), json!(1))
    );
}

#[test]
fn replay_refuses_what_it_cannot_run_and_who_may_not_ask() {
    let d = start(8 << 20);
    let (status, body) = replay(&d, "?last=0", artifacts::PURCHASE_APPROVAL_NEXT);
    assert_eq!((status, code(&body)), (400, "invalid"), "{body}");
    let (status, body) = replay(&d, "?lsat=5", artifacts::PURCHASE_APPROVAL_NEXT);
    assert_eq!((status, code(&body)), (400, "invalid"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`lsat`"),
        "{body}"
    );
    let (status, body) = d.raw(
        "/api/v1/plugins/purchase-approval/replay",
        ACME_ADMIN,
        "application/wasm",
        b"not wasm",
    );
    assert_eq!(status, 422, "{body}");
    let (status, body) = d.raw(
        "/api/v1/plugins/nobody/replay",
        ACME_ADMIN,
        "application/wasm",
        b"\0asm",
    );
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
    let (status, body) = d.raw(
        "/api/v1/plugins/purchase-approval/replay",
        "acme-dora-token",
        "application/wasm",
        b"\0asm",
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = d.call(
        "GET",
        "/api/v1/plugins/purchase-approval/calls",
        Some("acme-dora-token"),
        None,
    );
    assert_eq!(status, 403, "{body}");
    // Another tenant's plugin is not there for this one.
    let (status, body) = d.call(
        "GET",
        "/api/v1/plugins/purchase-approval/calls",
        Some(GLOBEX_ADMIN),
        None,
    );
    assert_eq!(status, 404, "{body}");
}

/// The candidates the daemon keeps for purchase-approval: `(sha256, shadow, shadow report)`.
fn candidates(d: &Daemon) -> Vec<(String, bool, Value)> {
    let (status, body) = d.call(
        "GET",
        "/api/v1/plugins/purchase-approval/candidates",
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["sha256"].as_str().unwrap_or_default().to_string(),
                c["shadow"] == true,
                c["shadow_report"].clone(),
            )
        })
        .collect()
}

fn current_version(d: &Daemon) -> Value {
    let (_, plugins) = d.call("GET", "/api/v1/plugins", Some(ACME_ADMIN), None);
    plugins
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "purchase-approval")
        .map(|p| p["sha256"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn a_candidate_is_kept_shadowed_on_live_decisions_replayed_and_promoted_or_discarded() {
    let d = start(8 << 20);
    let before = current_version(&d);
    let wasm = std::fs::read(artifacts::PURCHASE_APPROVAL_NEXT).unwrap_or_else(|e| panic!("{e}"));
    let (status, uploaded) = d.raw(
        "/api/v1/plugins/purchase-approval/candidates?shadow=true",
        ACME_ADMIN,
        "application/wasm",
        &wasm,
    );
    assert_eq!(status, 201, "{uploaded}");
    assert_eq!(uploaded["shadow"], true, "{uploaded}");
    let sha = uploaded["sha256"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        current_version(&d),
        before,
        "a candidate is not made current"
    );

    // Live decisions: the current version's apply, the candidate's are compared.
    let in_band = start_purchase(&d, 300_000, "office");
    start_purchase(&d, 60_000, "office");
    start_purchase(&d, 900_000, "it");
    let report = eventually("the shadow to see three calls", || {
        let found = candidates(&d);
        let (_, _, report) = found.first()?.clone();
        (report["calls"] == 3).then_some(report)
    });
    assert_eq!(
        (report["same"].clone(), report["differ"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(report["recent"][0]["instance"], json!(in_band), "{report}");
    assert_eq!(
        report["recent"][0]["recorded"]["stages"][0]["name"],
        "manager"
    );
    assert_eq!(
        report["recent"][0]["candidate"]["stages"][0]["name"],
        "director"
    );
    // What was applied is the current version's: a manager's task.
    d.open_task(ACME_ADMIN, &in_band, "manager");

    // Replayed from its kept bytes on the recorded calls.
    let path = format!("/api/v1/plugins/purchase-approval/candidates/{sha}/replay?last=10");
    let (status, replayed) = d.call("POST", &path, Some(ACME_ADMIN), None);
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(
        (replayed["replayed"].clone(), replayed["same"].clone()),
        (json!(3), json!(2))
    );

    // From the command line, as an author would in CI: `--expect-same` fails on a difference.
    let cli = |extra: &[&str]| {
        let mut args = vec![
            "--url",
            d.base.as_str(),
            "--token",
            ACME_ADMIN,
            "plugin",
            "replay",
            "purchase-approval",
            artifacts::PURCHASE_APPROVAL_NEXT,
            "--last",
            "10",
        ];
        args.extend_from_slice(extra);
        run_cli(&args)
    };
    let (ok, printed, err) = cli(&[]);
    assert!(ok, "{err}");
    assert_eq!(
        printed["differ"][0]["instance"],
        json!(in_band),
        "{printed}"
    );
    let (ok, _, err) = cli(&["--expect-same"]);
    assert!(!ok);
    assert!(
        err.contains("decided 1 of 3 recorded calls otherwise"),
        "{err}"
    );

    // Kept across a restart, and back in shadow mode.
    let mut d = d;
    terminate(&mut d);
    let d = start_in(folder_of(d), 8 << 20);
    assert_eq!(candidates(&d).len(), 1);
    start_purchase(&d, 250_000, "office");
    eventually("the shadow after the restart", || {
        let (_, _, report) = candidates(&d).first()?.clone();
        (report["calls"] == 1 && report["differ"] == 1).then_some(())
    });

    // Promoted: current, no longer a candidate; new instances get its decisions.
    let path = format!("/api/v1/plugins/purchase-approval/candidates/{sha}/promote");
    let (status, promoted) = d.call("POST", &path, Some(ACME_ADMIN), None);
    assert_eq!(status, 200, "{promoted}");
    assert_eq!(current_version(&d), json!(sha));
    assert!(candidates(&d).is_empty());
    let after = start_purchase(&d, 300_000, "office");
    d.open_task(ACME_ADMIN, &after, "director");
    let (status, body) = d.call("POST", &path, Some(ACME_ADMIN), None);
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");

    // Discarded: gone from the list; a second discard is 404.
    let old = std::fs::read(artifacts::PURCHASE_APPROVAL).unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = d.raw(
        "/api/v1/plugins/purchase-approval/candidates",
        ACME_ADMIN,
        "application/wasm",
        &old,
    );
    assert_eq!(status, 201, "{body}");
    let old_sha = body["sha256"].as_str().unwrap_or_default().to_string();
    let path = format!("/api/v1/plugins/purchase-approval/candidates/{old_sha}");
    assert_eq!(d.call("DELETE", &path, Some(ACME_ADMIN), None).0, 204);
    assert!(candidates(&d).is_empty());
    let (status, body) = d.call("DELETE", &path, Some(ACME_ADMIN), None);
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
}
