//! The process-wide allocator: the driver chosen from the environment, the settings, and
//! one pool per device, all made on first use.

use crate::config::PluginConfig;
use crate::driver::{select, Driver};
use crate::pool::DevicePool;
use poolside::stats::{layout::WRITER_CUDA, shm};
use std::sync::{Arc, OnceLock};

/// The driver, settings and pools of this process.
pub struct Global {
    pub driver: Arc<dyn Driver>,
    pub cfg: PluginConfig,
    pools: Vec<OnceLock<Result<DevicePool, String>>>,
}

static GLOBAL: OnceLock<Result<Global, String>> = OnceLock::new();

fn init() -> Result<Global, String> {
    let cfg = PluginConfig::from_env();
    let driver = select::from_env(cfg.sim_capacity)?;
    let n = driver.device_count().map_err(|e| e.to_string())?;
    shm::open(&crate::config::host_config(), WRITER_CUDA);
    Ok(Global {
        driver,
        cfg,
        pools: (0..n.max(0)).map(|_| OnceLock::new()).collect(),
    })
}

/// The allocator, or why it cannot work (no driver).
pub fn global() -> Result<&'static Global, &'static str> {
    match GLOBAL.get_or_init(init) {
        Ok(g) => Ok(g),
        Err(e) => Err(e.as_str()),
    }
}

impl Global {
    /// Devices visible.
    pub fn device_count(&self) -> usize {
        self.pools.len()
    }

    /// The pool of `dev`, made on first use.
    pub fn pool(&self, dev: i32) -> Result<&DevicePool, String> {
        let slot = usize::try_from(dev)
            .ok()
            .and_then(|i| self.pools.get(i))
            .ok_or_else(|| {
                format!(
                    "invalid device {dev}: {} CUDA device(s) visible",
                    self.pools.len()
                )
            })?;
        slot.get_or_init(|| DevicePool::new(self.driver.clone(), dev, &self.cfg))
            .as_ref()
            .map_err(|e| e.clone())
    }

    /// Pools made so far.
    pub fn pools(&self) -> impl Iterator<Item = &DevicePool> {
        self.pools
            .iter()
            .filter_map(|p| p.get().and_then(|r| r.as_ref().ok()))
    }
}
