//! The heap's direct slots (what C's malloc reads for requests up to 1 KiB) always hold
//! the current page of each slot's natural class, whatever pages fill, empty, return to
//! the arena or come back: every write of a current page goes through one function,
//! and this checks the result after churn over every small size.

use poolside::host::{heap, tls};

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[test]
fn direct_slots_follow_the_current_pages() {
    std::thread::spawn(|| {
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut live: Vec<*mut u8> = vec![std::ptr::null_mut(); 20_000];
        for round in 0..6 {
            for _ in 0..200_000 {
                let r = xorshift(&mut rng);
                let k = (r >> 40) as usize % live.len();
                if !live[k].is_null() {
                    // SAFETY: a live block of ours, freed once.
                    unsafe { poolside::free(live[k]) };
                    live[k] = std::ptr::null_mut();
                }
                if !r.is_multiple_of(3) {
                    let size = (r % 1100) as usize;
                    let p = poolside::alloc(size, if r.is_multiple_of(5) { 16 } else { 8 });
                    assert!(!p.is_null());
                    live[k] = p;
                }
            }
            if round % 2 == 1 {
                // Everything freed: pages empty and go back to the arena.
                for p in live.iter_mut().filter(|p| !p.is_null()) {
                    // SAFETY: as above.
                    unsafe { poolside::free(*p) };
                    *p = std::ptr::null_mut();
                }
                poolside::collect(round == 5);
            }
            let h = tls::get();
            assert!(!h.is_null());
            // SAFETY: this thread's own heap.
            assert!(unsafe { heap::direct_slots_agree(h) }, "round {round}");
        }
    })
    .join()
    .unwrap();
}

#[test]
fn a_full_page_that_gets_a_block_back_into_an_empty_bin_is_current_in_both() {
    std::thread::spawn(|| {
        // 64 B blocks, 1,024 to a 64 KiB page: three pages' worth, all live (the first
        // pages full), then the last page's blocks freed and a forced collect, which
        // returns the empty current page and leaves the class's bin list empty.
        let blocks: Vec<*mut u8> = (0..3 * 1024).map(|_| poolside::alloc(64, 8)).collect();
        for &p in &blocks[2 * 1024..] {
            // SAFETY: live blocks of ours, freed once.
            unsafe { poolside::free(p) };
        }
        poolside::collect(true);
        // A block back to a full page: it joins the (empty) bin list and becomes current.
        // SAFETY: as above.
        unsafe { poolside::free(blocks[0]) };
        let h = tls::get();
        // SAFETY: this thread's own heap.
        assert!(unsafe { heap::direct_slots_agree(h) });
        for &p in &blocks[1..2 * 1024] {
            // SAFETY: as above.
            unsafe { poolside::free(p) };
        }
        // SAFETY: as above.
        assert!(unsafe { heap::direct_slots_agree(h) });
    })
    .join()
    .unwrap();
}
