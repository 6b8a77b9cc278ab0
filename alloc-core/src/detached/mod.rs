//! Pools whose metadata is detached from the memory they manage (device memory the CPU
//! cannot touch). Being written for the CUDA plugin.
