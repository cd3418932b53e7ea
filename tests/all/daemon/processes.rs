//! A process of linked workflows over HTTP: the questionnaire's end starts the contract
//! workflow in the same process instance, and the process shows both as one case.

use serde_json::{Value, json};

use super::harness::*;

fn process(d: &Daemon, id: &str) -> Value {
    let (status, body) = d.call(
        "GET",
        &format!("/api/v1/processes/{id}"),
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn a_workflow_that_ends_starts_the_next_one_in_its_process_and_the_case_reads_as_one() {
    let d = start(1 << 20);
    let start = json!({"workflow": "client-questionnaire", "data": {"client": "Initech", "client_email": "bill@initech.example"}});
    let (status, first) = d.call("POST", "/api/v1/instances", Some(ACME_ADMIN), Some(start));
    assert_eq!(status, 201, "{first}");
    let questionnaire = first["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        first["process"],
        questionnaire.as_str(),
        "it begins its own process"
    );
    let task = d.task_for(&questionnaire, "sales");
    let answers = json!({"by": {"id": "sam", "roles": ["sales"]}, "data": {"contract": "MSA-7", "employees": 40}});
    let (status, body) = d.call(
        "POST",
        &format!("/api/v1/tasks/{task}/complete"),
        Some(ACME_ADMIN),
        Some(answers),
    );
    assert_eq!(status, 200, "{body}");

    let case = eventually("the contract workflow to start", || {
        let case = process(&d, &questionnaire);
        (case["instances"].as_array().map_or(0, Vec::len) == 2).then_some(case)
    });
    let contract = case["instances"][1].clone();
    assert_eq!(contract["workflow"], "contract-signing");
    let contract_id = contract["id"].as_str().unwrap_or_default().to_string();
    let (_, body) = d.call(
        "GET",
        &format!("/api/v1/instances/{contract_id}"),
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(body["instance"]["process"], questionnaire.as_str());
    assert_eq!(body["instance"]["data"]["contract"], "MSA-7");
    assert_eq!(
        body["instance"]["data"]["client_email"],
        "bill@initech.example"
    );
    assert_eq!(
        body["instance"]["started_by"],
        "workflow client-questionnaire"
    );
    assert_eq!(case["running"], true);
    assert_eq!(case["cycle_ms"], Value::Null, "no cycle time while it runs");
    assert_eq!(case["handoffs"].as_array().map(Vec::len), Some(1), "{case}");
    assert_eq!(case["handoffs"][0]["from"], questionnaire.as_str());
    assert_eq!(case["handoffs"][0]["to"], contract_id.as_str());
    assert_eq!(case["waits"][0]["step"], "questionnaire");
    // One timeline: both instances' events, in time order.
    let timeline = case["timeline"].as_array().cloned().unwrap_or_default();
    let instances: std::collections::BTreeSet<&str> = timeline
        .iter()
        .filter_map(|e| e["instance"].as_str())
        .collect();
    assert_eq!(instances.len(), 2);
    let times: Vec<u64> = timeline.iter().filter_map(|e| e["at"].as_u64()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    let (status, _) = d.call(
        "POST",
        &format!("/api/v1/instances/{contract_id}/cancel"),
        Some(ACME_ADMIN),
        Some(json!({"reason": "client withdrew"})),
    );
    assert_eq!(status, 200);
    let ended = process(&d, &questionnaire);
    assert_eq!(ended["running"], false);
    let cycle = ended["cycle_ms"].as_u64().unwrap_or(0);
    let first_start = ended["instances"][0]["started_at"].as_u64().unwrap_or(0);
    let last_end = ended["instances"][1]["ended_at"].as_u64().unwrap_or(0);
    assert_eq!(cycle, last_end - first_start);

    let (status, _) = d.call("GET", "/api/v1/processes/nope", Some(ACME_ADMIN), None);
    assert_eq!(status, 404);
    let (status, _) = d.call(
        "GET",
        &format!("/api/v1/processes/{questionnaire}"),
        Some(GLOBEX_ADMIN),
        None,
    );
    assert_eq!(status, 404, "another tenant's process is not found");
}
