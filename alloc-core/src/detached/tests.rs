//! Tests of the detached pool over a source whose memory faults on any CPU access (so a
//! pool that touched managed memory would crash), with a page budget to make commits fail.

use super::pool::{DetachedPool, FreeError};
use super::{class_for_request, MIN_BLOCK, PAGE};
use crate::size_class::{class_size, MAX_SMALL};
use crate::source::MemorySource;
use core::ptr::NonNull;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::vec::Vec;

/// Address space mapped PROT_NONE; commits are only recorded.
struct NoTouchSource {
    committed: Mutex<BTreeSet<usize>>,
    budget_pages: usize,
    reservations: Mutex<BTreeMap<usize, usize>>,
}

impl NoTouchSource {
    fn new(budget_pages: usize) -> Self {
        NoTouchSource {
            committed: Mutex::new(BTreeSet::new()),
            budget_pages,
            reservations: Mutex::new(BTreeMap::new()),
        }
    }
}

// SAFETY: reservations are fresh PROT_NONE mappings; the recorded state is under mutexes.
unsafe impl MemorySource for NoTouchSource {
    const CPU_ACCESSIBLE: bool = false;
    const RESERVE_COMMITS: bool = false;
    fn granularity(&self) -> usize {
        PAGE
    }
    fn reserve(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let over = size + align;
        // SAFETY: a fresh anonymous mapping.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                over,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let base = (p as usize + align - 1) & !(align - 1);
        self.reservations.lock().unwrap().insert(base, size);
        NonNull::new(base as *mut u8)
    }
    unsafe fn release(&self, base: NonNull<u8>, size: usize) {
        let r = self
            .reservations
            .lock()
            .unwrap()
            .remove(&(base.as_ptr() as usize));
        assert_eq!(r, Some(size), "release of an unknown reservation");
        let c = self.committed.lock().unwrap();
        let b = base.as_ptr() as usize;
        assert!(
            c.range(b..b + size).next().is_none(),
            "released while committed"
        );
    }
    unsafe fn commit(&self, ptr: NonNull<u8>, size: usize) -> bool {
        assert_eq!(size, PAGE);
        let mut c = self.committed.lock().unwrap();
        if c.len() >= self.budget_pages {
            return false;
        }
        assert!(c.insert(ptr.as_ptr() as usize), "double commit");
        true
    }
    unsafe fn decommit(&self, ptr: NonNull<u8>, size: usize) {
        assert_eq!(size, PAGE);
        assert!(
            self.committed
                .lock()
                .unwrap()
                .remove(&(ptr.as_ptr() as usize)),
            "decommit of an uncommitted page"
        );
    }
}

fn pool(budget: usize, pages_per_chunk: usize) -> DetachedPool<NoTouchSource> {
    DetachedPool::new(NoTouchSource::new(budget), pages_per_chunk).unwrap()
}

#[test]
fn classes_are_512_multiples_and_fit() {
    for size in (0..=MAX_SMALL).step_by(97) {
        let c = class_for_request(size).unwrap();
        assert!(class_size(c) >= size);
        assert_eq!(class_size(c) % MIN_BLOCK, 0, "size {size}");
    }
    assert_eq!(class_for_request(MAX_SMALL + 1), None);
    assert_eq!(class_size(class_for_request(1).unwrap()), 512);
}

#[test]
fn blocks_are_aligned_disjoint_inside_committed_pages() {
    let mut p = pool(1000, 8);
    let mut live: BTreeMap<usize, usize> = BTreeMap::new();
    let sizes = [1usize, 512, 513, 4000, 70_000, 300_000, MAX_SMALL];
    for round in 0..200 {
        let want = (sizes[round % sizes.len()] + round).min(MAX_SMALL);
        let b = p.alloc(want).unwrap();
        let a = b.ptr.as_ptr() as usize;
        assert_eq!(a % MIN_BLOCK, 0);
        assert!(b.size >= want);
        // No overlap with the neighbours.
        if let Some((&pa, &ps)) = live.range(..a).next_back() {
            assert!(pa + ps <= a);
        }
        if let Some((&na, _)) = live.range(a..).next() {
            assert!(a + b.size <= na);
        }
        // The whole block sits in committed pages.
        let c = p.source().committed.lock().unwrap();
        let mut pg = a & !(PAGE - 1);
        while pg < a + b.size {
            assert!(c.contains(&pg));
            pg += PAGE;
        }
        drop(c);
        live.insert(a, b.size);
    }
    assert_eq!(p.stats().live_blocks, 200);
    assert_eq!(p.stats().live_bytes, live.values().sum::<usize>());
    for (&a, &s) in &live {
        assert_eq!(p.block_of((a + s - 1) as *const u8), Some((a, s)));
        assert_eq!(p.free(NonNull::new(a as *mut u8).unwrap()), Ok(s));
    }
    assert_eq!(p.stats().live_bytes, 0);
    assert!(p.trim() > 0);
    assert_eq!(p.stats().committed_bytes, 0);
    assert_eq!(p.stats().chunks, 0);
    assert!(p.source().reservations.lock().unwrap().is_empty());
}

#[test]
fn bad_frees_are_refused_and_change_nothing() {
    let mut p = pool(10, 4);
    let b = p.alloc(4096).unwrap();
    let before = p.stats();
    // An interior address, never dereferenced: wrapping_add needs no unsafe.
    let inner = NonNull::new(b.ptr.as_ptr().wrapping_add(512)).unwrap();
    assert_eq!(p.free(inner), Err(FreeError::NotAllocated));
    let outside = NonNull::new(8usize as *mut u8).unwrap();
    assert_eq!(p.free(outside), Err(FreeError::NotOwned));
    assert_eq!(p.stats(), before);
    assert_eq!(p.free(b.ptr), Ok(b.size));
    assert_eq!(p.free(b.ptr), Err(FreeError::NotAllocated), "double free");
}

#[test]
fn commit_failure_is_clean_and_trim_recovers() {
    // Two pages in all: fill them with two classes, then a third class cannot get a page.
    let mut p = pool(2, 4);
    let a = p.alloc(MAX_SMALL).unwrap();
    let b = p.alloc(600_000).unwrap();
    let before = p.stats();
    assert_eq!(p.alloc(1000), None);
    assert_eq!(p.stats(), before);
    // Freeing one page's only block and trimming makes room again.
    p.free(a.ptr).unwrap();
    assert_eq!(p.trim(), PAGE);
    let c = p.alloc(1000).unwrap();
    assert!(c.fresh);
    p.free(b.ptr).unwrap();
    p.free(c.ptr).unwrap();
}

#[test]
fn emptied_pages_move_between_classes_without_commits() {
    let mut p = pool(100, 4);
    // Two pages of 1 MiB blocks (two blocks each).
    let blocks: Vec<_> = (0..4).map(|_| p.alloc(MAX_SMALL).unwrap()).collect();
    assert_eq!(p.stats().committed_bytes, 2 * PAGE);
    // One block of each page, then the other block of the first page.
    for i in [0, 2, 1] {
        p.free(blocks[i].ptr).unwrap();
    }
    // One of the pages emptied while another page of its class had room: any class
    // can now use it without committing.
    let small = p.alloc(512).unwrap();
    assert!(!small.fresh);
    assert_eq!(p.stats().committed_bytes, 2 * PAGE);
    p.free(small.ptr).unwrap();
    p.free(blocks[3].ptr).unwrap();
}

#[test]
fn random_model_check() {
    let mut p = pool(64, 2);
    let mut live: BTreeMap<usize, usize> = BTreeMap::new();
    let mut x = 12345u64;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if !x.is_multiple_of(3) || live.is_empty() {
            let size = (x >> 20) as usize % (MAX_SMALL / 8);
            match p.alloc(size) {
                Some(b) => {
                    let a = b.ptr.as_ptr() as usize;
                    assert!(live.range(a..a + b.size).next().is_none());
                    if let Some((&pa, &ps)) = live.range(..a).next_back() {
                        assert!(pa + ps <= a);
                    }
                    live.insert(a, b.size);
                }
                None => {
                    p.trim();
                }
            }
        } else {
            let k = *live.keys().nth((x >> 30) as usize % live.len()).unwrap();
            let s = live.remove(&k).unwrap();
            assert_eq!(p.free(NonNull::new(k as *mut u8).unwrap()), Ok(s));
        }
        assert_eq!(p.stats().live_bytes, live.values().sum::<usize>());
    }
}

/// The idle-page count the statistics read equals what `trim` finds by walking every
/// page (it decommits exactly the committed pages without a live block), after random
/// workloads of mixed classes.
#[test]
fn idle_bytes_equal_what_trim_returns() {
    let mut x = 0x1d1e_u64;
    let mut rng = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..20 {
        let mut p = pool(4096, 8);
        let mut live = Vec::new();
        for _ in 0..3000 {
            if rng() % 3 != 0 || live.is_empty() {
                let size = (rng() % MAX_SMALL as u64) as usize >> (rng() % 12) | 1;
                if let Some(b) = p.alloc(size) {
                    live.push(b.ptr);
                }
            } else {
                let i = (rng() as usize) % live.len();
                p.free(live.swap_remove(i)).unwrap();
            }
        }
        let s = p.stats();
        assert!(s.idle_bytes <= s.committed_bytes - s.live_bytes.min(s.committed_bytes));
        assert_eq!(p.trim(), s.idle_bytes, "round {round}");
        assert_eq!(p.stats().idle_bytes, 0);
        for b in live {
            p.free(b).unwrap();
        }
        let s = p.stats();
        assert_eq!(
            s.idle_bytes, s.committed_bytes,
            "nothing live: every page idle"
        );
    }
}
