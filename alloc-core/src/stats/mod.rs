//! Statistics: the shared-memory layout, the seqlock that keeps readers consistent, and the
//! file that publishes one process's pool to other processes.

pub mod layout;
pub mod seqlock;
pub mod shm;
