//! Support ticket routing: categorize a ticket from its subject, body and customer tier, and route
//! it to a queue step.
//!
//! Safety complaints (injury, fire, smoke, ...) go to `safety_queue` (default `escalation`) at once,
//! whatever else they mention. Customers whose tier is in `priority_tiers` (default
//! `platinum,enterprise`) go to `priority_queue` (default `priority`) when the definition offers it.
//! Otherwise the category decides: `billing`, `technical` or `general` (each a step id, overridable
//! as `queue.<category>`). Keywords per category are configurable as `keywords.<category>`.
//!
//! Expected instance data: `{"subject": "...", "body": "...", "customer": {"tier": "gold"}}`.

use flowgate_plugin_sdk::{PluginError, RouteDecision, RouteRequest, Router, config};
use serde::Deserialize;

/// The exported plugin.
pub struct TicketRouting;

flowgate_plugin_sdk::export!(TicketRouting: router);

#[derive(Deserialize)]
struct Ticket {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    customer: Customer,
}

#[derive(Deserialize, Default)]
struct Customer {
    #[serde(default)]
    tier: String,
}

const SAFETY: &[&str] = &[
    "injury", "injured", "fire", "smoke", "burn", "shock", "unsafe", "hazard", "explode",
    "overheat",
];
const BILLING: &[&str] = &[
    "invoice",
    "refund",
    "charge",
    "charged",
    "billing",
    "payment",
    "receipt",
    "subscription",
];
const TECHNICAL: &[&str] = &[
    "error", "crash", "bug", "login", "password", "outage", "down", "slow", "broken", "timeout",
];

/// The words of `text`, lowercased.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The configured or default keywords of a category that occur in `words`.
fn matches(category: &str, defaults: &[&str], words: &[String]) -> Vec<String> {
    let keywords = config::list_or(&format!("keywords.{category}"), defaults);
    keywords
        .into_iter()
        .filter(|k| words.iter().any(|w| w == k))
        .collect()
}

fn queue(category: &str) -> String {
    config::get(&format!("queue.{category}")).unwrap_or_else(|| category.to_string())
}

impl Router for TicketRouting {
    fn route(request: RouteRequest) -> Result<RouteDecision, PluginError> {
        let ticket: Ticket = request.context.data_as()?;
        if ticket.subject.trim().is_empty() && ticket.body.trim().is_empty() {
            return Err(PluginError::InvalidInput(
                "subject, body: a ticket needs a subject or a body".to_string(),
            ));
        }
        let words = words(&format!("{} {}", ticket.subject, ticket.body));
        let offered = |step: &str| request.candidates.iter().any(|c| c == step);

        let safety = matches("safety", SAFETY, &words);
        if !safety.is_empty() {
            let step = config::get("safety_queue").unwrap_or_else(|| "escalation".to_string());
            return Ok(RouteDecision::to(
                step,
                format!(
                    "safety complaint ({}): escalated at once",
                    safety.join(", ")
                ),
            ));
        }

        let tier = ticket.customer.tier.trim().to_lowercase();
        let priority_tiers = config::list_or("priority_tiers", &["platinum", "enterprise"]);
        let priority_step = config::get("priority_queue").unwrap_or_else(|| "priority".to_string());
        if priority_tiers.contains(&tier) && offered(&priority_step) {
            return Ok(RouteDecision::to(
                priority_step,
                format!("`{tier}` customer: priority queue"),
            ));
        }

        let billing = matches("billing", BILLING, &words);
        let technical = matches("technical", TECHNICAL, &words);
        let (category, found) = if billing.len() >= technical.len() && !billing.is_empty() {
            ("billing", billing)
        } else if !technical.is_empty() {
            ("technical", technical)
        } else {
            ("general", Vec::new())
        };
        let reason = if found.is_empty() {
            "no category keywords: general queue".to_string()
        } else {
            format!("{category} keywords ({})", found.join(", "))
        };
        Ok(RouteDecision::to(queue(category), reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowgate_plugin_sdk::testing::{context, with_config};
    use serde_json::json;

    const QUEUES: &[&str] = &["billing", "technical", "general", "priority", "escalation"];

    fn route(data: serde_json::Value) -> Result<RouteDecision, PluginError> {
        TicketRouting::route(RouteRequest {
            context: context(data),
            candidates: QUEUES.iter().map(|s| s.to_string()).collect(),
        })
    }

    fn step(data: serde_json::Value) -> String {
        match route(data) {
            Ok(d) => d.next.join(","),
            Err(e) => format!("error: {e:?}"),
        }
    }

    #[test]
    fn categories_come_from_keywords() {
        let cases = [
            (
                json!({"subject": "Refund please", "body": "I was charged twice"}),
                "billing",
            ),
            (
                json!({"subject": "Login error", "body": "the app shows an error"}),
                "technical",
            ),
            (
                json!({"subject": "Hello", "body": "a question about opening hours"}),
                "general",
            ),
        ];
        for (data, expected) in cases {
            assert_eq!(step(data.clone()), expected, "{data}");
        }
    }

    #[test]
    fn safety_beats_tier_and_category() {
        let data = json!({
            "subject": "Invoice question",
            "body": "also the charger started to smoke",
            "customer": {"tier": "platinum"}
        });
        let decision = route(data).map_err(|e| format!("{e:?}"));
        let Ok(decision) = decision else {
            panic!("{decision:?}");
        };
        assert_eq!(decision.next, ["escalation"]);
        assert!(decision.reason.contains("smoke"), "{}", decision.reason);
    }

    #[test]
    fn top_tier_customers_get_the_priority_queue() {
        let data = json!({"subject": "Login error", "customer": {"tier": "Enterprise"}});
        assert_eq!(step(data), "priority");
    }

    #[test]
    fn configuration_renames_queues_and_keywords() {
        with_config(
            &[
                ("queue.billing", "finance-desk"),
                ("keywords.billing", "money"),
            ],
            || {
                assert_eq!(step(json!({"subject": "money back"})), "finance-desk");
                assert_eq!(step(json!({"subject": "refund"})), "general");
            },
        );
    }

    #[test]
    fn empty_tickets_are_invalid_input() {
        assert!(matches!(
            route(json!({"subject": " "})),
            Err(PluginError::InvalidInput(_))
        ));
        assert!(matches!(
            route(json!({"subject": 5})),
            Err(PluginError::InvalidInput(m)) if m.contains("instance data")
        ));
    }
}
