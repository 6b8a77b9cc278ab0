//! The OS services the engine needs beyond memory: raw stderr output, a coarse clock, the
//! environment, and a lock (spin, then futex). None of them allocates, formats through core::fmt, or
//! panics, so all of them are safe to use inside malloc.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Writes bytes to stderr with raw write(2), retrying on short writes.
pub fn write_stderr(parts: &[&[u8]]) {
    for part in parts {
        let mut rest = *part;
        while !rest.is_empty() {
            // SAFETY: the buffer is valid for rest.len() bytes.
            let n = unsafe { libc::write(2, rest.as_ptr() as *const libc::c_void, rest.len()) };
            if n <= 0 {
                break;
            }
            rest = &rest[n as usize..];
        }
    }
}

/// Writes "poolside: fatal: MSG" and aborts. For states the engine cannot recover from.
pub fn fatal(msg: &[u8]) -> ! {
    write_stderr(&[b"poolside: fatal: ", msg, b"\n"]);
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

/// Formats `v` in decimal into `buf`, returning the digits (no allocation).
pub fn fmt_u64(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// The kernel's overcommit mode (`/proc/sys/vm/overcommit_memory`: 0 heuristic, 1 always,
/// 2 never), read with raw syscalls; `None` when the file cannot be read (no /proc, a
/// sandbox) or holds something else.
pub fn overcommit_mode() -> Option<u8> {
    // SAFETY: the path is NUL-terminated; open allocates nothing in user space.
    let fd = unsafe {
        libc::open(
            c"/proc/sys/vm/overcommit_memory".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 4];
    // SAFETY: buf is valid for its length; fd is ours and closed once.
    let n = unsafe {
        let n = libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len());
        libc::close(fd);
        n
    };
    match (n, buf[0]) {
        (1.., d @ b'0'..=b'2') => Some(d - b'0'),
        _ => None,
    }
}

/// RAM plus swap in bytes (sysinfo(2)), saturating; `None` when the call fails.
pub fn ram_plus_swap() -> Option<usize> {
    // SAFETY: sysinfo fills a plain struct that all-zero bytes make valid.
    let mut info: libc::sysinfo = unsafe { core::mem::zeroed() };
    // SAFETY: info is a valid out-parameter.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return None;
    }
    let unit = (info.mem_unit as usize).max(1);
    let pages = (info.totalram as usize).saturating_add(info.totalswap as usize);
    Some(pages.saturating_mul(unit))
}

/// Whether the kernel refuses any mapping of `size` bytes outright, whatever this process
/// gives back first: in overcommit mode 0 (the default), one mapping larger than RAM plus
/// swap. Then freeing cached memory and asking again is wasted work. False whenever that
/// cannot be known (other modes, where freeing may help; /proc unreadable).
pub fn kernel_refuses_outright(size: usize) -> bool {
    overcommit_mode() == Some(0) && ram_plus_swap().is_some_and(|limit| size > limit)
}

/// Milliseconds on a coarse monotonic clock (a vDSO read, a few nanoseconds).
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// The value of environment variable `name` (NUL-terminated), without allocating.
pub fn getenv(name: &[u8]) -> Option<&'static [u8]> {
    debug_assert!(name.last() == Some(&0));
    // SAFETY: name is NUL-terminated; getenv does not allocate. The environment is not
    // modified by the engine, and a program that calls setenv concurrently with our first
    // allocation is already racing with libc itself.
    let p = unsafe { libc::getenv(name.as_ptr() as *const libc::c_char) };
    if p.is_null() {
        return None;
    }
    // SAFETY: getenv returns a NUL-terminated string that lives as long as the environment.
    let len = unsafe { libc::strlen(p) };
    // SAFETY: p is valid for len bytes.
    Some(unsafe { core::slice::from_raw_parts(p as *const u8, len) })
}

/// A lock for slow paths (new spans, heap hand-over, stats folds): a short spin, then a
/// sleep on a futex until the holder wakes it.
///
/// With more threads than cores the holder is often descheduled; spinning, or yielding in
/// a loop (what this lock did before), then burns the waiters' time slices (tens of
/// thousands of `sched_yield` calls in `benches/rust_workload.sh`). The state word is
/// 0 (free), 1 (held) or 2 (held, and some thread may sleep on it): the unlocker makes the
/// `futex(FUTEX_WAKE)` call only after a waiter said it sleeps, so an uncontended lock costs
/// one atomic exchange each way, and no system call. This is the futex mutex of Drepper's
/// "Futexes Are Tricky" (also Rust std's on Linux). It uses raw system calls only: nothing
/// allocates, and it works before pthread is set up.
///
/// Across fork the fork handlers take the locks before and release them after
/// (`raw_unlock`); a private futex belongs to one address space, so the child's waking
/// reaches none of the parent's sleepers, and there are none in the child.
#[repr(C)]
pub struct SpinLock<T> {
    state: AtomicU32,
    /// Times the lock was taken, and of those, times it was found held: written only by
    /// the holder (a load and a store on a line the lock just brought in, no extra atomic
    /// read-modify-write), read by benchmarks from a debugger or [`SpinLock::counts`].
    taken: AtomicU64,
    contended: AtomicU64,
    value: UnsafeCell<T>,
}

const FREE: u32 = 0;
const HELD: u32 = 1;
const CONTENDED: u32 = 2;
/// Loads of the state before sleeping: about a microsecond, longer than most critical
/// sections here, far shorter than a time slice.
const SPINS: u32 = 100;

// SAFETY: the lock serialises all access to `value`.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> Self {
        SpinLock {
            state: AtomicU32::new(FREE),
            taken: AtomicU64::new(0),
            contended: AtomicU64::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Times the lock was taken, and times it was found held (racy outside the lock).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.taken.load(Ordering::Relaxed),
            self.contended.load(Ordering::Relaxed),
        )
    }

    /// Counts an acquisition; called by the new holder.
    #[inline(always)]
    fn count(&self) {
        self.taken
            .store(self.taken.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Takes the lock; the guard releases it.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        self.raw_lock();
        SpinGuard { lock: self }
    }

    /// Takes the lock if it is free.
    #[inline]
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        self.state
            .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| {
                self.count();
                SpinGuard { lock: self }
            })
    }

    /// Takes the lock without a guard (fork handlers).
    #[inline]
    pub fn raw_lock(&self) {
        if self
            .state
            .compare_exchange_weak(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        self.count();
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        let mut state = self.spin();
        // Counted by the waiter, atomically: several may wait at once.
        self.contended.fetch_add(1, Ordering::Relaxed);
        if state == FREE {
            match self
                .state
                .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(s) => state = s,
            }
        }
        loop {
            // Announce a sleeper; if the lock was free meanwhile, it is ours (marked
            // contended, which costs one spare wake at most).
            if state != CONTENDED && self.state.swap(CONTENDED, Ordering::Acquire) == FREE {
                return;
            }
            futex_wait(&self.state, CONTENDED);
            state = self.spin();
        }
    }

    /// Spins while the lock is held by a running thread with no sleeper, a bounded number
    /// of times; returns the state last seen.
    fn spin(&self) -> u32 {
        let mut n = SPINS;
        loop {
            let state = self.state.load(Ordering::Relaxed);
            if state != HELD || n == 0 {
                return state;
            }
            core::hint::spin_loop();
            n -= 1;
        }
    }

    /// Releases a lock taken by `raw_lock`.
    ///
    /// # Safety
    /// The caller took the lock with `raw_lock` (or is the only thread left after fork).
    #[inline]
    pub unsafe fn raw_unlock(&self) {
        if self.state.swap(FREE, Ordering::Release) == CONTENDED {
            futex_wake_one(&self.state);
        }
    }
}

/// Sleeps while `*word == expected` (returns at once otherwise, or on a signal or a
/// spurious wake: callers re-check).
fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: word is a valid, aligned u32 for the duration of the call; a null timeout
    // means no timeout. The call only reads the word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            core::ptr::null::<libc::timespec>(),
        )
    };
}

/// Wakes one thread sleeping in [`futex_wait`] on `word`, if any.
fn futex_wake_one(word: &AtomicU32) {
    // SAFETY: as for futex_wait; FUTEX_WAKE does not touch the word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        )
    };
}

/// Access to a [`SpinLock`]'s value while it is held.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> core::ops::Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> core::ops::DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard holds the lock.
        unsafe { self.lock.raw_unlock() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        let mut b = [0u8; 20];
        assert_eq!(fmt_u64(0, &mut b), b"0");
        assert_eq!(
            fmt_u64(18446744073709551615, &mut b),
            b"18446744073709551615"
        );
    }

    #[test]
    fn overcommit_mode_and_memory_match_proc() {
        let text = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").ok();
        let want = text.and_then(|t| t.trim().parse::<u8>().ok());
        assert_eq!(overcommit_mode(), want);
        let info = std::fs::read_to_string("/proc/meminfo").unwrap();
        let kib = |name: &str| -> usize {
            let line = info.lines().find(|l| l.starts_with(name)).unwrap();
            line.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<usize>()
                .unwrap()
                * 1024
        };
        let want = kib("MemTotal:") + kib("SwapTotal:");
        let got = ram_plus_swap().unwrap();
        // sysinfo and meminfo round differently; both are the same totals.
        assert!(
            got.abs_diff(want) < 1 << 20,
            "sysinfo {got}, meminfo {want}"
        );
        if overcommit_mode() == Some(0) {
            assert!(kernel_refuses_outright(got + (1 << 20)));
            assert!(!kernel_refuses_outright(got / 2));
        } else {
            assert!(!kernel_refuses_outright(usize::MAX));
        }
    }

    #[test]
    fn lock_serialises_threads() {
        static L: SpinLock<u64> = SpinLock::new(0);
        let hs: std::vec::Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..10_000 {
                        *L.lock() += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*L.lock(), 40_000);
    }

    /// CPU time of the calling thread, in microseconds.
    fn thread_cpu_us() -> u64 {
        // SAFETY: an all-zero rusage is valid; the call fills it.
        let mut ru: libc::rusage = unsafe { core::mem::zeroed() };
        // SAFETY: ru is a valid out-parameter.
        assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) }, 0);
        let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        us(ru.ru_utime) + us(ru.ru_stime)
    }

    #[test]
    fn waiters_sleep_while_the_holder_is_off_cpu() {
        // The holder sleeps 300 ms with the lock held, as a descheduled holder would. The
        // waiters must sleep too: spinning or yielding in a loop would use CPU all along.
        static L: SpinLock<u64> = SpinLock::new(0);
        let guard = L.lock();
        let waiters: std::vec::Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    let before = thread_cpu_us();
                    *L.lock() += 1;
                    thread_cpu_us() - before
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(guard);
        for w in waiters {
            let cpu = w.join().unwrap();
            assert!(cpu < 30_000, "a waiter used {cpu} us of CPU waiting 300 ms");
        }
        assert_eq!(*L.lock(), 4);
        // Fork handlers unlock a lock another thread of the parent may still wait on.
        L.raw_lock();
        // SAFETY: taken just above.
        unsafe { L.raw_unlock() };
        assert!(L.try_lock().is_some());
    }
}
