//! Black-box tests of the API over a real socket.
mod audit;
mod bad_input;
mod bodies;
mod console;
mod crash;
mod errors;
mod fairness;
mod groups;
mod helpers;
mod isolation;
mod limits;
mod listeners;
mod observe;
mod process;
mod roles;
mod rules;
mod semantics;
#[path = "../common/server_config.rs"]
mod server_config;
mod tasks;
mod verdicts;
