//! A simulated device on host memory, selected with `POOLSIDE_CUDA_DRIVER=sim`.
//!
//! - A reservation is an `mmap(PROT_NONE)` of address space; mapping a page replaces it
//!   with fresh read-write pages (`MAP_FIXED`), unmapping puts `PROT_NONE` back, so the
//!   kernel drops the memory. cuMemAlloc is a read-write mapping of its own.
//! - Each device has a capacity (`device_capacity_mb`); mapped and allocated bytes count
//!   against it, and going over it fails with CUDA_ERROR_OUT_OF_MEMORY.
//! - Events complete only on demand: [`SimDriver::complete_events`], a synchronize, or an
//!   event synchronize. So tests decide when the device has "finished".
//! - [`SimDriver::inject`] makes any call fail with a chosen code after a number of
//!   successes, to test every failure path.
//!
//! It also checks its callers: mapping a mapped page, unmapping an unmapped one, releasing
//! a reservation with pages still mapped, and freeing an unknown pointer all fail with
//! CUDA_ERROR_INVALID_VALUE, and are counted in [`SimDriver::misuse`].

use super::{DResult, DevPtr, Driver, DriverError, EventId, StreamId, CUDA_ERROR_OUT_OF_MEMORY};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};

/// Page size of the simulated device (the allocation granularity of current GPUs).
pub const SIM_GRANULARITY: usize = 2 << 20;
/// CUDA_ERROR_INVALID_VALUE.
pub const CUDA_ERROR_INVALID_VALUE: i32 = 1;
/// CUDA_ERROR_INVALID_DEVICE.
pub const CUDA_ERROR_INVALID_DEVICE: i32 = 101;
/// CUDA_ERROR_LAUNCH_FAILED, a stand-in for "the device broke".
pub const CUDA_ERROR_LAUNCH_FAILED: i32 = 719;

/// The calls a failure can be injected into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimCall {
    MemInfo,
    Reserve,
    Release,
    Map,
    Unmap,
    Malloc,
    Free,
    RecordEvent,
    QueryEvent,
    SyncEvent,
    Synchronize,
}

#[derive(Clone, Copy)]
struct Fault {
    skip: u64,
    times: u64,
    code: i32,
}

#[derive(Default)]
struct SimDevice {
    capacity: u64,
    used: u64,
    reservations: BTreeMap<DevPtr, usize>,
    mapped: HashMap<DevPtr, usize>,
    mallocs: HashMap<DevPtr, usize>,
}

struct SimEvent {
    dev: i32,
    stream: StreamId,
    done: bool,
}

#[derive(Default)]
struct State {
    devices: Vec<SimDevice>,
    events: HashMap<EventId, SimEvent>,
    next_event: EventId,
    faults: HashMap<SimCall, Fault>,
    calls: HashMap<SimCall, u64>,
    misuse: u64,
}

/// The simulated driver.
pub struct SimDriver {
    state: Mutex<State>,
}

fn code_name(code: i32) -> &'static str {
    match code {
        CUDA_ERROR_INVALID_VALUE => "CUDA_ERROR_INVALID_VALUE",
        CUDA_ERROR_OUT_OF_MEMORY => "CUDA_ERROR_OUT_OF_MEMORY",
        CUDA_ERROR_INVALID_DEVICE => "CUDA_ERROR_INVALID_DEVICE",
        CUDA_ERROR_LAUNCH_FAILED => "CUDA_ERROR_LAUNCH_FAILED",
        _ => "CUDA_ERROR_UNKNOWN",
    }
}

fn err(call: &'static str, code: i32) -> DriverError {
    DriverError {
        call,
        code,
        name: code_name(code).to_string(),
    }
}

impl SimDriver {
    /// `devices` devices of `capacity` bytes each.
    pub fn new(devices: usize, capacity: u64) -> SimDriver {
        let mut st = State {
            next_event: 1,
            ..State::default()
        };
        for _ in 0..devices {
            st.devices.push(SimDevice {
                capacity,
                ..SimDevice::default()
            });
        }
        SimDriver {
            state: Mutex::new(st),
        }
    }

    /// After `skip` more successful calls of `call`, the next `times` calls fail with
    /// `code`.
    pub fn inject(&self, call: SimCall, skip: u64, times: u64, code: i32) {
        self.state
            .lock()
            .faults
            .insert(call, Fault { skip, times, code });
    }

    /// Removes every injected failure.
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// Completes every event recorded so far (the device caught up).
    pub fn complete_events(&self) {
        for e in self.state.lock().events.values_mut() {
            e.done = true;
        }
    }

    /// Completes the events recorded on one stream.
    pub fn complete_stream(&self, stream: StreamId) {
        for e in self.state.lock().events.values_mut() {
            if e.stream == stream {
                e.done = true;
            }
        }
    }

    /// Events recorded and not yet destroyed.
    pub fn live_events(&self) -> usize {
        self.state.lock().events.len()
    }

    /// Bytes of device memory in use (mapped pages and cuMemAlloc blocks).
    pub fn used(&self, dev: i32) -> u64 {
        self.state.lock().devices[dev as usize].used
    }

    /// Pages mapped now.
    pub fn mapped_pages(&self, dev: i32) -> usize {
        self.state.lock().devices[dev as usize].mapped.len()
    }

    /// Calls of a kind made so far (failed ones included).
    pub fn calls(&self, call: SimCall) -> u64 {
        self.state.lock().calls.get(&call).copied().unwrap_or(0)
    }

    /// Invalid calls seen (double map, unknown free, ...): a correct pool makes none.
    pub fn misuse(&self) -> u64 {
        self.state.lock().misuse
    }

    /// Counts the call and applies an injected failure, if one is due.
    fn enter(st: &mut State, call: SimCall, name: &'static str) -> DResult<()> {
        *st.calls.entry(call).or_insert(0) += 1;
        if let Some(f) = st.faults.get_mut(&call) {
            if f.skip > 0 {
                f.skip -= 1;
            } else if f.times > 0 {
                f.times -= 1;
                return Err(err(name, f.code));
            }
        }
        Ok(())
    }

    fn device<'a>(st: &'a mut State, dev: i32, name: &'static str) -> DResult<&'a mut SimDevice> {
        st.devices
            .get_mut(usize::try_from(dev).map_err(|_| err(name, CUDA_ERROR_INVALID_DEVICE))?)
            .ok_or_else(|| err(name, CUDA_ERROR_INVALID_DEVICE))
    }

    fn misuse_err(st: &mut State, name: &'static str) -> DriverError {
        st.misuse += 1;
        err(name, CUDA_ERROR_INVALID_VALUE)
    }
}

/// mmap at a fixed address with the given protection (fresh pages).
fn remap(ptr: DevPtr, size: usize, prot: i32) -> bool {
    // SAFETY: the range lies inside a reservation this driver made and owns; MAP_FIXED
    // replaces only that range, and the pool never has CPU references into it.
    let p = unsafe {
        libc::mmap(
            ptr as *mut libc::c_void,
            size,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    p != libc::MAP_FAILED
}

/// A fresh anonymous mapping of `size` bytes aligned to `align`, or None.
fn map_aligned(size: usize, align: usize, prot: i32) -> Option<DevPtr> {
    let over = size.checked_add(align)?;
    // SAFETY: an anonymous mapping with no address hint touches no existing memory.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            over,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return None;
    }
    let raw = raw as usize;
    let start = (raw + align - 1) & !(align - 1);
    // SAFETY: both trimmed ends lie inside the mapping just made and are unused.
    unsafe {
        if start > raw {
            libc::munmap(raw as *mut libc::c_void, start - raw);
        }
        let end = start + size;
        if raw + over > end {
            libc::munmap(end as *mut libc::c_void, raw + over - end);
        }
    }
    Some(start as DevPtr)
}

impl Driver for SimDriver {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn device_count(&self) -> DResult<i32> {
        Ok(self.state.lock().devices.len() as i32)
    }

    fn mem_info(&self, dev: i32) -> DResult<(u64, u64)> {
        let mut st = self.state.lock();
        Self::enter(&mut st, SimCall::MemInfo, "cuMemGetInfo")?;
        let d = Self::device(&mut st, dev, "cuMemGetInfo")?;
        Ok((d.capacity.saturating_sub(d.used), d.capacity))
    }

    fn vmm_supported(&self, _dev: i32) -> bool {
        true
    }

    fn granularity(&self, _dev: i32) -> DResult<usize> {
        Ok(SIM_GRANULARITY)
    }

    fn reserve(&self, dev: i32, size: usize, align: usize) -> DResult<DevPtr> {
        const NAME: &str = "cuMemAddressReserve";
        let mut st = self.state.lock();
        Self::enter(&mut st, SimCall::Reserve, NAME)?;
        Self::device(&mut st, dev, NAME)?;
        if size == 0 || !size.is_multiple_of(SIM_GRANULARITY) {
            return Err(Self::misuse_err(&mut st, NAME));
        }
        let p = map_aligned(size, align.max(SIM_GRANULARITY), libc::PROT_NONE)
            .ok_or_else(|| err(NAME, CUDA_ERROR_OUT_OF_MEMORY))?;
        Self::device(&mut st, dev, NAME)?
            .reservations
            .insert(p, size);
        Ok(p)
    }

    fn release(&self, dev: i32, ptr: DevPtr, size: usize) -> DResult<()> {
        const NAME: &str = "cuMemAddressFree";
        let mut st = self.state.lock();
        Self::enter(&mut st, SimCall::Release, NAME)?;
        let d = Self::device(&mut st, dev, NAME)?;
        let still_mapped = d.mapped.keys().any(|&p| p >= ptr && p < ptr + size as u64);
        if d.reservations.get(&ptr) != Some(&size) || still_mapped {
            return Err(Self::misuse_err(&mut st, NAME));
        }
        d.reservations.remove(&ptr);
        // SAFETY: the reservation is ours and no page of it is mapped any more.
        unsafe { libc::munmap(ptr as *mut libc::c_void, size) };
        Ok(())
    }

    fn map(&self, dev: i32, ptr: DevPtr, size: usize) -> DResult<()> {
        const NAME: &str = "cuMemMap";
        let mut st = self.state.lock();
        Self::enter(&mut st, SimCall::Map, NAME)?;
        let d = Self::device(&mut st, dev, NAME)?;
        let inside = d
            .reservations
            .range(..=ptr)
            .next_back()
            .is_some_and(|(&b, &s)| ptr + size as u64 <= b + s as u64);
        if !inside
            || size != SIM_GRANULARITY
            || !ptr.is_multiple_of(SIM_GRANULARITY as u64)
            || d.mapped.contains_key(&ptr)
        {
            return Err(Self::misuse_err(&mut st, NAME));
        }
        if d.used + size as u64 > d.capacity {
            return Err(err("cuMemCreate", CUDA_ERROR_OUT_OF_MEMORY));
        }
        if !remap(ptr, size, libc::PROT_READ | libc::PROT_WRITE) {
            return Err(err("cuMemCreate", CUDA_ERROR_OUT_OF_MEMORY));
        }
        d.used += size as u64;
        d.mapped.insert(ptr, size);
        Ok(())
    }

    fn unmap(&self, dev: i32, ptr: DevPtr, size: usize) -> DResult<()> {
        const NAME: &str = "cuMemUnmap";
        let mut st = self.state.lock();
        Self::enter(&mut st, SimCall::Unmap, NAME)?;
        let d = Self::device(&mut st, dev, NAME)?;
        if d.mapped.get(&ptr) != Some(&size) {
            return Err(Self::misuse_err(&mut st, NAME));
        }
        // PROT_NONE pages in place of the old ones: the memory goes back to the kernel.
        remap(ptr, size, libc::PROT_NONE);
        d.mapped.remove(&ptr);
        d.used -= size as u64;
        Ok(())
    }

    fn malloc(&self, dev: i32, size: usize) -> DResult<DevPtr> {
        const NAME: &str = "cuMemAlloc";
        let mut st = self.state.lock();
        Self::enter(&mut st, SimCall::Malloc, NAME)?;
        let d = Self::device(&mut st, dev, NAME)?;
        if d.used + size as u64 > d.capacity {
            return Err(err(NAME, CUDA_ERROR_OUT_OF_MEMORY));
        }
        let p = map_aligned(size, SIM_GRANULARITY, libc::PROT_READ | libc::PROT_WRITE)
            .ok_or_else(|| err(NAME, CUDA_ERROR_OUT_OF_MEMORY))?;
        d.used += size as u64;
        d.mallocs.insert(p, size);
        Ok(p)
    }

    fn free(&self, dev: i32, ptr: DevPtr) -> DResult<()> {
        const NAME: &str = "cuMemFree";
        let mut st = self.state.lock();
        Self::enter(&mut st, SimCall::Free, NAME)?;
        let d = Self::device(&mut st, dev, NAME)?;
        let Some(size) = d.mallocs.remove(&ptr) else {
            return Err(Self::misuse_err(&mut st, NAME));
        };
        d.used -= size as u64;
        // SAFETY: the block was mapped by `malloc` and is no longer used.
        unsafe { libc::munmap(ptr as *mut libc::c_void, size) };
        Ok(())
    }

    fn record_event(&self, dev: i32, stream: StreamId) -> DResult<EventId> {
        const NAME: &str = "cuEventRecord";
        let mut st = self.state.lock();
        Self::enter(&mut st, SimCall::RecordEvent, NAME)?;
        Self::device(&mut st, dev, NAME)?;
        let id = st.next_event;
        st.next_event += 1;
        st.events.insert(
            id,
            SimEvent {
                dev,
                stream,
                done: false,
            },
        );
        Ok(id)
    }

    fn query_event(&self, _dev: i32, event: EventId) -> DResult<bool> {
        const NAME: &str = "cuEventQuery";
        let mut st = self.state.lock();
        Self::enter(&mut st, SimCall::QueryEvent, NAME)?;
        match st.events.get(&event) {
            Some(e) => Ok(e.done),
            None => Err(Self::misuse_err(&mut st, NAME)),
        }
    }

    fn sync_event(&self, _dev: i32, event: EventId) -> DResult<()> {
        const NAME: &str = "cuEventSynchronize";
        let mut st = self.state.lock();
        Self::enter(&mut st, SimCall::SyncEvent, NAME)?;
        match st.events.get_mut(&event) {
            Some(e) => {
                e.done = true;
                Ok(())
            }
            None => Err(Self::misuse_err(&mut st, NAME)),
        }
    }

    fn destroy_event(&self, _dev: i32, event: EventId) {
        let mut st = self.state.lock();
        if st.events.remove(&event).is_none() {
            st.misuse += 1;
        }
    }

    fn synchronize(&self, dev: i32) -> DResult<()> {
        const NAME: &str = "cuCtxSynchronize";
        let mut st = self.state.lock();
        Self::enter(&mut st, SimCall::Synchronize, NAME)?;
        Self::device(&mut st, dev, NAME)?;
        for e in st.events.values_mut() {
            if e.dev == dev {
                e.done = true;
            }
        }
        Ok(())
    }
}

impl Drop for SimDriver {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        for d in &st.devices {
            for (&p, &s) in d.reservations.iter().chain(d.mallocs.iter()) {
                // SAFETY: the driver is going away with every mapping it made.
                unsafe { libc::munmap(p as *mut libc::c_void, s) };
            }
        }
    }
}
