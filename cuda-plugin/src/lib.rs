//! libpoolside_cuda (work in progress: see issue 5).
