//! The CUDA driver, through cudarc's bindings with dynamic loading.
//!
//! libcuda.so.1 is opened at run time. cudarc panics when the library or a symbol is
//! missing, and a panic here would abort the process, so [`RealDriver::load`] first checks
//! that the library opens and that every symbol this file uses resolves; only then is
//! any cudarc function called.
//!
//! Every call runs with the device's primary context pushed (what PyTorch's runtime uses)
//! and popped again, so the calling thread's current context is left as it was. A device's
//! primary context is retained when the device is opened (when its pool is made), not at
//! load: a process that uses one GPU of eight creates no context on the other seven.
//! Physical handles are kept per page so that `unmap` can release the right one.

use super::{DResult, DevPtr, Driver, DriverError, EventId, StreamId};
use cudarc::driver::sys;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, Ordering};

/// Symbols called below; all must resolve before any is used.
const SYMBOLS: &[&str] = &[
    "cuInit",
    "cuDeviceGetCount",
    "cuDeviceGet",
    "cuDevicePrimaryCtxRetain",
    "cuCtxPushCurrent_v2",
    "cuCtxPopCurrent_v2",
    "cuMemGetInfo_v2",
    "cuDeviceGetAttribute",
    "cuMemGetAllocationGranularity",
    "cuMemAddressReserve",
    "cuMemAddressFree",
    "cuMemCreate",
    "cuMemMap",
    "cuMemSetAccess",
    "cuMemUnmap",
    "cuMemRelease",
    "cuMemAlloc_v2",
    "cuMemFree_v2",
    "cuEventCreate",
    "cuEventRecord",
    "cuEventQuery",
    "cuEventSynchronize",
    "cuEventDestroy_v2",
    "cuCtxSynchronize",
    "cuGetErrorName",
    "cuThreadExchangeStreamCaptureMode",
];

/// The real driver.
pub struct RealDriver {
    /// Primary context per device: null until the device is opened, then retained for
    /// the life of the process.
    contexts: Vec<AtomicPtr<sys::CUctx_st>>,
    /// Serializes retaining, so that a context is retained once.
    opening: Mutex<()>,
    devices: Vec<sys::CUdevice>,
    /// Physical handle behind each mapped page.
    handles: Mutex<HashMap<DevPtr, sys::CUmemGenericAllocationHandle>>,
}

// SAFETY: CUcontext handles are process-wide and usable from any thread; the handle map is
// behind a mutex.
unsafe impl Send for RealDriver {}
// SAFETY: as above.
unsafe impl Sync for RealDriver {}

fn error(call: &'static str, r: sys::CUresult) -> DriverError {
    let mut p: *const std::ffi::c_char = std::ptr::null();
    // SAFETY: the library and symbol were checked in `load`; p is a valid out-pointer.
    let named = unsafe { sys::cuGetErrorName(r, &mut p) } == sys::CUresult::CUDA_SUCCESS;
    let name = if named && !p.is_null() {
        // SAFETY: the driver returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    } else {
        format!("{r:?}")
    };
    DriverError {
        call,
        code: r as i32,
        name,
    }
}

fn check(call: &'static str, r: sys::CUresult) -> DResult<()> {
    if r == sys::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(error(call, r))
    }
}

fn load_error(what: String) -> String {
    format!("the CUDA driver is not usable: {what}")
}

impl RealDriver {
    /// Opens libcuda.so.1 and initialises the driver; retains no context (see
    /// [`Driver::open_device`]). The message says why when it cannot.
    pub fn load() -> Result<RealDriver, String> {
        // SAFETY: is_culib_present only tries to open the library, without panicking.
        if !unsafe { sys::is_culib_present() } {
            return Err(load_error("libcuda.so.1 cannot be loaded".into()));
        }
        // SAFETY: the library is present, so culib() opens it without panicking.
        let lib = unsafe { sys::culib() };
        for s in SYMBOLS {
            // SAFETY: only the symbol's presence is checked; the pointer is not called.
            if unsafe { lib.get::<unsafe extern "C" fn()>(s.as_bytes()) }.is_err() {
                return Err(load_error(format!("libcuda lacks {s} (driver too old?)")));
            }
        }
        // SAFETY: every symbol below resolves (checked above); arguments are valid.
        unsafe {
            check("cuInit", sys::cuInit(0)).map_err(|e| load_error(e.to_string()))?;
            let mut n = 0;
            check("cuDeviceGetCount", sys::cuDeviceGetCount(&mut n))
                .map_err(|e| load_error(e.to_string()))?;
            let mut contexts = Vec::new();
            let mut devices = Vec::new();
            for i in 0..n {
                let mut d = 0;
                check("cuDeviceGet", sys::cuDeviceGet(&mut d, i))
                    .map_err(|e| load_error(e.to_string()))?;
                devices.push(d);
                contexts.push(AtomicPtr::new(std::ptr::null_mut()));
            }
            Ok(RealDriver {
                contexts,
                opening: Mutex::new(()),
                devices,
                handles: Mutex::new(HashMap::new()),
            })
        }
    }

    /// Whether device `dev`'s primary context has been retained.
    pub fn opened(&self, dev: i32) -> bool {
        usize::try_from(dev)
            .ok()
            .and_then(|i| self.contexts.get(i))
            .is_some_and(|c| !c.load(Ordering::Acquire).is_null())
    }

    /// Device `dev`'s primary context, retained on first use.
    fn context(&self, dev: i32, call: &'static str) -> DResult<sys::CUcontext> {
        let slot = usize::try_from(dev)
            .ok()
            .and_then(|i| self.contexts.get(i))
            .ok_or_else(|| error(call, sys::CUresult::CUDA_ERROR_INVALID_DEVICE))?;
        let c = slot.load(Ordering::Acquire);
        if !c.is_null() {
            return Ok(c);
        }
        let _once = self.opening.lock();
        let c = slot.load(Ordering::Acquire);
        if !c.is_null() {
            return Ok(c);
        }
        let mut c = std::ptr::null_mut();
        // SAFETY: the symbol resolves (checked in `load`); c is a valid out-pointer and
        // the device came from cuDeviceGet.
        check("cuDevicePrimaryCtxRetain", unsafe {
            sys::cuDevicePrimaryCtxRetain(&mut c, self.devices[dev as usize])
        })?;
        slot.store(c, Ordering::Release);
        Ok(c)
    }

    /// Runs `f` with device `dev`'s primary context current.
    fn with_ctx<T>(
        &self,
        dev: i32,
        call: &'static str,
        f: impl FnOnce() -> DResult<T>,
    ) -> DResult<T> {
        let ctx = self.context(dev, call)?;
        // SAFETY: ctx is a retained primary context.
        check("cuCtxPushCurrent", unsafe { sys::cuCtxPushCurrent_v2(ctx) })?;
        let r = f();
        let mut old = std::ptr::null_mut();
        // SAFETY: pops the context pushed above.
        unsafe { sys::cuCtxPopCurrent_v2(&mut old) };
        r
    }

    fn location(&self, dev: i32) -> sys::CUmemLocation {
        sys::CUmemLocation {
            type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
            id: self.devices.get(dev as usize).copied().unwrap_or(dev),
        }
    }

    fn prop(&self, dev: i32) -> sys::CUmemAllocationProp {
        // SAFETY: CUmemAllocationProp is plain data; all-zero is its documented default.
        let mut p: sys::CUmemAllocationProp = unsafe { std::mem::zeroed() };
        p.type_ = sys::CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED;
        p.requestedHandleTypes = sys::CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_NONE;
        p.location = self.location(dev);
        p
    }
}

impl Driver for RealDriver {
    fn name(&self) -> &'static str {
        "cuda"
    }

    fn device_count(&self) -> DResult<i32> {
        Ok(self.contexts.len() as i32)
    }

    fn open_device(&self, dev: i32) -> DResult<()> {
        self.context(dev, "cuDevicePrimaryCtxRetain").map(|_| ())
    }

    fn mem_info(&self, dev: i32) -> DResult<(u64, u64)> {
        self.with_ctx(dev, "cuMemGetInfo", || {
            let (mut free, mut total) = (0usize, 0usize);
            // SAFETY: valid out-pointers; a context is current.
            check("cuMemGetInfo", unsafe {
                sys::cuMemGetInfo_v2(&mut free, &mut total)
            })?;
            Ok((free as u64, total as u64))
        })
    }

    fn vmm_supported(&self, dev: i32) -> bool {
        let Some(&d) = self.devices.get(dev as usize) else {
            return false;
        };
        let mut v = 0;
        // SAFETY: valid out-pointer and device.
        let r = unsafe {
            sys::cuDeviceGetAttribute(
                &mut v,
                sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_VIRTUAL_ADDRESS_MANAGEMENT_SUPPORTED,
                d,
            )
        };
        r == sys::CUresult::CUDA_SUCCESS && v != 0
    }

    fn granularity(&self, dev: i32) -> DResult<usize> {
        let prop = self.prop(dev);
        let mut g = 0usize;
        // SAFETY: valid prop and out-pointer.
        check("cuMemGetAllocationGranularity", unsafe {
            sys::cuMemGetAllocationGranularity(
                &mut g,
                &prop,
                sys::CUmemAllocationGranularity_flags::CU_MEM_ALLOC_GRANULARITY_MINIMUM,
            )
        })?;
        Ok(g)
    }

    fn reserve(&self, dev: i32, size: usize, align: usize) -> DResult<DevPtr> {
        self.with_ctx(dev, "cuMemAddressReserve", || {
            let mut p = 0;
            // SAFETY: valid out-pointer; no fixed address requested.
            check("cuMemAddressReserve", unsafe {
                sys::cuMemAddressReserve(&mut p, size, align, 0, 0)
            })?;
            Ok(p)
        })
    }

    fn release(&self, dev: i32, ptr: DevPtr, size: usize) -> DResult<()> {
        self.with_ctx(dev, "cuMemAddressFree", || {
            // SAFETY: ptr/size are one reservation with nothing mapped (caller's contract).
            check("cuMemAddressFree", unsafe {
                sys::cuMemAddressFree(ptr, size)
            })
        })
    }

    fn map(&self, dev: i32, ptr: DevPtr, size: usize) -> DResult<()> {
        let prop = self.prop(dev);
        self.with_ctx(dev, "cuMemCreate", || {
            let mut h = 0;
            // SAFETY: valid prop and out-pointer.
            check("cuMemCreate", unsafe {
                sys::cuMemCreate(&mut h, size, &prop, 0)
            })?;
            // SAFETY: ptr lies in a reservation of ours and is not mapped; h is `size` bytes.
            if let Err(e) = check("cuMemMap", unsafe { sys::cuMemMap(ptr, size, 0, h, 0) }) {
                // SAFETY: h was created above and is not mapped.
                unsafe { sys::cuMemRelease(h) };
                return Err(e);
            }
            let access = sys::CUmemAccessDesc {
                location: self.location(dev),
                flags: sys::CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
            };
            // SAFETY: the range was just mapped.
            if let Err(e) = check("cuMemSetAccess", unsafe {
                sys::cuMemSetAccess(ptr, size, &access, 1)
            }) {
                // SAFETY: undo the mapping and the allocation made above.
                unsafe {
                    sys::cuMemUnmap(ptr, size);
                    sys::cuMemRelease(h);
                }
                return Err(e);
            }
            self.handles.lock().insert(ptr, h);
            Ok(())
        })
    }

    fn unmap(&self, dev: i32, ptr: DevPtr, size: usize) -> DResult<()> {
        let Some(h) = self.handles.lock().remove(&ptr) else {
            return Err(error("cuMemUnmap", sys::CUresult::CUDA_ERROR_INVALID_VALUE));
        };
        self.with_ctx(dev, "cuMemUnmap", || {
            // SAFETY: the page was mapped by `map` with handle h; nothing uses it.
            let r = check("cuMemUnmap", unsafe { sys::cuMemUnmap(ptr, size) });
            // SAFETY: h is no longer mapped (or the unmap failed and the handle is lost
            // either way: releasing defers the free until unmapped).
            unsafe { sys::cuMemRelease(h) };
            r
        })
    }

    fn malloc(&self, dev: i32, size: usize) -> DResult<DevPtr> {
        self.with_ctx(dev, "cuMemAlloc", || {
            let mut p = 0;
            // SAFETY: valid out-pointer; a context is current.
            check("cuMemAlloc", unsafe { sys::cuMemAlloc_v2(&mut p, size) })?;
            Ok(p)
        })
    }

    fn free(&self, dev: i32, ptr: DevPtr) -> DResult<()> {
        self.with_ctx(dev, "cuMemFree", || {
            // SAFETY: ptr came from cuMemAlloc and is no longer used.
            check("cuMemFree", unsafe { sys::cuMemFree_v2(ptr) })
        })
    }

    fn create_event(&self, dev: i32) -> DResult<EventId> {
        self.with_ctx(dev, "cuEventCreate", || {
            let mut e = std::ptr::null_mut();
            // SAFETY: valid out-pointer; flags 2 = CU_EVENT_DISABLE_TIMING.
            check("cuEventCreate", unsafe { sys::cuEventCreate(&mut e, 2) })?;
            Ok(e as usize as EventId)
        })
    }

    fn record_event(&self, dev: i32, event: EventId, stream: StreamId) -> DResult<()> {
        self.with_ctx(dev, "cuEventRecord", || {
            // SAFETY: event came from create_event and is not destroyed; stream is a
            // handle PyTorch gave us.
            check("cuEventRecord", unsafe {
                sys::cuEventRecord(
                    event as usize as sys::CUevent,
                    stream as usize as sys::CUstream,
                )
            })
        })
    }

    fn query_event(&self, dev: i32, event: EventId) -> DResult<bool> {
        self.with_ctx(dev, "cuEventQuery", || {
            // SAFETY: event came from create_event and is not destroyed.
            match unsafe { sys::cuEventQuery(event as usize as sys::CUevent) } {
                sys::CUresult::CUDA_SUCCESS => Ok(true),
                sys::CUresult::CUDA_ERROR_NOT_READY => Ok(false),
                r => Err(error("cuEventQuery", r)),
            }
        })
    }

    fn sync_event(&self, dev: i32, event: EventId) -> DResult<()> {
        self.with_ctx(dev, "cuEventSynchronize", || {
            // SAFETY: as in query_event.
            check("cuEventSynchronize", unsafe {
                sys::cuEventSynchronize(event as usize as sys::CUevent)
            })
        })
    }

    fn destroy_event(&self, dev: i32, event: EventId) {
        let _ = self.with_ctx(dev, "cuEventDestroy", || {
            // SAFETY: as in query_event; the event is not used afterwards.
            check("cuEventDestroy", unsafe {
                sys::cuEventDestroy_v2(event as usize as sys::CUevent)
            })
        });
    }

    fn synchronize(&self, dev: i32) -> DResult<()> {
        self.with_ctx(dev, "cuCtxSynchronize", || {
            // SAFETY: a context is current.
            check("cuCtxSynchronize", unsafe { sys::cuCtxSynchronize() })
        })
    }

    fn relax_capture_mode(&self) -> Option<u32> {
        let mut mode = sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED;
        // SAFETY: the symbol was checked in `load`; mode is a valid in/out pointer. The
        // mode is per thread and needs no context.
        let r = unsafe { sys::cuThreadExchangeStreamCaptureMode(&mut mode) };
        (r == sys::CUresult::CUDA_SUCCESS).then_some(mode as u32)
    }

    fn restore_capture_mode(&self, prev: u32) {
        let mut mode = match prev {
            0 => sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_GLOBAL,
            1 => sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
            _ => sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED,
        };
        // SAFETY: as in relax_capture_mode.
        unsafe { sys::cuThreadExchangeStreamCaptureMode(&mut mode) };
    }
}
