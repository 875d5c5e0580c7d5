//! The one integration-test binary: real servers on 127.0.0.1:0 over real TLS.

#![allow(clippy::unwrap_used)]

mod abuse;
mod api;
mod auth;
mod budget;
mod cors;
mod faults;
mod first_boot;
mod http;
mod limits;
mod metrics;
mod model_cli;
mod models;
mod openapi;
mod predict;
mod reload;
mod repository;
mod shutdown;
mod signing;
mod support;
mod tls;
