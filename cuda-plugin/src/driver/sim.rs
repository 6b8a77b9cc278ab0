//! A simulated device on host memory, selected with `POOLSIDE_CUDA_DRIVER=sim`.
//!
//! - A reservation is an `mmap(PROT_NONE)` of address space; mapping a page replaces it
//!   with fresh read-write pages (`MAP_FIXED`), unmapping puts `PROT_NONE` back, so the
//!   kernel drops the memory. cuMemAlloc is a read-write mapping of its own.
//! - Each device has a capacity (`device_capacity_mb`); mapped and allocated bytes count
//!   against it, and going over it fails with CUDA_ERROR_OUT_OF_MEMORY.
//! - Streams run work that completes later ([`super::sim_streams`]): tests launch work
//!   ([`SimDriver::launch`]) and finish it ([`SimDriver::advance`], a synchronize, an event
//!   synchronize), so they decide when the device has "finished" and which events are not
//!   ready yet.
//! - [`SimDriver::inject`] makes any call fail with a chosen code after a number of
//!   successes, to test every failure path.
//!
//! It also checks its callers: mapping a mapped page, unmapping an unmapped one, releasing
//! a reservation with pages still mapped, freeing an unknown pointer, and using an unknown
//! event all fail with CUDA_ERROR_INVALID_VALUE; a call on a device never opened fails with
//! CUDA_ERROR_INVALID_CONTEXT. All are counted in [`SimDriver::misuse`].

use super::sim_streams::Streams;
use super::{DResult, DevPtr, Driver, DriverError, EventId, StreamId, CUDA_ERROR_OUT_OF_MEMORY};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};

/// Page size of the simulated device (the allocation granularity of current GPUs).
pub const SIM_GRANULARITY: usize = 2 << 20;
/// CUDA_ERROR_INVALID_VALUE.
pub const CUDA_ERROR_INVALID_VALUE: i32 = 1;
/// CUDA_ERROR_INVALID_DEVICE.
pub const CUDA_ERROR_INVALID_DEVICE: i32 = 101;
/// CUDA_ERROR_INVALID_CONTEXT.
pub const CUDA_ERROR_INVALID_CONTEXT: i32 = 201;
/// CUDA_ERROR_LAUNCH_FAILED, a stand-in for "the device broke".
pub const CUDA_ERROR_LAUNCH_FAILED: i32 = 719;
/// CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: a call a stream capture forbids.
pub const CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: i32 = 900;

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
    CreateEvent,
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
    /// Opened (its context retained, on the real driver).
    opened: bool,
    capacity: u64,
    used: u64,
    reservations: BTreeMap<DevPtr, usize>,
    mapped: HashMap<DevPtr, usize>,
    mallocs: HashMap<DevPtr, usize>,
}

#[derive(Default)]
struct State {
    devices: Vec<SimDevice>,
    streams: Streams,
    faults: HashMap<SimCall, Fault>,
    calls: HashMap<SimCall, u64>,
    misuse: u64,
    /// A stream capture in global mode is underway (set by tests, see `set_capturing`).
    capturing: bool,
    /// Threads' capture mode exchanged to relaxed and not yet restored.
    relaxed: u32,
    /// Calls that a capture forbade (see `set_capturing`).
    capture_violations: u64,
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
        CUDA_ERROR_INVALID_CONTEXT => "CUDA_ERROR_INVALID_CONTEXT",
        CUDA_ERROR_LAUNCH_FAILED => "CUDA_ERROR_LAUNCH_FAILED",
        CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED => "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
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
        let mut st = State::default();
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

    /// Finishes all work launched so far on every stream (the device caught up).
    pub fn complete_events(&self) {
        self.state.lock().streams.finish(None);
    }

    /// Finishes all work launched so far on `stream` (of every device).
    pub fn complete_stream(&self, stream: StreamId) {
        self.state.lock().streams.finish(Some(stream));
    }

    /// Launches one piece of work on `stream` of `dev` that reads or writes
    /// `[ptr, ptr + len)` (nothing when len is 0) until it is finished.
    pub fn launch(&self, dev: i32, stream: StreamId, ptr: DevPtr, len: u64) {
        self.state.lock().streams.launch(dev, stream, ptr, len);
    }

    /// Finishes the oldest `n` unfinished pieces of work on `stream` of `dev`.
    pub fn advance(&self, dev: i32, stream: StreamId, n: u64) {
        self.state.lock().streams.advance(dev, stream, n);
    }

    /// Whether `stream` of `dev` has unfinished work (`torch.cuda.Stream.query()` false).
    pub fn busy(&self, dev: i32, stream: StreamId) -> bool {
        self.state.lock().streams.busy(dev, stream)
    }

    /// Whether unfinished work on another stream than `stream` still uses any byte of
    /// `[ptr, ptr + len)`: memory handed to `stream` there would be corrupted.
    pub fn in_use_elsewhere(&self, dev: i32, ptr: DevPtr, len: u64, stream: StreamId) -> bool {
        self.state
            .lock()
            .streams
            .in_use_elsewhere(dev, ptr, len, stream)
    }

    /// Events created and not yet destroyed.
    pub fn live_events(&self) -> usize {
        self.state.lock().streams.live_events()
    }

    /// Events created so far.
    pub fn events_created(&self) -> u64 {
        self.state.lock().streams.created
    }

    /// Whether `dev` was opened (on the real driver: its primary context retained).
    pub fn opened(&self, dev: i32) -> bool {
        let st = self.state.lock();
        usize::try_from(dev)
            .ok()
            .and_then(|i| st.devices.get(i))
            .is_some_and(|d| d.opened)
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

    /// Models a CUDA graph capture in global mode, from now until `set_capturing(false)`:
    /// as on a real device, a synchronize, an event record, query or wait fails with
    /// CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, and so does a call that obtains or frees
    /// device memory unless the calling thread's capture mode is relaxed. Each such call
    /// is counted in [`SimDriver::capture_violations`].
    pub fn set_capturing(&self, on: bool) {
        self.state.lock().capturing = on;
    }

    /// Calls a capture forbade: a correct pool makes none.
    pub fn capture_violations(&self) -> u64 {
        self.state.lock().capture_violations
    }

    /// Counts the call and applies an injected failure, if one is due.
    fn enter(st: &mut State, call: SimCall, name: &'static str) -> DResult<()> {
        *st.calls.entry(call).or_insert(0) += 1;
        if st.capturing {
            use SimCall::*;
            let forbidden = match call {
                Synchronize | RecordEvent | QueryEvent | SyncEvent => true,
                Reserve | Release | Map | Unmap | Malloc | Free => st.relaxed == 0,
                _ => false,
            };
            if forbidden {
                st.capture_violations += 1;
                return Err(err(name, CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED));
            }
        }
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

    /// Device `dev`, which must have been opened.
    fn device<'a>(st: &'a mut State, dev: i32, name: &'static str) -> DResult<&'a mut SimDevice> {
        let i = usize::try_from(dev).map_err(|_| err(name, CUDA_ERROR_INVALID_DEVICE))?;
        match st.devices.get(i) {
            None => Err(err(name, CUDA_ERROR_INVALID_DEVICE)),
            Some(d) if !d.opened => {
                st.misuse += 1;
                Err(err(name, CUDA_ERROR_INVALID_CONTEXT))
            }
            Some(_) => Ok(&mut st.devices[i]),
        }
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

    fn open_device(&self, dev: i32) -> DResult<()> {
        let mut st = self.state.lock();
        let d = usize::try_from(dev)
            .ok()
            .and_then(|i| st.devices.get_mut(i))
            .ok_or_else(|| err("cuDevicePrimaryCtxRetain", CUDA_ERROR_INVALID_DEVICE))?;
        d.opened = true;
        Ok(())
    }

    fn create_event(&self, dev: i32) -> DResult<EventId> {
        const NAME: &str = "cuEventCreate";
        let mut st = self.state.lock();
        Self::enter(&mut st, SimCall::CreateEvent, NAME)?;
        Self::device(&mut st, dev, NAME)?;
        Ok(st.streams.create(dev))
    }

    fn record_event(&self, dev: i32, event: EventId, stream: StreamId) -> DResult<()> {
        const NAME: &str = "cuEventRecord";
        let mut st = self.state.lock();
        Self::enter(&mut st, SimCall::RecordEvent, NAME)?;
        Self::device(&mut st, dev, NAME)?;
        if !st.streams.record(dev, event, stream) {
            return Err(Self::misuse_err(&mut st, NAME));
        }
        Ok(())
    }

    fn query_event(&self, _dev: i32, event: EventId) -> DResult<bool> {
        const NAME: &str = "cuEventQuery";
        let mut st = self.state.lock();
        Self::enter(&mut st, SimCall::QueryEvent, NAME)?;
        match st.streams.query(event) {
            Some(done) => Ok(done),
            None => Err(Self::misuse_err(&mut st, NAME)),
        }
    }

    fn sync_event(&self, _dev: i32, event: EventId) -> DResult<()> {
        const NAME: &str = "cuEventSynchronize";
        let mut st = self.state.lock();
        Self::enter(&mut st, SimCall::SyncEvent, NAME)?;
        if st.streams.wait(event) {
            Ok(())
        } else {
            Err(Self::misuse_err(&mut st, NAME))
        }
    }

    fn destroy_event(&self, _dev: i32, event: EventId) {
        let mut st = self.state.lock();
        if !st.streams.destroy(event) {
            st.misuse += 1;
        }
    }

    fn synchronize(&self, dev: i32) -> DResult<()> {
        const NAME: &str = "cuCtxSynchronize";
        let mut st = self.state.lock();
        Self::enter(&mut st, SimCall::Synchronize, NAME)?;
        Self::device(&mut st, dev, NAME)?;
        st.streams.synchronize(dev);
        Ok(())
    }

    fn relax_capture_mode(&self) -> Option<u32> {
        self.state.lock().relaxed += 1;
        Some(0)
    }

    fn restore_capture_mode(&self, _mode: u32) {
        let mut st = self.state.lock();
        st.relaxed = st.relaxed.saturating_sub(1);
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
