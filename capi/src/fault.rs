//! Test builds only (feature `fault-injection`): make the OS refuse memory on demand, to
//! check that every entry point fails cleanly and that the process recovers.

/// After `n` more successful mappings every mapping fails; a negative `n` ends the
/// failures. Exported as `poolside_test_inject_map_failures`; absent from normal builds.
#[cfg(feature = "fault-injection")]
#[no_mangle]
pub extern "C" fn poolside_test_inject_map_failures(n: libc::c_long) {
    poolside::source::os::inject_map_failures_after(n as isize);
}
