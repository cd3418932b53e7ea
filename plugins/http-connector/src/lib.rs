//! HTTP connector action: sends part of the instance data to another system's HTTP endpoint and
//! merges its JSON answer into the instance data. One plugin serves every such step; the step's
//! parameters say where and what.
//!
//! Step parameters (in the workflow definition):
//! - `url` (required): the endpoint, e.g. `https://crm.example.com/api/accounts`; a path starting
//!   with `/` is joined to the tenant's `base_url`;
//! - `method`: `POST` (default), `PUT`, `PATCH`, `GET` or `DELETE`;
//! - `send`: the instance data fields sent as the JSON body (default: all of the data; none for
//!   `GET` and `DELETE`);
//! - `into`: the data field the answer is merged under (default: the answer's fields are merged
//!   at the top level, so the answer must be a JSON object).
//!
//! Tenant configuration (`[plugins.<name>.config]`):
//! - `base_url`: joined to parameter URLs that start with `/`;
//! - `headers`: a JSON object of headers sent with every request; a value may name a secret as
//!   `{{secret:NAME}}`, which the host fills in (the plugin never reads it);
//! - `max_redirects`: redirects followed (3); each is a new request the host checks again.
//!
//! The host adds the step activation's `Idempotency-Key` header, so the other system can tell a
//! retry from a new request. Answers: 2xx merges; 408, 429 and 5xx, timeouts and unreachable
//! systems are retryable (the step retries with backoff); any other status, a refused host, a
//! redirect past the limit or an answer that is not JSON is permanent (an incident).

use flowgate_plugin_sdk::http::{self, HttpError, Request};
use flowgate_plugin_sdk::serde_json::{self, Map, Value};
use flowgate_plugin_sdk::{ActionOutput, ActionRequest, PluginError, StepAction, config};
use serde::Deserialize;

/// The exported plugin.
pub struct HttpConnector;

flowgate_plugin_sdk::export!(HttpConnector: step_action);

/// The step's parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    url: String,
    #[serde(default = "post")]
    method: String,
    #[serde(default)]
    send: Option<Vec<String>>,
    #[serde(default)]
    into: Option<String>,
}

fn post() -> String {
    "POST".to_string()
}

impl StepAction for HttpConnector {
    fn run(request: ActionRequest) -> Result<ActionOutput, PluginError> {
        let params: Params = serde_json::from_str(&request.params).map_err(|e| {
            PluginError::InvalidInput(format!(
                "step `{}` parameters: {e} (expected url, and optionally method, send, into)",
                request.context.step_id
            ))
        })?;
        let data: Map<String, Value> = serde_json::from_str(&request.context.data)
            .map_err(|e| PluginError::InvalidInput(format!("instance data: {e}")))?;
        let outgoing = build(&params, &data)?;
        let answer = http::send(&outgoing)?;
        let merged = read_answer(&params, &outgoing, answer)?;
        Ok(ActionOutput {
            data: Value::Object(merged).to_string(),
            note: format!("{} {}", outgoing.method, outgoing.url),
        })
    }
}

/// The request the step sends.
fn build(params: &Params, data: &Map<String, Value>) -> Result<Request, PluginError> {
    let method = params.method.to_ascii_uppercase();
    if !["POST", "PUT", "PATCH", "GET", "DELETE"].contains(&method.as_str()) {
        return Err(PluginError::InvalidInput(format!(
            "method `{}`: use POST, PUT, PATCH, GET or DELETE",
            params.method
        )));
    }
    let url = if params.url.starts_with('/') {
        let base = config::get("base_url").ok_or_else(|| {
            PluginError::Permanent(format!(
                "url `{}` is a path, and the tenant set no `base_url` for this plugin",
                params.url
            ))
        })?;
        format!("{}{}", base.trim_end_matches('/'), params.url)
    } else {
        params.url.clone()
    };
    let mut request = Request::new(&method, &url)
        .header("accept", "application/json")
        .follow_redirects(config::parse_or("max_redirects", 3)?);
    if let Some(headers) = config::get("headers") {
        let headers: Map<String, Value> = serde_json::from_str(&headers).map_err(|e| {
            PluginError::Permanent(format!("configuration `headers` is not a JSON object: {e}"))
        })?;
        for (name, value) in headers {
            let Value::String(value) = value else {
                return Err(PluginError::Permanent(format!(
                    "configuration `headers`: `{name}` is not a string"
                )));
            };
            request = request.header(&name, &value);
        }
    }
    if method != "GET" && method != "DELETE" {
        let body = match &params.send {
            None => data.clone(),
            Some(fields) => {
                let mut body = Map::new();
                for field in fields {
                    let value = data.get(field).ok_or_else(|| {
                        PluginError::InvalidInput(format!(
                            "the step sends `{field}`, which the instance data does not have"
                        ))
                    })?;
                    body.insert(field.clone(), value.clone());
                }
                body
            }
        };
        request = request.json(&body);
    }
    Ok(request)
}

/// The data the answer merges into the instance.
fn read_answer(
    params: &Params,
    sent: &Request,
    answer: http::Response,
) -> Result<Map<String, Value>, PluginError> {
    let excerpt = || {
        let text = String::from_utf8_lossy(&answer.body);
        let text: String = text.chars().take(200).collect();
        format!(
            "{} {} answered {}: {text}",
            sent.method, sent.url, answer.status
        )
    };
    match answer.status {
        200..=299 => {}
        300..=399 => {
            return Err(PluginError::Permanent(format!(
                "{} (a redirect past the {} followed)",
                excerpt(),
                sent.max_redirects
            )));
        }
        408 | 429 | 500..=599 => return Err(PluginError::Retryable(excerpt())),
        _ => return Err(PluginError::Permanent(excerpt())),
    }
    let value: Value = if answer.body.is_empty() {
        Value::Object(Map::new())
    } else {
        answer.json().map_err(|e: HttpError| {
            PluginError::Permanent(format!("{} {}: {e}", sent.method, sent.url))
        })?
    };
    match (&params.into, value) {
        (Some(field), value) => Ok(Map::from_iter([(field.clone(), value)])),
        (None, Value::Object(fields)) => Ok(fields),
        (None, other) => Err(PluginError::Permanent(format!(
            "{} {} answered {}, not a JSON object; set the step's `into` to keep it under a field",
            sent.method,
            sent.url,
            kind(&other)
        ))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use flowgate_plugin_sdk::http::Response;
    use flowgate_plugin_sdk::testing::{self, with_config, with_http};
    use serde_json::json;

    use super::*;

    fn run(params: Value, data: Value) -> Result<Value, PluginError> {
        let mut request = testing::action_request("sync", params);
        request.context = testing::context(data);
        HttpConnector::run(request).map(|out| serde_json::from_str(&out.data).unwrap_or_default())
    }

    #[test]
    fn sends_the_chosen_fields_and_merges_the_answer_under_into() {
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let log = seen.clone();
        let merged = with_config(
            &[
                ("base_url", "https://crm.example.com/"),
                ("headers", r#"{"authorization": "Bearer {{secret:crm}}"}"#),
            ],
            || {
                with_http(
                    move |request| {
                        log.borrow_mut().push(request.clone());
                        Response::new(201, r#"{"id": "acct-7"}"#)
                    },
                    || {
                        run(
                            json!({"url": "/accounts", "send": ["name"], "into": "crm"}),
                            json!({"name": "Ada", "salary": 1}),
                        )
                    },
                )
            },
        );
        assert_eq!(merged, Ok(json!({"crm": {"id": "acct-7"}})));
        let sent = seen.borrow();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].url, "https://crm.example.com/accounts");
        assert_eq!(sent[0].method, "POST");
        assert_eq!(
            serde_json::from_slice::<Value>(&sent[0].body).ok(),
            Some(json!({"name": "Ada"}))
        );
        assert!(
            sent[0]
                .headers
                .contains(&("authorization".into(), "Bearer {{secret:crm}}".into()))
        );
    }

    #[test]
    fn busy_systems_retry_and_refusals_do_not() {
        for (status, retry) in [(503, true), (429, true), (400, false), (404, false)] {
            let result = with_http(
                move |_| Response::new(status, "nope"),
                || run(json!({"url": "https://x.example/"}), json!({})),
            );
            match result {
                Err(PluginError::Retryable(why)) if retry => assert!(why.contains("nope")),
                Err(PluginError::Permanent(why)) if !retry => {
                    assert!(why.contains(&status.to_string()))
                }
                other => panic!("status {status}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_parameters_and_answers_say_what_is_wrong() {
        let missing = with_http(
            |_| Response::new(200, "{}"),
            || {
                run(
                    json!({"url": "https://x.example/", "send": ["vendor"]}),
                    json!({}),
                )
            },
        );
        assert!(matches!(missing, Err(PluginError::InvalidInput(why)) if why.contains("vendor")));
        let no_base = run(json!({"url": "/accounts"}), json!({}));
        assert!(matches!(no_base, Err(PluginError::Permanent(why)) if why.contains("base_url")));
        let not_object = with_http(
            |_| Response::new(200, "[1]"),
            || run(json!({"url": "https://x.example/"}), json!({})),
        );
        assert!(matches!(not_object, Err(PluginError::Permanent(why)) if why.contains("an array")));
        let unknown = run(
            json!({"url": "https://x.example/", "verb": "GET"}),
            json!({}),
        );
        assert!(matches!(unknown, Err(PluginError::InvalidInput(why)) if why.contains("verb")));
    }
}
