//! Choosing the driver at run time: `POOLSIDE_CUDA_DRIVER=sim` selects the simulated
//! driver; otherwise the real one, which needs libcuda.so.1.

use super::real::RealDriver;
use super::sim::SimDriver;
use super::Driver;
use std::sync::Arc;

/// The driver for this process, or a message saying why none is available.
pub fn from_env(sim_capacity_bytes: u64) -> Result<Arc<dyn Driver>, String> {
    match std::env::var("POOLSIDE_CUDA_DRIVER").as_deref() {
        Ok("sim") => Ok(Arc::new(SimDriver::new(2, sim_capacity_bytes))),
        Ok("cuda") | Ok("") | Err(_) => RealDriver::load().map(|d| Arc::new(d) as Arc<dyn Driver>),
        Ok(other) => Err(format!(
            "POOLSIDE_CUDA_DRIVER={other} is not a driver (use 'cuda' or 'sim')"
        )),
    }
}
