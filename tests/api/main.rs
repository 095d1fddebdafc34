//! Black-box tests of the API over a real socket.
mod bad_input;
mod crash;
mod errors;
mod groups;
mod helpers;
mod isolation;
mod rules;
mod semantics;
mod tasks;
mod verdicts;
