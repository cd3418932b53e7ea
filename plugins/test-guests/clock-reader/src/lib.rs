//! A guest that reads the wall clock, so it imports `wasi:clocks/wall-clock`: refused unless its
//! tenant was granted clocks.

use std::time::{SystemTime, UNIX_EPOCH};

use flowgate_plugin_sdk::{ActionOutput, ActionRequest, PluginError, StepAction};

struct ClockReader;

flowgate_plugin_sdk::export!(ClockReader: step_action);

impl StepAction for ClockReader {
    fn run(_request: ActionRequest) -> Result<ActionOutput, PluginError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| PluginError::Permanent(e.to_string()))?;
        ActionOutput::merge(
            &serde_json::json!({"now_secs": now.as_secs()}),
            "read the clock",
        )
    }
}
