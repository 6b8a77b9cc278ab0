//! The pool on the real driver. Skips, saying why, when libcuda.so.1 cannot be loaded or
//! no device exists (every CI machine without a GPU).

use poolside_cuda::config::PluginConfig;
use poolside_cuda::driver::real::RealDriver;
use poolside_cuda::driver::Driver;
use poolside_cuda::pool::{AllocError, DevicePool};
use std::sync::Arc;

fn driver() -> Option<Arc<RealDriver>> {
    match RealDriver::load() {
        Ok(d) if d.device_count().unwrap_or(0) > 0 => Some(Arc::new(d)),
        Ok(_) => {
            println!("skipped: the CUDA driver loads but sees no device");
            None
        }
        Err(e) => {
            println!("skipped: {e}");
            None
        }
    }
}

#[test]
fn real_device_pool_allocates_frees_and_empties() {
    let Some(d) = driver() else { return };
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
fn real_device_oom_is_reported_and_survived() {
    let Some(d) = driver() else { return };
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
