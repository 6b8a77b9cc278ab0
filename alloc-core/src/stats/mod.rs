//! Statistics: the shared-memory layout, the seqlock that keeps readers consistent, and the
//! file that publishes one process's pool to other processes.

pub mod file_path;
pub mod layout;
pub mod proc_self;
pub mod publish;
pub mod ranks;
pub mod seqlock;
pub mod shm;

#[cfg(test)]
mod publish_tests;
