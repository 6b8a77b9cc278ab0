//! libpoolside (work in progress: see issue 3).
#![no_std]
