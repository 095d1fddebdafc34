//! Black-box tests of the API over a real socket.
mod helpers;
