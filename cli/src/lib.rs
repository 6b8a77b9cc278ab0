//! The `poolside` command as a library, so that tests can drive its parts: reading stats
//! files, building reports, and rendering them as tables, JSON, Prometheus text and the
//! `top` view.

pub mod args;
pub mod export;
pub mod reader;
pub mod replay;
pub mod report;
pub mod run;
pub mod stat;
pub mod top;
