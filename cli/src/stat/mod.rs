//! `poolside stat`: tables, JSON and threshold alerts.

pub mod alert;
pub mod command;
pub mod format;
pub mod table;
