//! Integration tests of the admin page and API, through their real interfaces:
//! an in-process server, real HTTP requests (login, cookies, CSRF), the real
//! `/admin` Socket.IO namespace, real chat clients on the other side of every
//! action, and the real binary for the generated password.

#[path = "../common/mod.rs"]
mod common;

mod admin;

mod access;
mod actions;
mod views;
