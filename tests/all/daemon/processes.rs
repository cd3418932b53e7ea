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
    let times: Vec<u64> = timeline.iter().map(|e| instant(&e["at"])).collect();
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
    let first_start = instant(&ended["instances"][0]["started_at"]);
    let last_end = instant(&ended["instances"][1]["ended_at"]);
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

fn deploy(d: &Daemon, file: &str, source: &str) {
    let (status, body) = d.call(
        "POST",
        "/api/v1/definitions",
        Some(ACME_ADMIN),
        Some(json!({"file": file, "source": source})),
    );
    assert!(status == 201 || status == 200, "{body}");
}

/// The fulfilment workflow, its start form asking for the order as `kind`.
fn fulfilment(kind: &str) -> String {
    format!(
        r#"
id = "fulfilment"
start = "pack"
start_form = [{{ name = "order", type = "{kind}", required = true }}]
[[steps]]
id = "pack"
kind = "task"
role = "warehouse"
next = "done"
[[steps]]
id = "done"
kind = "end"
"#
    )
}

#[test]
fn a_next_workflow_that_refuses_its_start_raises_an_incident_that_a_retry_resolves() {
    let d = start(1 << 20);
    // Orders are numbers to the first fulfilment workflow; the intake gives them as text.
    deploy(&d, "fulfilment.toml", &fulfilment("number"));
    deploy(
        &d,
        "intake.toml",
        r#"
id = "intake"
start = "triage"
[[steps]]
id = "triage"
kind = "task"
role = "clerk"
next = "done"
[[steps]]
id = "done"
kind = "end"
then = { workflow = "fulfilment", data = { order = "order" } }
"#,
    );
    let (status, first) = d.call(
        "POST",
        "/api/v1/instances",
        Some(ACME_ADMIN),
        Some(json!({"workflow": "intake", "data": {"order": "SO-12"}})),
    );
    assert_eq!(status, 201, "{first}");
    let intake = first["id"].as_str().unwrap_or_default().to_string();
    let task = d.task_for(&intake, "clerk");
    let (status, body) = d.call(
        "POST",
        &format!("/api/v1/tasks/{task}/complete"),
        Some(ACME_ADMIN),
        Some(json!({"by": {"id": "cleo", "roles": ["clerk"]}})),
    );
    assert_eq!(status, 200, "{body}");

    // The start is refused for good: an incident says why, and the case stays open.
    let incident = eventually("an incident for the refused start", || {
        let (_, list) = d.call("GET", "/api/v1/incidents", Some(ACME_ADMIN), None);
        list.as_array()?
            .iter()
            .find(|i| i["instance"] == intake.as_str())
            .cloned()
    });
    assert_eq!(incident["source"], "start", "{incident}");
    assert_eq!(incident["step"], "done");
    let error = incident["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("`fulfilment` did not start") && error.contains("order"),
        "{error}"
    );
    let (_, body) = d.call(
        "GET",
        &format!("/api/v1/instances/{intake}"),
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(body["instance"]["status"], "running", "{body}");
    assert_eq!(
        process(&d, &intake)["instances"].as_array().map(Vec::len),
        Some(1)
    );

    // Fixed in a new version of the fulfilment workflow, then retried.
    deploy(&d, "fulfilment.toml", &fulfilment("text"));
    let token = incident["token"].as_u64().unwrap_or_default();
    let (status, body) = d.call(
        "POST",
        &format!("/api/v1/instances/{intake}/incidents/{token}/retry"),
        Some(ACME_ADMIN),
        Some(json!({"reason": "orders are text now"})),
    );
    assert_eq!(status, 200, "{body}");
    let case = eventually("the fulfilment workflow to run", || {
        let case = process(&d, &intake);
        let ended = case["instances"][0]["status"] == "completed";
        (ended && case["instances"].as_array().map_or(0, Vec::len) == 2).then_some(case)
    });
    assert_eq!(case["instances"][1]["workflow"], "fulfilment");
    assert_eq!(case["instances"][1]["version"], 2);
    assert_eq!(case["handoffs"][0]["to"], case["instances"][1]["id"]);
    let next = case["instances"][1]["id"].as_str().unwrap_or_default();
    let (_, body) = d.call(
        "GET",
        &format!("/api/v1/instances/{next}"),
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(body["instance"]["data"]["order"], "SO-12");
}

#[test]
fn process_definitions_show_their_links_and_their_metrics_hold_the_cases_that_ended() {
    let d = start(1 << 20);
    let (status, list) = d.call("GET", "/api/v1/process-definitions", Some(ACME_ADMIN), None);
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list
        .as_array()
        .map(|l| l.iter().filter_map(|p| p["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["accounts-payable", "client-onboarding"]);
    let (status, ap) = d.call(
        "GET",
        "/api/v1/process-definitions/accounts-payable",
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(status, 200, "{ap}");
    assert_eq!(ap["starts"], "invoice-receipt");
    assert_eq!(ap["problems"], json!([]), "{ap}");
    let links: Vec<(String, String)> = ap["links"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|k| (k["from"].to_string(), k["to"].to_string()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(links.len(), 3, "{ap}");
    assert!(links.contains(&("\"invoice-approval\"".into(), "\"invoice-payment\"".into())));

    // One invoice refused at matching: a case of two workflows, ended.
    let (status, first) = d.call(
        "POST",
        "/api/v1/instances",
        Some(ACME_ADMIN),
        Some(json!({"workflow": "invoice-receipt", "data": {"invoice_id": "INV-1", "vendor": "Globex", "amount": 1200}})),
    );
    assert_eq!(status, 201, "{first}");
    let receipt = first["id"].as_str().unwrap_or_default().to_string();
    let clerk = json!({"id": "cleo", "roles": ["ap-clerk"]});
    let task = d.task_for(&receipt, "ap-clerk");
    let (status, body) = d.call(
        "POST",
        &format!("/api/v1/tasks/{task}/complete"),
        Some(ACME_ADMIN),
        Some(json!({"by": clerk, "data": {"po_number": "PO-1"}})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = d.call(
        "POST",
        "/api/v1/messages",
        Some(ACME_ADMIN),
        Some(json!({"id": "wh-1", "name": "goods-received", "correlation": "PO-1", "data": {"received_qty": 3}})),
    );
    assert!(status == 200 || status == 202, "{body}");
    let matching = eventually("the matching workflow", || {
        process(&d, &receipt)["instances"][1]["id"]
            .as_str()
            .map(str::to_string)
    });
    let matching = d.task_for(&matching, "ap-clerk");
    let (status, body) = d.call(
        "POST",
        &format!("/api/v1/tasks/{matching}/complete"),
        Some(ACME_ADMIN),
        Some(json!({"by": clerk, "outcome": "mismatch"})),
    );
    assert_eq!(status, 200, "{body}");

    let metrics = eventually("the case to end", || {
        let (status, m) = d.call(
            "GET",
            "/api/v1/process-definitions/accounts-payable/metrics",
            Some(ACME_ADMIN),
            None,
        );
        assert_eq!(status, 200, "{m}");
        (m["ended"] == 1).then_some(m)
    });
    assert_eq!(
        metrics["outcomes"]["invoice-matching rejected"], 1,
        "{metrics}"
    );
    assert_eq!(metrics["cycle_time"]["count"], 1);
    assert_eq!(
        metrics["handoffs"]["invoice-receipt → invoice-matching"]["count"],
        1
    );
    assert_eq!(metrics["cost"]["currency"], "EUR");
    // The match was priced at 0.50; the people's seconds add cents at most.
    let total = metrics["cost"]["per_case"]["total"]
        .as_f64()
        .unwrap_or_default();
    assert!((0.5..0.6).contains(&total), "{metrics}");
    let case = process(&d, &receipt);
    assert_eq!(case["outcome"], "invoice-matching rejected");

    let (status, body) = d.call(
        "GET",
        "/api/v1/process-definitions/accounts-payable/metrics?from=2026-12-05T00:00:00%2B01:00&to=2026-12-04T00:00:00Z",
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!((status, code(&body)), (400, "invalid"), "{body}");
    let (status, body) = d.call(
        "GET",
        "/api/v1/process-definitions/nope/metrics",
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(status, 404, "{body}");
    let (status, body) = d.call(
        "GET",
        "/api/v1/process-definitions/accounts-payable",
        Some(GLOBEX_ADMIN),
        None,
    );
    assert_eq!(status, 404, "another tenant's process definition: {body}");
}

#[test]
fn a_message_that_names_a_case_starts_its_workflow_inside_that_case() {
    let d = start(1 << 20);
    let (status, first) = d.call(
        "POST",
        "/api/v1/instances",
        Some(ACME_ADMIN),
        Some(json!({"workflow": "invoice-receipt", "data": {"invoice_id": "INV-9", "vendor": "Globex", "amount": 500}})),
    );
    assert_eq!(status, 201, "{first}");
    let case = first["id"].as_str().unwrap_or_default().to_string();
    let query = |id: &str, process: &str| {
        json!({"id": id, "name": "vendor-query", "correlation": "INV-9",
               "data": {"question": "When will it be paid?"}, "process": process})
    };

    let (status, sent) = d.call(
        "POST",
        "/api/v1/messages",
        Some(ACME_ADMIN),
        Some(query("portal-1", &case)),
    );
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["status"], "started", "{sent}");
    let started = sent["instances"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (status, body) = d.call(
        "GET",
        &format!("/api/v1/instances/{started}"),
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["instance"]["process"],
        case.as_str(),
        "it joins the case"
    );
    assert_eq!(body["instance"]["data"]["invoice_id"], "INV-9");
    let members: Vec<Value> = process(&d, &case)["instances"]
        .as_array()
        .map(|m| m.iter().map(|i| i["workflow"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(members, [json!("invoice-receipt"), json!("vendor-query")]);

    // A case that does not exist, or another tenant's, is not found; nothing starts.
    let (status, body) = d.call(
        "POST",
        "/api/v1/messages",
        Some(ACME_ADMIN),
        Some(query("portal-2", "no-such-case")),
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    let (status, body) = d.call(
        "POST",
        "/api/v1/messages",
        Some(GLOBEX_ADMIN),
        Some(query("portal-3", &case)),
    );
    assert!(status == 404 || status == 422, "{body}");

    // A case of another kind of process does not take the workflow: the error says whose.
    let (status, onboarding) = d.call(
        "POST",
        "/api/v1/instances",
        Some(ACME_ADMIN),
        Some(json!({"workflow": "client-questionnaire", "data": {"client": "Initech", "client_email": "bill@initech.example"}})),
    );
    assert_eq!(status, 201, "{onboarding}");
    let other = onboarding["id"].as_str().unwrap_or_default();
    let (status, body) = d.call(
        "POST",
        "/api/v1/messages",
        Some(ACME_ADMIN),
        Some(query("portal-4", other)),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"]["field"], "process", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("client-onboarding"), "{message}");
    assert_eq!(
        process(&d, other)["instances"].as_array().map(Vec::len),
        Some(1),
        "nothing joined the refused case"
    );

    // The API's own start may join a case too.
    let (status, body) = d.call(
        "POST",
        "/api/v1/instances",
        Some(ACME_ADMIN),
        Some(json!({"workflow": "vendor-query", "data": {"invoice_id": "INV-9", "question": "Is the PO right?"}, "process": case})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["process"], case.as_str());
}
