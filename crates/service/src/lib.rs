//! Palisade's application layer: the operations the API's endpoints run, and the task queue with
//! the worker that executes it.
//!
//! - [`ops`] and [`ports`]: the mutations of groups, rules, quotas and ports, each inside a
//!   caller's transaction; the synchronous endpoints and the tasks share them. [`ops::Settings`]
//!   is what they need from the configuration.
//! - [`queue`]: a v2 write's task row, and waiting for tasks to end; [`worker`]: the loop that
//!   runs them and announces each committed batch ([`FinishedTasks`]); [`payload`]: what a task
//!   row carries.
//! - [`policy`]: each host's enforced policy, the revision feed agents long-poll on, and waiting
//!   for agents to apply a change; [`verdicts`]: what verdicts and analysis are computed from.
//! - [`observe`]: what agents report of the traffic (rule hits, flow logs), flow-log settings
//!   and the impact of a proposed rule set on the flows seen.
//! - [`audit`]: the event every change records in its own transaction; [`retention`]: pruning.
//! - [`deadline`] and [`blocking`]: bounding large work, and running the synchronous store from
//!   async code.
//!
//! Depends on `core` and `store`; knows nothing of HTTP (requests, status codes and rendering
//! stay in the `api` crate, which maps [`ops::OpError`] to its answers).

pub mod audit;
pub mod blocking;
pub mod deadline;
pub mod observe;
pub mod ops;
pub mod payload;
pub mod policy;
pub mod ports;
pub mod queue;
pub mod retention;
pub mod verdicts;
pub mod worker;

pub use palisade_store::now_ms;
pub use worker::{FinishedTasks, Worker};
