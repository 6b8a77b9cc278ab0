//! The page lists of a heap bin: the bin list (pages that have or may get free blocks,
//! the current page at its head) and the full list (pages with no free block). Both are
//! doubly linked through the pages' `next`/`prev`; an empty bin list holds the sentinel.

use super::{sentinel, set_current, Heap};
use crate::host::page::{Page, IN_USE};
use core::ptr;

/// Makes `page` the current page of class `c`.
///
/// # Safety
/// `heap` is the calling thread's heap; `page` is one of its pages, in no list.
pub unsafe fn push_front(heap: *mut Heap, c: usize, page: *mut Page) {
    // SAFETY: list manipulation on this thread's heap and pages.
    unsafe {
        let bin = &mut (*heap).bins[c];
        let head = bin.page;
        (*page).prev = ptr::null_mut();
        if head == sentinel() {
            (*page).next = ptr::null_mut();
            bin.tail = page;
        } else {
            (*page).next = head;
            (*head).prev = page;
        }
        set_current(heap, c, page);
        debug_assert!((*page).flags & IN_USE != 0);
    }
}

/// Appends `page` to the bin list of class `c`.
///
/// # Safety
/// As for [`push_front`].
pub unsafe fn push_back(heap: *mut Heap, c: usize, page: *mut Page) {
    // SAFETY: list manipulation on this thread's heap and pages.
    unsafe {
        let tail = (*heap).bins[c].tail;
        (*page).next = ptr::null_mut();
        (*page).prev = tail;
        if tail.is_null() {
            set_current(heap, c, page);
        } else {
            (*tail).next = page;
        }
        (*heap).bins[c].tail = page;
    }
}

/// Removes `page` from the bin list of class `c`.
///
/// # Safety
/// `heap` is the calling thread's heap and `page` is in its bin list `c`.
pub unsafe fn unlink(heap: *mut Heap, c: usize, page: *mut Page) {
    // SAFETY: list manipulation on this thread's heap and pages.
    unsafe {
        let (prev, next) = ((*page).prev, (*page).next);
        if prev.is_null() {
            set_current(heap, c, if next.is_null() { sentinel() } else { next });
        } else {
            (*prev).next = next;
        }
        if next.is_null() {
            (*heap).bins[c].tail = prev;
        } else {
            (*next).prev = prev;
        }
        (*page).next = ptr::null_mut();
        (*page).prev = ptr::null_mut();
    }
}

/// Pushes `page` onto the full list of class `c`.
///
/// # Safety
/// As for [`push_front`].
pub unsafe fn full_push(heap: *mut Heap, c: usize, page: *mut Page) {
    // SAFETY: list manipulation on this thread's heap and pages.
    unsafe {
        let bin = &mut (*heap).bins[c];
        let head = bin.full;
        (*page).prev = ptr::null_mut();
        (*page).next = head;
        if !head.is_null() {
            (*head).prev = page;
        }
        bin.full = page;
    }
}

/// Removes `page` from the full list of class `c`.
///
/// # Safety
/// `heap` is the calling thread's heap and `page` is in its full list `c`.
pub unsafe fn full_unlink(heap: *mut Heap, c: usize, page: *mut Page) {
    // SAFETY: list manipulation on this thread's heap and pages.
    unsafe {
        let (prev, next) = ((*page).prev, (*page).next);
        if prev.is_null() {
            (*heap).bins[c].full = next;
        } else {
            (*prev).next = next;
        }
        if !next.is_null() {
            (*next).prev = prev;
        }
        (*page).next = ptr::null_mut();
        (*page).prev = ptr::null_mut();
    }
}

/// Calls `f` on each page of the list that starts at `p` and ends at null or the sentinel.
///
/// # Safety
/// The list is one of the calling thread's heap (or of a parked heap under the pool
/// lock), and `f` does not unlink any page but the one it is given.
unsafe fn walk(mut p: *mut Page, mut f: impl FnMut(*mut Page)) {
    // SAFETY: forwarded; `next` is read before `f` may unlink the page.
    unsafe {
        while p != sentinel() && !p.is_null() {
            let next = (*p).next;
            f(p);
            p = next;
        }
    }
}

/// Calls `f` on every page of the bin list of class `c`: the pages that have or may get
/// free blocks, the full ones left out.
///
/// # Safety
/// `heap` is the calling thread's heap (or a parked heap under the pool lock), and `f`
/// does not unlink any page but the one it is given.
pub unsafe fn for_each_open_page(heap: *mut Heap, c: usize, f: impl FnMut(*mut Page)) {
    // SAFETY: forwarded.
    unsafe { walk((*heap).bins[c].page, f) }
}

/// Calls `f` on every page of class `c` (bin list, then full list); for tests.
///
/// # Safety
/// As for [`for_each_open_page`].
#[cfg(test)]
pub unsafe fn for_each_page(heap: *mut Heap, c: usize, mut f: impl FnMut(*mut Page)) {
    // SAFETY: forwarded.
    unsafe {
        walk((*heap).bins[c].page, &mut f);
        walk((*heap).bins[c].full, f);
    }
}
