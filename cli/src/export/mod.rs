//! `poolside export`: Prometheus text exposition over HTTP.

pub mod prometheus;
pub mod respond;
pub mod server;
