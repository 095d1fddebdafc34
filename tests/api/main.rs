//! Black-box tests of the API over a real socket.
mod audit;
mod bad_input;
mod crash;
mod errors;
mod groups;
mod helpers;
mod isolation;
mod listeners;
mod roles;
mod rules;
mod semantics;
mod tasks;
mod verdicts;
