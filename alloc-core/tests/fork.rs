//! fork while other threads allocate: the child must be able to allocate and free (no
//! engine lock left held by a thread that does not exist in the child).

use poolside::Poolside;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[global_allocator]
static GLOBAL: Poolside = Poolside;

#[test]
fn child_of_a_busy_process_allocates() {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut keep = Vec::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    // Sizes from tiny to large spans, so arena and heap locks are busy.
                    keep.push(vec![t as u8; 1 + (i * 7919) % (3 << 20)]);
                    if keep.len() > 32 {
                        keep.clear();
                        poolside::collect(false);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for _ in 0..50 {
        // SAFETY: the child only allocates, frees and exits with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let mut ok = true;
            for i in 0..2000usize {
                let v = vec![i as u8; 1 + (i * 131) % 100_000];
                ok &= v[v.len() - 1] == i as u8;
            }
            poolside::collect(true);
            // SAFETY: _exit ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: pid is our child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child failed: {status:#x}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
}
