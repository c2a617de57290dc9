//! Large buffers backed by transparent huge pages where the kernel allows it on request.
//!
//! Filling a fresh buffer costs one page fault per 4 KiB page, about 2 µs each on a VM: a
//! million-triangle mesh and the check's working arrays take over 20,000 of them, more than the
//! rest of the check. Asking for huge pages makes that one fault per 2 MiB (measured: filling
//! 49 MiB took 12 ms instead of 30 ms). Many systems, Debian's and Ubuntu's defaults among them,
//! only give huge pages to memory that asks for them (`transparent_hugepage=madvise`).

/// Buffers below this size are left alone: they gain little and may share pages with others.
const MIN_BYTES: usize = 2 << 20;

/// A vector of `len` zeros whose pages are not yet touched when the allocator maps it afresh,
/// advised to use huge pages when large (`calloc` leaves fresh mappings untouched, so the
/// advice applies before the first fault).
pub(crate) fn zeroed<T: Clone + Default>(len: usize) -> Vec<T> {
    let mut v = vec![T::default(); len];
    advise_huge(&mut v);
    v
}

/// An empty vector with room for `len` items, advised to use huge pages when large.
pub(crate) fn with_capacity<T>(len: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    advise_huge(v.spare_capacity_mut());
    v
}

#[cfg(target_os = "linux")]
fn advise_huge<T>(buf: &mut [T]) {
    const HUGE_PAGE: usize = 2 << 20;
    let bytes = std::mem::size_of_val(buf);
    if bytes < MIN_BYTES {
        return;
    }
    // Only whole, aligned huge pages inside the buffer can be huge; advising just those keeps
    // the advice off neighbouring allocations.
    let start = buf.as_mut_ptr() as usize;
    let first = start.next_multiple_of(HUGE_PAGE);
    let end = (start + bytes) / HUGE_PAGE * HUGE_PAGE;
    if end > first {
        // SAFETY: the range lies inside `buf`, which this function borrows mutably; the advice
        // changes neither the mapping's contents nor its validity. Failure (e.g. a kernel
        // without transparent huge pages) only means ordinary pages, so the result is ignored.
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge<T>(_buf: &mut [T]) {}

#[cfg(test)]
mod tests {
    #[test]
    fn buffers_are_usable_whatever_the_advice() {
        let v: Vec<u32> = super::zeroed(3 << 20);
        assert!(v.iter().all(|&x| x == 0));
        let mut w: Vec<u64> = super::with_capacity(1 << 20);
        w.extend(0..1 << 20);
        assert_eq!(w[12345], 12345);
    }
}
