//! Process and thread life cycle: lazy global initialisation (which may happen inside the
//! very first malloc, before constructors run), the thread-exit hook that parks a heap,
//! and the fork handlers.

use super::arena::ARENA;
use super::heap::{self, Heap, HEAPS};
use super::segment::thp_policy;
use super::stats::{self, STATS_LOCK};
use crate::config::HostConfig;
use crate::source::os;
use crate::stats::{layout::WRITER_HOST, shm};
use crate::sys::{self, SpinLock};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

const UNINIT: u8 = 0;
const RUNNING: u8 = 1;
const READY: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
/// The pthread key whose destructor parks an exiting thread's heap (usize::MAX = none).
static KEY: AtomicUsize = AtomicUsize::new(usize::MAX);
static CONFIG: SpinLock<HostConfig> = SpinLock::new(HostConfig::DEFAULT);

/// Initialises the process-wide state once. Allocates nothing, so it cannot recurse.
#[inline]
pub fn ensure() {
    if STATE.load(Ordering::Acquire) != READY {
        init_slow();
    }
}

#[cold]
fn init_slow() {
    if STATE
        .compare_exchange(UNINIT, RUNNING, Ordering::Acquire, Ordering::Acquire)
        .is_err()
    {
        while STATE.load(Ordering::Acquire) != READY {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
        return;
    }
    let cfg = HostConfig::from_env();
    *CONFIG.lock() = cfg;
    {
        let mut arena = ARENA.lock();
        arena.set_purge_delay(cfg.purge_delay_ms);
        // Before the first segment: every thread's first allocation waits for READY.
        arena.thp = thp_policy(
            cfg.huge_pages,
            os::thp_mode(),
            super::front_end::serves_process_malloc(),
        );
        // Before any metadata exists: no heap or segment was made before READY.
        super::meta::set_carving(arena.thp.eager());
    }
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: key is a valid out-parameter; the destructor has the right signature.
    if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } == 0 {
        KEY.store(key as usize, Ordering::Release);
    }
    shm::open(&cfg, WRITER_HOST);
    stats::init_section();
    STATE.store(READY, Ordering::Release);
}

/// Arranges for `heap` to be parked when the calling thread exits.
pub fn register_thread(heap: *mut Heap) {
    let key = KEY.load(Ordering::Acquire);
    if key != usize::MAX {
        // SAFETY: the key was created; pthread_setspecific on keys below 32 (ours is
        // created first thing) does not allocate in glibc.
        unsafe {
            libc::pthread_setspecific(key as libc::pthread_key_t, heap as *const libc::c_void)
        };
    }
}

extern "C" fn on_thread_exit(arg: *mut libc::c_void) {
    let heap = arg as *mut Heap;
    if !heap.is_null() && heap == super::tls::get() {
        // SAFETY: the thread is exiting and this is its heap.
        unsafe { heap::abandon(heap) };
    }
}

// Lock order everywhere: HEAPS, then ARENA, then the metadata carver, then STATS_LOCK.
extern "C" fn fork_prepare() {
    HEAPS.raw_lock();
    ARENA.raw_lock();
    super::meta::fork_lock();
    STATS_LOCK.raw_lock();
}

extern "C" fn fork_parent() {
    // SAFETY: fork_prepare took these locks in this thread.
    unsafe {
        STATS_LOCK.raw_unlock();
        super::meta::fork_unlock();
        ARENA.raw_unlock();
        HEAPS.raw_unlock();
    }
}

extern "C" fn fork_child() {
    // SAFETY: the child has only the forking thread, which took the locks in fork_prepare.
    unsafe {
        STATS_LOCK.raw_unlock();
        super::meta::fork_unlock();
        ARENA.raw_unlock();
        HEAPS.raw_unlock();
    }
    shm::after_fork_child();
}

static FORK_HANDLERS: AtomicU8 = AtomicU8::new(0);

/// Registers the fork handlers, once, from the first thread that gets a heap (after its
/// heap is in place). pthread_atfork may call malloc: under the preload that is us, and
/// the flag is already set, so the nested call just allocates. The engine registers no
/// constructor, so a copy of it that serves no allocation (the CUDA plugin links one) stays
/// inert.
pub fn install_fork_handlers() {
    if FORK_HANDLERS.swap(1, Ordering::AcqRel) == 0 {
        // SAFETY: the handlers are valid for the life of the process.
        unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
    }
}

extern "C" fn destructor() {
    if STATE.load(Ordering::Acquire) != READY {
        return;
    }
    // Counters of the exiting thread not folded yet are missing from the summary; reading
    // them would need this thread's TLS slot, which a dormant copy of the engine must not
    // reference.
    if CONFIG.lock().verbose {
        let s = super::stats_snapshot();
        let mut b = [[0u8; 20]; 3];
        let (allocs, frees): (u64, u64) = s
            .classes
            .iter()
            .fold((0, 0), |a, k| (a.0 + k.allocs, a.1 + k.frees));
        let [b0, b1, b2] = &mut b;
        sys::write_stderr(&[
            b"poolside: ",
            sys::fmt_u64(allocs, b0),
            b" allocations, ",
            sys::fmt_u64(frees, b1),
            b" frees, peak reserved ",
            sys::fmt_u64(s.peak_reserved_bytes, b2),
            b" bytes\n",
        ]);
    }
}

#[used]
#[link_section = ".fini_array"]
static DESTRUCTOR: extern "C" fn() = destructor;
