//! The pool on the real driver. These need a CUDA GPU, so they are `#[ignore]`d with that
//! reason: `cargo test` lists them as ignored (not passed) on every machine without one.
//! On a GPU machine run them with `-- --ignored`; there a missing driver or device is a
//! failure, not a skip.

use cudarc::driver::sys;
use poolside_cuda::config::PluginConfig;
use poolside_cuda::driver::real::RealDriver;
use poolside_cuda::driver::Driver;
use poolside_cuda::pool::{AllocError, DevicePool};
use std::sync::Arc;

fn driver() -> Arc<RealDriver> {
    match RealDriver::load() {
        Ok(d) if d.device_count().unwrap_or(0) > 0 => Arc::new(d),
        Ok(_) => panic!("the CUDA driver loads but sees no device"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with `cargo test --release -p poolside-cuda --test real_gpu -- --ignored`"]
fn real_device_pool_allocates_frees_and_empties() {
    let d = driver();
    for conf in ["", "expandable_segments:false"] {
        let mut cfg = PluginConfig::default();
        cfg.apply("TEST", conf, true);
        let pool = DevicePool::new(d.clone(), 0, &cfg).unwrap();
        let mut live = Vec::new();
        for (i, size) in [1000usize, 3 << 20, 700_000, 64 << 20, 100]
            .iter()
            .cycle()
            .take(50)
            .enumerate()
        {
            let p = pool.malloc(*size, 0).unwrap();
            assert_eq!(p % 512, 0);
            live.push(p);
            if i % 3 == 0 {
                pool.free(live.swap_remove(0)).unwrap();
            }
        }
        pool.check().unwrap();
        for p in live {
            pool.free(p).unwrap();
        }
        pool.empty_cache();
        assert_eq!(pool.stats().reserved_bytes.current, 0);
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with `cargo test --release -p poolside-cuda --test real_gpu -- --ignored`"]
fn real_device_oom_is_reported_and_survived() {
    let d = driver();
    let pool = DevicePool::new(d.clone(), 0, &PluginConfig::default()).unwrap();
    let (_, total) = d.mem_info(0).unwrap();
    match pool.malloc(2 * total as usize, 0) {
        Err(AllocError::OutOfMemory(m)) => {
            assert!(m.starts_with("CUDA out of memory. Tried to allocate"))
        }
        other => panic!("{other:?}"),
    }
    pool.check().unwrap();
    let p = pool.malloc(1 << 20, 0).unwrap();
    pool.free(p).unwrap();
}

#[test]
#[ignore = "needs a CUDA GPU: run with `cargo test --release -p poolside-cuda --test real_gpu -- --ignored`"]
fn loading_retains_no_context_and_a_pool_only_its_own() {
    // A driver of its own: the other tests' pools do not share its bookkeeping.
    let d = driver();
    let n = d.device_count().unwrap();
    assert!((0..n).all(|i| !d.opened(i)), "load retained a context");
    let last = n - 1;
    let pool = DevicePool::new(d.clone(), last, &PluginConfig::default()).unwrap();
    let p = pool.malloc(1 << 20, 0).unwrap();
    pool.free(p).unwrap();
    let opened: Vec<i32> = (0..n).filter(|&i| d.opened(i)).collect();
    assert_eq!(opened, vec![last], "{n} devices");
}

/// A stream of device 0's primary context, made current on this thread.
struct Stream(sys::CUstream);

impl Stream {
    fn new() -> Stream {
        let mut dev = 0;
        let mut ctx = std::ptr::null_mut();
        let mut s = std::ptr::null_mut();
        // SAFETY: the driver was loaded and initialised by RealDriver::load (every test
        // calls driver() first); all pointers are valid out-pointers.
        unsafe {
            assert_eq!(sys::cuDeviceGet(&mut dev, 0), sys::CUresult::CUDA_SUCCESS);
            assert_eq!(
                sys::cuDevicePrimaryCtxRetain(&mut ctx, dev),
                sys::CUresult::CUDA_SUCCESS
            );
            assert_eq!(sys::cuCtxSetCurrent(ctx), sys::CUresult::CUDA_SUCCESS);
            // 1 = CU_STREAM_NON_BLOCKING, as PyTorch's side streams.
            assert_eq!(sys::cuStreamCreate(&mut s, 1), sys::CUresult::CUDA_SUCCESS);
        }
        Stream(s)
    }

    fn id(&self) -> u64 {
        self.0 as usize as u64
    }

    /// Whether work is still running (cuStreamQuery answers NOT_READY).
    fn busy(&self) -> bool {
        // SAFETY: the stream is alive.
        unsafe { sys::cuStreamQuery(self.0) == sys::CUresult::CUDA_ERROR_NOT_READY }
    }

    /// Queues `times` fills of `[p, p + len)` with `byte`.
    fn fill(&self, p: u64, len: usize, byte: u8, times: usize) {
        for _ in 0..times {
            // SAFETY: [p, p + len) is a live block of the pool; the stream is alive.
            let r = unsafe { sys::cuMemsetD8Async(p, byte, len, self.0) };
            assert_eq!(r, sys::CUresult::CUDA_SUCCESS);
        }
    }

    fn sync(&self) {
        // SAFETY: the stream is alive.
        assert_eq!(
            unsafe { sys::cuStreamSynchronize(self.0) },
            sys::CUresult::CUDA_SUCCESS
        );
    }

    /// The first and last bytes of `[p, p + len)`.
    fn ends(p: u64, len: usize) -> [u8; 2] {
        let mut out = [0u8; 2];
        for (i, off) in [0, len - 1].into_iter().enumerate() {
            // SAFETY: a one-byte copy out of a live block into a local.
            let r = unsafe {
                sys::cuMemcpyDtoH_v2(
                    (&mut out[i]) as *mut u8 as *mut std::ffi::c_void,
                    p + off as u64,
                    1,
                )
            };
            assert_eq!(r, sys::CUresult::CUDA_SUCCESS);
        }
        out
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: the stream is ours and is not used afterwards.
        unsafe { sys::cuStreamDestroy_v2(self.0) };
    }
}

#[test]
#[ignore = "needs a CUDA GPU: run with `cargo test --release -p poolside-cuda --test real_gpu -- --ignored`"]
fn record_stream_holds_a_block_while_its_side_stream_runs() {
    let d = driver();
    let pool = DevicePool::new(d.clone(), 0, &PluginConfig::default()).unwrap();
    let (main, side) = (Stream::new(), Stream::new());
    let len = 256 << 20;
    // Warm up: the memset path and the pool, so no first-use synchronize hides a race.
    let w = pool.malloc(len, main.id()).unwrap();
    side.fill(w, len, 0, 1);
    side.sync();
    pool.free(w).unwrap();
    let mut held = 0;
    for round in 0..5 {
        let x = pool.malloc(len, main.id()).unwrap();
        side.fill(x, len, 1, 400); // ~100 GB of writes: tens of milliseconds
        pool.record_stream(x, side.id()).unwrap();
        pool.free(x).unwrap();
        let y = pool.malloc(len, main.id()).unwrap();
        let busy = side.busy();
        if busy {
            assert_ne!(x, y, "round {round}: reused while the side stream runs");
            held += 1;
        }
        main.fill(y, len, 2, 1);
        main.sync();
        side.sync();
        assert_eq!(Stream::ends(y, len), [2, 2], "round {round}");
        pool.free(y).unwrap();
        pool.check().unwrap();
    }
    assert!(
        held > 0,
        "the side stream was never still busy: the check proved nothing"
    );
    let s = pool.stats();
    assert_eq!(
        (
            s.event_record_failures,
            s.event_query_failures,
            s.sync_fallbacks
        ),
        (0, 0, 0)
    );
    // Once the side stream is done, the block comes back.
    let z = pool.malloc(len, main.id()).unwrap();
    assert_eq!(pool.pending(), 0);
    pool.free(z).unwrap();
    assert!(pool.pooled_events() >= 1, "events are kept for reuse");
}
