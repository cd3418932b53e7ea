//! purchase-approval's next version (a candidate in the replay tests): it decides as the current
//! version does except from 2,000 up to the director threshold, where it now asks a director.

use flowgate::plugin::types::{ApprovalRequest, Money};
use flowgate_tests::artifacts::{PURCHASE_APPROVAL, PURCHASE_APPROVAL_NEXT};

use crate::common::{context, loaded, with_config};

fn request(cents: i64, category: &str) -> ApprovalRequest {
    ApprovalRequest {
        context: context(serde_json::json!({})),
        amount: Some(Money {
            currency: "USD".to_string(),
            minor_units: cents,
        }),
        category: category.to_string(),
        requester: "alice".to_string(),
    }
}

#[test]
fn it_differs_from_the_current_version_in_one_band_only() {
    let settings = || with_config(&[("director_threshold", "5000")]);
    let current = loaded(PURCHASE_APPROVAL, "purchase-approval", settings());
    let next = loaded(PURCHASE_APPROVAL_NEXT, "purchase-approval", settings());
    let mut differing = Vec::new();
    for dollars in (0..70_000).step_by(250) {
        for category in ["office", "it"] {
            let req = request(dollars * 100, category);
            let decide = |p: &std::sync::Arc<flowgate::plugin::LoadedPlugin>| {
                p.evaluate_approval(&req)
                    .map(|c| format!("{:?}", c.value.requirement))
                    .map_err(|e| e.to_string())
            };
            if decide(&current) != decide(&next) {
                differing.push(dollars);
            }
        }
    }
    differing.dedup();
    let band: Vec<i64> = (2_000..5_000).step_by(250).collect();
    assert_eq!(differing, band);
}
