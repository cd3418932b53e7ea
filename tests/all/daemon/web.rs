//! The web app: in a real headless Chromium as people use it (`tests/web/browser.py`), and its
//! sessions, diagrams and incident routes over plain HTTP.

use std::path::Path;

use serde_json::{Value, json};

use super::harness::*;

/// Chromium: `FLOWGATE_CHROMIUM`, or Debian's package.
fn chromium() -> String {
    let path = std::env::var("FLOWGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&path).exists(),
        "{path} is missing: install Debian's `chromium` package (`.ci/run` does), or set FLOWGATE_CHROMIUM"
    );
    path
}

/// Runs a browser script of `tests/web/` with `args` and the screenshot folder last; asserts it
/// passed, with its output (and where the screenshots are) when it did not.
fn in_browser(script: &str, args: &[&str]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("web")
        .join(script);
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    let out = std::process::Command::new(tools_python())
        .arg(&path)
        .args(args)
        .arg(&shots)
        .env("FLOWGATE_CHROMIUM", chromium())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{script} failed (screenshots in {}):\n{}\n{}",
        shots.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn people_and_operators_use_the_web_app_in_a_real_browser() {
    let d = start(1 << 20);
    in_browser("browser.py", &[&d.base]);
}

/// An agent that does not follow redirects, so that answers are seen as they are.
fn browser_like() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Signs in with `token`; returns the `name=value` of the session cookie and its whole header.
fn sign_in(d: &Daemon, token: &str) -> (String, String) {
    let response = browser_like()
        .post(&format!("{}/login", d.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .send(format!("token={token}&next=%2Finbox"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(header(&response, "location"), "/inbox");
    let set = header(&response, "set-cookie");
    let pair = set.split(';').next().unwrap_or_default().to_string();
    (pair, set)
}

fn page(cookie: &str, url: &str) -> (u16, String, String) {
    let mut response = browser_like()
        .get(url)
        .header("cookie", cookie)
        .call()
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    let location = header(&response, "location");
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, location, body)
}

fn post_form(cookie: &str, url: &str, form: &str) -> (u16, String, String) {
    let mut response = browser_like()
        .post(url)
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .send(form.to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    let location = header(&response, "location");
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, location, body)
}

/// The value of the page's hidden `csrf` field.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").map(|i| i + 19);
    at.and_then(|i| html[i..].split('"').next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_session_cookie_is_http_only_and_strict_forms_need_its_csrf_token_and_logout_ends_it() {
    let d = start(1 << 20);
    let inbox = format!("{}/inbox", d.base);
    // Without a session, a page sends the browser to sign in, and back afterwards.
    let (status, location, _) = page("", &inbox);
    assert_eq!((status, location.as_str()), (303, "/login?next=/inbox"));
    // A wrong token is refused with a page that says so, and no cookie.
    let response = browser_like()
        .post(&format!("{}/login", d.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .send("token=wrong")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(header(&response, "set-cookie"), "");
    // Sign-in sends only where this site says: never to another origin.
    let response = browser_like()
        .post(&format!("{}/login", d.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .send("token=acme-dora-token&next=%2F%2Fevil.example%2F")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(header(&response, "location"), "/inbox");

    let (cookie, set) = sign_in(&d, "acme-dora-token");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(set.contains(attribute), "{attribute} missing from {set}");
    }
    let (status, _, html) = page(&cookie, &inbox);
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("dora"), "{html}");
    let csrf = csrf_of(&html);
    assert_eq!(csrf.len(), 64, "{html}");

    // A form without the session's CSRF token is refused, and nothing is done.
    let instance = start_purchase(&d, 900_000, "office");
    let task = d.task_for(&instance, "director");
    let claim = format!("{}/tasks/{task}/claim", d.base);
    let (status, _, body) = post_form(&cookie, &claim, "csrf=forged");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("This form has expired"), "{body}");
    let (_, found) = d.call(
        "GET",
        &format!("/api/v1/instances/{instance}"),
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(found["instance"]["tasks"][&task]["claimed_by"], Value::Null);
    // With it, the claim is made as the signed-in person.
    let (status, location, _) = post_form(&cookie, &claim, &format!("csrf={csrf}"));
    assert_eq!((status, location), (303, format!("/tasks/{task}")));
    let (_, found) = d.call(
        "GET",
        &format!("/api/v1/instances/{instance}"),
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(found["instance"]["tasks"][&task]["claimed_by"], "dora");

    // Signing out ends the session on the server: the old cookie no longer opens a page.
    let (status, location, _) = post_form(
        &cookie,
        &format!("{}/logout", d.base),
        &format!("csrf={csrf}"),
    );
    assert_eq!((status, location.as_str()), (303, "/login"));
    let (status, location, _) = page(&cookie, &inbox);
    assert_eq!((status, location.as_str()), (303, "/login?next=/inbox"));
}

#[test]
fn a_task_page_is_forbidden_to_another_role_and_not_found_in_another_tenant() {
    let d = start(1 << 20);
    let instance = start_purchase(&d, 900_000, "office");
    let task = d.task_for(&instance, "director");
    let url = format!("{}/tasks/{task}", d.base);
    let (pat, _) = sign_in(&d, "acme-pat-token");
    let (status, _, body) = page(&pat, &url);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("is for role director"), "{body}");
    let (globex, _) = sign_in(&d, GLOBEX_ADMIN);
    for url in [url, format!("{}/instances/{instance}", d.base)] {
        let (status, _, body) = page(&globex, &url);
        assert_eq!(status, 404, "{url}: {body}");
    }
    let (dora, _) = sign_in(&d, "acme-dora-token");
    let (status, _, body) = page(&dora, &format!("{}/tasks/{task}", d.base));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("9,000.00 USD"), "{body}");
}

fn svg(d: &Daemon, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut request = d.agent.get(&format!("{}{path}", d.base));
    if let Some(t) = token {
        request = request.header("authorization", &format!("Bearer {t}"));
    }
    let mut response = request.call().unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    let kind = header(&response, "content-type");
    (
        status,
        kind,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

#[test]
fn diagrams_are_served_as_svg_for_a_version_and_marked_for_an_instance() {
    let d = start(1 << 20);
    let (status, kind, body) = svg(
        &d,
        "/api/v1/definitions/purchase-request/versions/1/diagram.svg",
        Some(ACME_ADMIN),
    );
    assert_eq!((status, kind.as_str()), (200, "image/svg+xml"), "{body}");
    assert!(
        body.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{body}"
    );
    for step in ["Approve the purchase", "Place the order", "rejected"] {
        assert!(body.contains(step), "{step} missing: {body}");
    }
    assert_eq!(body.matches("<g class=\"step ").count(), 4, "{body}");
    assert!(
        !body.contains(" current\">"),
        "a version alone has no progress: {body}"
    );

    let instance = start_purchase(&d, 900_000, "office");
    d.task_for(&instance, "director");
    let path = format!("/api/v1/instances/{instance}/diagram.svg");
    let (status, _, body) = svg(&d, &path, Some(ACME_ADMIN));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<g class=\"step approval start current\">"),
        "the approval is where it waits: {body}"
    );

    let (status, _, body) = svg(&d, &path, Some(GLOBEX_ADMIN));
    assert_eq!(status, 404, "{body}");
    let (status, _, _) = svg(&d, &path, None);
    assert_eq!(status, 401);
    let (status, _, body) = svg(
        &d,
        "/api/v1/definitions/purchase-request/versions/x/diagram.svg",
        Some(ACME_ADMIN),
    );
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = svg(
        &d,
        "/api/v1/definitions/purchase-request/versions/99/diagram.svg",
        Some(ACME_ADMIN),
    );
    assert_eq!(status, 404, "{body}");
}

#[test]
fn incidents_are_listed_across_instances_and_retried_or_skipped_with_a_reason() {
    let d = start(1 << 20);
    // The purchase policy refuses a negative amount: an incident at once.
    let broken = start_purchase(&d, -100, "office");
    start_purchase(&d, 900_000, "office");
    let listed = eventually("the incident is listed", || {
        let (status, body) = d.call("GET", "/api/v1/incidents", Some(ACME_ADMIN), None);
        assert_eq!(status, 200, "{body}");
        body.as_array().filter(|rows| !rows.is_empty()).cloned()
    });
    assert_eq!(listed.len(), 1, "{listed:?}");
    let row = &listed[0];
    assert_eq!(row["instance"], broken.as_str());
    assert_eq!(row["step"], "approval");
    assert_eq!(row["plugin"], "purchase-approval");
    assert_eq!(row["blame"], "guest");
    assert!(
        row["error"]
            .as_str()
            .is_some_and(|e| e.contains("must not be negative")),
        "{row}"
    );
    let token = row["token"].as_u64().unwrap_or_default();
    let retry = format!("/api/v1/instances/{broken}/incidents/{token}/retry");
    let skip = format!("/api/v1/instances/{broken}/incidents/{token}/skip");
    let reason = json!({"reason": "the requester fixed the amount"});

    // Only the tenant's administrators resolve incidents, with a reason.
    let (status, body) = d.call(
        "POST",
        &retry,
        Some("acme-dora-token"),
        Some(reason.clone()),
    );
    assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");
    let (status, body) = d.call("POST", &retry, Some(GLOBEX_ADMIN), Some(reason.clone()));
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
    let (status, body) = d.call(
        "POST",
        &retry,
        Some(ACME_ADMIN),
        Some(json!({"reason": " "})),
    );
    assert_eq!(
        (status, body["error"]["details"]["field"].clone()),
        (422, json!("reason"))
    );
    let (status, body) = d.call(
        "POST",
        &format!("/api/v1/instances/{broken}/incidents/x/retry"),
        Some(ACME_ADMIN),
        Some(reason.clone()),
    );
    assert_eq!(status, 400, "{body}");

    // A retry runs the policy again; it refuses again, so the incident is back.
    let (status, body) = d.call("POST", &retry, Some(ACME_ADMIN), Some(reason.clone()));
    assert_eq!(status, 200, "{body}");
    let again = eventually("the incident is raised again", || {
        let (_, body) = d.call("GET", "/api/v1/incidents", Some(ACME_ADMIN), None);
        body.as_array()?
            .first()
            .filter(|r| r["attempts"].as_u64() >= Some(2))
            .cloned()
    });
    assert_eq!(again["token"].as_u64(), Some(token), "{again}");
    // Skipping leaves the approval as rejected; the instance ends so.
    let (status, body) = d.call(
        "POST",
        &skip,
        Some(ACME_ADMIN),
        Some(json!({"reason": "a negative amount cannot be bought", "outcome": "reject", "data": {"refusal": {"code": 7}}})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "rejected", "{body}");
    assert_eq!(
        body["data"]["refusal"],
        json!({"code": 7}),
        "the skip's data is kept"
    );
    let (status, body) = d.call(
        "POST",
        &skip,
        Some(ACME_ADMIN),
        Some(json!({"reason": "again", "outcome": "reject"})),
    );
    assert_eq!(status, 409, "{body}");
    let (_, view) = d.call(
        "GET",
        &format!("/api/v1/instances/{broken}"),
        Some(ACME_ADMIN),
        None,
    );
    let resolved: Vec<(Value, Value)> = view["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["event"] == "incident-resolved")
        .map(|e| (e["resolution"].clone(), e["reason"].clone()))
        .collect();
    assert_eq!(
        resolved,
        [
            (json!("retry"), json!("the requester fixed the amount")),
            (
                json!("skip with outcome reject"),
                json!("a negative amount cannot be bought")
            ),
        ],
        "{view}"
    );
    let (_, body) = d.call("GET", "/api/v1/incidents", Some(ACME_ADMIN), None);
    assert_eq!(body, json!([]));
}

#[test]
fn a_start_form_is_drawn_from_the_definition_checked_and_sent_once() {
    let d = start(1 << 20);
    let (cookie, _) = sign_in(&d, "acme-dora-token");
    let url = format!("{}/start/purchase-request", d.base);
    let (status, _, html) = page(&cookie, &url);
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains(r#"name="amount_cents" type="text" inputmode="decimal""#),
        "{html}"
    );
    let csrf = csrf_of(&html);
    let form = |amount: &str| {
        format!(
            "csrf={csrf}&key=req-1&title=Desk&amount_cents={amount}&currency=USD&category=office&requester=dora"
        )
    };
    // An amount with more decimals than the currency has is refused by the field, not rounded.
    let (status, _, html) = post_form(&cookie, &url, &form("12.345"));
    assert_eq!(status, 422, "{html}");
    assert!(
        html.contains("Enter an amount like 1250.50, with at most 2 decimals for USD"),
        "{html}"
    );
    let (status, location, _) = post_form(&cookie, &url, &form("1%2C234.50"));
    assert_eq!(status, 303);
    let id = location
        .strip_prefix("/instances/")
        .and_then(|l| l.strip_suffix("?started=1"))
        .unwrap_or_default()
        .to_string();
    let (_, got) = d.call(
        "GET",
        &format!("/api/v1/instances/{id}"),
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(got["instance"]["data"]["amount_cents"], 123_450, "{got}");
    assert_eq!(got["instance"]["started_by"], "dora", "{got}");
    // The same form sent again (a double click, a reload) starts nothing new.
    let (status, again, _) = post_form(&cookie, &url, &form("1234.50"));
    assert_eq!((status, again), (303, location));
    let (_, listed) = d.call("GET", "/api/v1/instances", Some(ACME_ADMIN), None);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    // Through the API, the start form is the contract: an undeclared field is refused by name.
    let start = json!({"workflow": "purchase-request", "data": {"amount_cents": 1250, "currency": "USD", "category": "office", "requester": "al", "colour": "red"}});
    let (status, body) = d.call("POST", "/api/v1/instances", Some(ACME_ADMIN), Some(start));
    assert_eq!(
        (status, body["error"]["details"]["field"].clone()),
        (422, json!("data.colour")),
        "{body}"
    );
    // A definition whose money has no currency does not deploy.
    let source = "id = \"x\"\nstart = \"end\"\nstart_form = [{ name = \"amount\", type = \"money\" }]\n[[steps]]\nid = \"end\"\nkind = \"end\"\n";
    let (status, body) = d.call(
        "POST",
        "/api/v1/definitions/validate",
        Some(ACME_ADMIN),
        Some(json!({"file": "x.toml", "source": source})),
    );
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("start_form[0].currency"),
        "{body}"
    );
}

#[test]
fn a_draft_is_checked_in_place_and_only_an_administrator_deploys_it() {
    let d = start(1 << 20);
    let (dora, _) = sign_in(&d, "acme-dora-token");
    let url = format!("{}/definitions/document-approval", d.base);
    let (status, _, html) = page(&dora, &url);
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains("Check and deploy"), "{html}");
    let csrf = csrf_of(&html);
    let (_, got) = d.call(
        "GET",
        "/api/v1/definitions/document-approval/versions/1",
        Some(ACME_ADMIN),
        None,
    );
    let source = got["source"].as_str().unwrap_or_default().to_string();
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let draft_url = format!("{url}/draft");
    let broken = source.replacen("kind = \"end\"", "kind = \"ending\"", 1);
    let (status, _, html) = post_form(
        &dora,
        &draft_url,
        &format!("csrf={csrf}&action=check&source={}", encode(&broken)),
    );
    assert_eq!(status, 422, "{html}");
    assert!(html.contains("problem(s) in the draft"), "{html}");
    assert!(
        html.contains("ending"),
        "the parser names the bad kind: {html}"
    );
    // A person may check a draft but not deploy it; an administrator may.
    let renamed = source.replacen("name = \"", "name = \"Reviewed: ", 1);
    let form = format!("csrf={csrf}&action=deploy&source={}", encode(&renamed));
    let (status, _, html) = post_form(&dora, &draft_url, &form);
    assert_eq!(status, 403, "{html}");
    let (ops, _) = sign_in(&d, ACME_ADMIN);
    let (_, _, html) = page(&ops, &url);
    let form = format!(
        "csrf={}&action=deploy&source={}",
        csrf_of(&html),
        encode(&renamed)
    );
    let (status, location, html) = post_form(&ops, &draft_url, &form);
    assert_eq!(
        (status, location.as_str()),
        (303, "/definitions/document-approval?deployed=2"),
        "{html}"
    );
    let (status, _) = d.call(
        "GET",
        "/api/v1/definitions/document-approval/versions/2",
        Some(ACME_ADMIN),
        None,
    );
    assert_eq!(status, 200);
    // Another tenant has no such workflow, nor its report.
    let (globex, _) = sign_in(&d, GLOBEX_ADMIN);
    for path in [
        "/definitions/document-approval",
        "/reports/document-approval",
    ] {
        let (status, _, body) = page(&globex, &format!("{}{path}", d.base));
        assert_eq!(status, 404, "{path}: {body}");
    }
}

/// A tenant whose email goes to `smtp`, with the contract-signing example and a copy of it whose
/// links last one second.
fn signing_tenant(dir: &Path, smtp: &flowgate_tests::receivers::SmtpSink) -> std::path::PathBuf {
    use sha2::{Digest, Sha256};
    let workflows = dir.join("workflows");
    std::fs::create_dir_all(&workflows).unwrap_or_else(|e| panic!("{e}"));
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/acme/workflows/contract-signing.toml");
    let source = std::fs::read_to_string(example).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(workflows.join("contract-signing.toml"), &source)
        .unwrap_or_else(|e| panic!("{e}"));
    let quick = source
        .replace("id = \"contract-signing\"", "id = \"quick-signing\"")
        .replace("link_valid = \"7d\"", "link_valid = \"1s\"");
    std::fs::write(workflows.join("quick-signing.toml"), quick).unwrap_or_else(|e| panic!("{e}"));
    let sha = hex::encode(Sha256::digest(b"signing-admin-token"));
    let text = format!(
        "id = \"initech\"\nworkflows = {workflows:?}\n\n[[tokens]]\nname = \"ops\"\nsha256 = \"{sha}\"\naccess = \"admin\"\n\n[email]\nurl = {:?}\nfrom = \"Initech <flowgate@initech.example>\"\ntimeout_ms = 2000\n",
        smtp.url()
    );
    let path = dir.join("initech.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path
}

/// Starts a signing for `email`; returns the link the email sent them holds.
fn signing_link(
    d: &Daemon,
    smtp: &flowgate_tests::receivers::SmtpSink,
    workflow: &str,
    email: &str,
) -> String {
    let start = json!({"workflow": workflow, "data": {"client": "Joan", "client_email": email, "contract": "MSA-7"}});
    let (status, body) = d.call(
        "POST",
        "/api/v1/instances",
        Some("signing-admin-token"),
        Some(start),
    );
    assert_eq!(status, 201, "{body}");
    let mail = eventually("the participant's email", || {
        smtp.mails()
            .into_iter()
            .find(|m| m.to == [email.to_string()])
    });
    assert_eq!(
        mail.header("Subject"),
        Some("Sign the contract"),
        "{}",
        mail.data
    );
    // Long lines come quoted-printable: join soft breaks before looking for the link.
    let text = mail
        .data
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let start = text.find(&format!("{}/x/", d.base));
    let link: String = start
        .map(|i| {
            text[i..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect()
        })
        .unwrap_or_default();
    assert!(!link.is_empty(), "no link in {}", mail.data);
    assert!(!text.contains("acme"), "{text}");
    link
}

#[test]
fn someone_outside_the_organization_completes_their_task_from_an_emailed_single_use_link() {
    let smtp = flowgate_tests::receivers::SmtpSink::start(0).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let tenant = signing_tenant(dir.path(), &smtp);
    let d = start_with(dir, &[tenant], "");
    let link = signing_link(&d, &smtp, "contract-signing", "joan@client.example");

    // A link whose signature was changed, or moved to another task, opens nothing.
    let flipped = if link.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{flipped}", &link[..link.len() - 1]);
    let (status, _, body) = page("", &forged);
    assert_eq!(status, 404, "{body}");

    in_browser("outsider.py", &[&d.base, &link]);
    // The signature is in the instance, by the participant, and the director's task is open.
    let (_, listed) = d.call(
        "GET",
        "/api/v1/instances",
        Some("signing-admin-token"),
        None,
    );
    let id = listed[0]["id"].as_str().unwrap_or_default().to_string();
    let (_, view) = d.call(
        "GET",
        &format!("/api/v1/instances/{id}"),
        Some("signing-admin-token"),
        None,
    );
    assert_eq!(
        view["instance"]["data"]["signed_by"], "Joan Client",
        "{view}"
    );
    assert_eq!(view["instance"]["data"]["accept_terms"], true, "{view}");
    let tasks = view["instance"]["tasks"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let signed = tasks.values().find(|t| t["step"] == "client-signature");
    assert_eq!(
        signed.map(|t| (t["completed_by"].clone(), t["outcome"].clone())),
        Some((json!("joan@client.example"), json!("sign")))
    );
    assert!(
        tasks
            .values()
            .any(|t| t["step"] == "countersign" && t["status"] == "open"),
        "{view}"
    );

    // Opening a link claims its task: the same link does not open it a second time.
    let link = signing_link(&d, &smtp, "quick-signing", "sam@client.example");
    let (status, location, _) = post_form("", &link, "");
    assert_eq!(status, 303, "{location}");
    assert!(location.starts_with("/tasks/"), "{location}");
    let (status, _, body) = page("", &link);
    assert_eq!(status, 410, "{body}");
    assert!(body.contains("This link was used already"), "{body}");
    // And past its expiry, a link opens nothing.
    let link = signing_link(&d, &smtp, "quick-signing", "kim@client.example");
    let expires: u64 = link
        .rsplit('/')
        .nth(1)
        .and_then(|e| e.parse().ok())
        .unwrap_or_default();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    while now() <= expires {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (status, _, body) = page("", &link);
    assert_eq!(status, 410, "{body}");
    assert!(body.contains("This link has expired"), "{body}");
}

#[test]
fn the_instances_page_filters_as_the_api_does() {
    let d = start(1 << 20);
    let office = start_purchase(&d, 90_000, "office");
    let it = start_purchase(&d, 90_000, "it");
    let (ops, _) = sign_in(&d, ACME_ADMIN);
    let list = |query: &str| {
        let (status, _, html) = page(&ops, &format!("{}/instances?{query}", d.base));
        assert_eq!(status, 200, "{html}");
        (html.contains(&office), html.contains(&it))
    };
    assert_eq!(list(""), (true, true));
    assert_eq!(list("field=category&equals=it"), (false, true));
    assert_eq!(
        list("workflow=purchase-request&status=completed"),
        (false, false)
    );
    assert_eq!(list("from=2000-01-01&to=2000-01-02"), (false, false));
    assert_eq!(list("from=2000-01-01"), (true, true));
    let (status, _, html) = page(&ops, &format!("{}/instances?from=yesterday", d.base));
    assert_eq!(status, 422, "{html}");
    assert!(html.contains("is not a date like 2026-12-01"), "{html}");
}
