//! Direct tests of the pure core, in the style of restate's state-machine tests: a state, a
//! command and a time go in; the events and effects that come out are asserted. No store, no
//! plugin runtime, no clock: the plugin answers are data the test supplies.

mod business;
mod env;
mod fanout;
mod flow;
mod lifecycle;
mod messages;
mod plugins;
mod processes;
mod schedules;
mod tasks;
