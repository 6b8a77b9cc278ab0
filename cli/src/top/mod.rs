//! `poolside top`: a refreshing, sortable view of every poolside process.

pub mod terminal;
pub mod view;
