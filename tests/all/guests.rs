//! Each plugin and test guest, run as wasm through the host.

pub mod clock_reader;
pub mod decision_table;
pub mod expense_reimbursement;
pub mod http_connector;
pub mod misbehave;
pub mod purchase_approval;
pub mod purchase_approval_next;
pub mod ticket_routing;
