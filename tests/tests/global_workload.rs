//! A real Rust workload with poolside as the global allocator: collections of String,
//! HashMap and Vec built and dropped across threads, with blocks moving between threads.

use poolside::Poolside;
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static GLOBAL: Poolside = Poolside;

fn build_map(seed: u64, n: usize) -> HashMap<String, Vec<u64>> {
    let mut m = HashMap::new();
    let mut x = seed;
    for i in 0..n {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = (x >> 58) as usize;
        m.insert(
            format!("key-{seed}-{i}-{}", "x".repeat(len)),
            (0..len as u64 + i as u64 % 7).collect(),
        );
    }
    m
}

fn checksum(m: &HashMap<String, Vec<u64>>) -> u64 {
    m.iter()
        .map(|(k, v)| k.len() as u64 + v.iter().sum::<u64>())
        .sum()
}

#[test]
fn collections_across_threads() {
    let expected: Vec<u64> = (0..8).map(|t| checksum(&build_map(t, 20_000))).collect();
    let (tx, rx) = mpsc::channel();
    let producers: Vec<_> = (0..8u64)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                let m = build_map(t, 20_000);
                tx.send((t, m)).unwrap();
            })
        })
        .collect();
    drop(tx);
    // The consumer frees maps built (and allocated) by other threads.
    let consumer = thread::spawn(move || {
        let mut sums = vec![0u64; 8];
        for (t, m) in rx {
            sums[t as usize] = checksum(&m);
            drop(m);
        }
        sums
    });
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(consumer.join().unwrap(), expected);
}

#[test]
fn growing_and_shrinking_vectors_and_strings() {
    let mut v: Vec<Vec<u8>> = Vec::new();
    for i in 0..2000usize {
        let mut s = String::new();
        for j in 0..(i % 300) {
            s.push_str(&j.to_string());
        }
        let mut b = s.into_bytes();
        b.shrink_to_fit();
        v.push(b);
    }
    let mut big: Vec<u64> = Vec::new();
    for i in 0..3_000_000u64 {
        big.push(i);
    }
    assert_eq!(big.iter().sum::<u64>(), 3_000_000 * 2_999_999 / 2);
    let mut t = BTreeMap::new();
    for (i, b) in v.iter().enumerate() {
        t.insert(i, b.len());
    }
    assert_eq!(t.len(), 2000);
    assert!(v
        .iter()
        .enumerate()
        .all(|(i, b)| b.len() == (0..(i % 300)).map(|j| j.to_string().len()).sum::<usize>()));
}
