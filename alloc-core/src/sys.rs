//! The OS services the engine needs beyond memory: raw stderr output, a coarse clock, the
//! environment, and a spin lock. None of them allocates, formats through core::fmt, or
//! panics, so all of them are safe to use inside malloc.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

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

/// A test-and-test-and-set lock that yields the CPU after spinning a while.
///
/// Used only on slow paths (new spans, heap hand-over, stats folds). It holds no state
/// across fork beyond the flag, which the fork handlers take and release.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock serialises all access to `value`.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
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
        if self.locked.load(Ordering::Relaxed) {
            return None;
        }
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| SpinGuard { lock: self })
    }

    /// Takes the lock without a guard (fork handlers).
    pub fn raw_lock(&self) {
        let mut spins = 0u32;
        loop {
            if !self.locked.load(Ordering::Relaxed)
                && self
                    .locked
                    .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return;
            }
            spins += 1;
            if spins < 64 {
                core::hint::spin_loop();
            } else {
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
    }

    /// Releases a lock taken by `raw_lock`.
    ///
    /// # Safety
    /// The caller took the lock with `raw_lock` (or is the only thread left after fork).
    pub unsafe fn raw_unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
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
        self.lock.locked.store(false, Ordering::Release);
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
}
