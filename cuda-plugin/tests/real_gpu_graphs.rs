//! CUDA graph private pools on the real driver: a global-mode stream capture during which
//! the pool maps new memory (legal only with the thread's capture mode relaxed), then
//! replays that must not touch a block allocated after the capture. Needs a CUDA GPU, so
//! `#[ignore]`d with that reason; run with
//! `cargo test --release -p poolside-cuda --test real_gpu_graphs -- --ignored --nocapture`.

use cudarc::driver::sys;
use poolside_cuda::config::PluginConfig;
use poolside_cuda::driver::real::RealDriver;
use poolside_cuda::driver::Driver;
use poolside_cuda::pool::graph_pool::Filter;
use poolside_cuda::pool::DevicePool;
use std::sync::Arc;

const OK: sys::CUresult = sys::CUresult::CUDA_SUCCESS;

fn driver() -> Arc<RealDriver> {
    match RealDriver::load() {
        Ok(d) if d.device_count().unwrap_or(0) > 0 => Arc::new(d),
        Ok(_) => panic!("the CUDA driver loads but sees no device"),
        Err(e) => panic!("{e}"),
    }
}

/// A non-blocking stream of device 0's primary context, current on this thread.
fn stream() -> sys::CUstream {
    let (mut dev, mut ctx, mut s) = (0, std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: RealDriver::load initialised the driver; valid out-pointers.
    unsafe {
        assert_eq!(sys::cuDeviceGet(&mut dev, 0), OK);
        assert_eq!(sys::cuDevicePrimaryCtxRetain(&mut ctx, dev), OK);
        assert_eq!(sys::cuCtxSetCurrent(ctx), OK);
        assert_eq!(sys::cuStreamCreate(&mut s, 1), OK);
    }
    s
}

fn capturing(s: u64) -> bool {
    let mut st = sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
    // SAFETY: s is a live stream; valid out-pointer.
    let r = unsafe { sys::cuStreamIsCapturing(s as usize as sys::CUstream, &mut st) };
    r == OK && st == sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_ACTIVE
}

fn byte_at(p: u64) -> u8 {
    let mut b = 0u8;
    // SAFETY: one byte out of a live device block into a local.
    let r = unsafe { sys::cuMemcpyDtoH_v2(&mut b as *mut u8 as *mut std::ffi::c_void, p, 1) };
    assert_eq!(r, OK);
    b
}

#[test]
#[ignore = "needs a CUDA GPU: run with `cargo test --release -p poolside-cuda --test real_gpu_graphs -- --ignored`"]
fn global_capture_maps_private_memory_and_replays_leave_ordinary_blocks_alone() {
    let d = driver();
    for conf in ["", "expandable_segments:false"] {
        let mut cfg = PluginConfig::default();
        cfg.apply("TEST", conf, true);
        let pool = DevicePool::new(d.clone(), 0, &cfg).unwrap();
        let s = stream();
        let sid = s as usize as u64;
        // PyTorch's filter: the stream is capturing (into this graph).
        pool.begin_allocate_to_pool((1, 0), Filter::new(move |x| x == sid && capturing(x)))
            .map_err(|e| e.0)
            .unwrap();
        // SAFETY: s is live; global mode, PyTorch's default.
        let mode = sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_GLOBAL;
        assert_eq!(unsafe { sys::cuStreamBeginCapture_v2(s, mode) }, OK);
        const LEN: usize = 64 << 20;
        // New device memory mid-capture: mapped (or cuMemAlloc'ed) with the capture
        // mode relaxed; a failure here invalidates the capture.
        let tmp = pool.malloc(LEN, sid).unwrap();
        let out = pool.malloc(LEN, sid).unwrap();
        let small = pool.malloc(4096, sid).unwrap();
        assert_eq!(pool.private_pool_of(out), Some((1, 0)));
        // SAFETY: live blocks of the pool, captured on s.
        unsafe {
            assert_eq!(sys::cuMemsetD8Async(tmp, 0x11, LEN, s), OK);
            assert_eq!(sys::cuMemsetD8Async(out, 0xa5, LEN, s), OK);
            assert_eq!(sys::cuMemsetD8Async(small, 0xa5, 4096, s), OK);
        }
        pool.free(tmp).unwrap(); // an intermediate freed during capture
        let mut graph = std::ptr::null_mut();
        // SAFETY: s is capturing; valid out-pointer.
        assert_eq!(
            unsafe { sys::cuStreamEndCapture(s, &mut graph) },
            OK,
            "{conf}: capture invalidated"
        );
        pool.end_allocate_to_pool((1, 0)).unwrap();
        let mut exec = std::ptr::null_mut();
        // SAFETY: graph came from the capture; valid out-pointer.
        assert_eq!(
            unsafe { sys::cuGraphInstantiateWithFlags(&mut exec, graph, 0) },
            OK
        );
        pool.free(small).unwrap(); // freed after capture: still the graph's
                                   // An ordinary block of the same size on the same stream, filled.
        let ordinary = pool.malloc(LEN, sid).unwrap();
        assert_eq!(pool.private_pool_of(ordinary), None);
        // SAFETY: a live block; s is live and no longer capturing.
        unsafe {
            assert_eq!(sys::cuMemsetD8Async(ordinary, 0x5a, LEN, s), OK);
            for _ in 0..10 {
                assert_eq!(sys::cuGraphLaunch(exec, s), OK);
            }
            assert_eq!(sys::cuStreamSynchronize(s), OK);
        }
        for p in [ordinary, ordinary + LEN as u64 - 1] {
            assert_eq!(byte_at(p), 0x5a, "{conf}: a replay wrote an ordinary block");
        }
        assert_eq!(byte_at(out), 0xa5);
        assert!(pool.stats().private_pool_bytes.current >= 2 * LEN as u64);
        // SAFETY: ours, not used afterwards.
        unsafe {
            sys::cuGraphExecDestroy(exec);
            sys::cuGraphDestroy(graph);
        }
        pool.release_pool((1, 0)).unwrap();
        pool.free(out).unwrap();
        pool.free(ordinary).unwrap();
        assert_eq!(pool.stats().private_pool_bytes.current, 0, "{conf}");
        pool.check().unwrap();
        // SAFETY: the stream is ours.
        unsafe { sys::cuStreamDestroy_v2(s) };
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with `cargo test --release -p poolside-cuda --test real_gpu_graphs -- --ignored`"]
fn what_a_global_capture_forbids_without_relaxing() {
    // Not an assertion about poolside: prints whether this driver refuses a plain
    // cuMemAlloc on the capturing thread, i.e. whether the relaxed exchange is what made
    // the test above pass.
    let _d = driver();
    let s = stream();
    let mode = sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_GLOBAL;
    // SAFETY: s is live; valid out-pointers; the capture is ended below.
    unsafe {
        assert_eq!(sys::cuStreamBeginCapture_v2(s, mode), OK);
        let mut p = 0;
        let r = sys::cuMemAlloc_v2(&mut p, 2 << 20);
        let mut graph = std::ptr::null_mut();
        let end = sys::cuStreamEndCapture(s, &mut graph);
        println!("cuMemAlloc during a global capture: {r:?}; cuStreamEndCapture: {end:?}");
        if r == OK {
            sys::cuMemFree_v2(p);
        }
        if !graph.is_null() {
            sys::cuGraphDestroy(graph);
        }
        sys::cuStreamDestroy_v2(s);
    }
}
