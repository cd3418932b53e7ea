//! Flowgate's integration tests: one binary, a module per theme (wasmtime's layout).

mod calendar;
mod commit_failure;
mod common;
mod crash;
mod daemon;
mod decisions;
mod engine;
mod fuzz;
mod guests;
mod plugin_runtime;
mod retention;
mod scenarios;
mod schedules;
mod store_model;
mod webhooks;

/// Every guest component built from `plugins/` must have a test module in `guests/`: a new guest
/// without one fails to compile here.
macro_rules! guest_has_tests {
    ($name:ident) => {
        #[allow(unused_imports)]
        use guests::$name as _;
    };
}
flowgate_tests::for_each_guest!(guest_has_tests);
