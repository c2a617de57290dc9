//! Large buffers backed by transparent huge pages where the kernel allows it on request.
//!
//! Filling a fresh buffer costs one page fault per 4 KiB page, about 2 µs each on a VM: a
//! million-triangle mesh and the check's working arrays take over 20,000 of them, more than the
//! rest of the check. Asking for huge pages makes that one fault per 2 MiB (measured: filling
//! 49 MiB took 12 ms instead of 30 ms). Many systems, Debian's and Ubuntu's defaults among them,
//! only give huge pages to memory that asks for them (`transparent_hugepage=madvise`).
//!
//! Even with huge pages the kernel zeroes every fresh page, so the check's large working
//! buffers are [`Buf`]s, kept in small pools for the next check.

use std::sync::{Mutex, MutexGuard};

/// Buffers below this size are left alone: they gain little and may share pages with others.
const MIN_BYTES: usize = 2 << 20;

/// Bytes of working buffers kept for the next check, per element type (three types): enough
/// for a check of about a million triangles (25 MiB of `u32`, 12 of `u64`, 12 of corners),
/// bounded so that a huge mesh does not pin its memory in a long-running server.
const MAX_RETAINED_BYTES: usize = 32 << 20;
/// Buffers kept per element type (a check uses at most six of one type at a time).
const MAX_RETAINED_BUFFERS: usize = 8;

/// Element types of reusable working buffers, each with its own pool.
pub(crate) trait Reusable: Copy + Default + Send + 'static {
    fn pool() -> &'static Mutex<Vec<Vec<Self>>>;
}

macro_rules! reusable {
    ($($t:ty),*) => {$(
        impl Reusable for $t {
            fn pool() -> &'static Mutex<Vec<Vec<Self>>> {
                static POOL: Mutex<Vec<Vec<$t>>> = Mutex::new(Vec::new());
                &POOL
            }
        }
    )*};
}
reusable!(u32, u64, [u32; 3]);
#[cfg(test)]
reusable!(u16);

/// A zero-filled working buffer that goes back to its pool when dropped, so that the next
/// check writes into memory that is already mapped: a fresh buffer costs page faults and the
/// kernel's zeroing of every page, which was a quarter of a repeated check's CPU time and
/// most of its run-to-run spread.
pub(crate) struct Buf<T: Reusable>(Vec<T>);

impl<T: Reusable> Buf<T> {
    /// `len` zeros, in a retained buffer when one is large enough.
    pub(crate) fn zeroed(len: usize) -> Self {
        let reused = {
            let mut pool = lock(T::pool());
            // The smallest buffer that fits, so large ones stay for large requests.
            let best = (0..pool.len())
                .filter(|&i| pool[i].capacity() >= len)
                .min_by_key(|&i| pool[i].capacity());
            best.map(|i| pool.swap_remove(i))
        };
        match reused {
            Some(mut v) => {
                v.clear();
                v.resize(len, T::default());
                Buf(v)
            }
            None => Buf(zeroed(len)),
        }
    }

    /// The vector, which then no longer returns to the pool.
    pub(crate) fn into_vec(mut self) -> Vec<T> {
        std::mem::take(&mut self.0)
    }
}

impl<T: Reusable> Drop for Buf<T> {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        let bytes = v.capacity() * std::mem::size_of::<T>();
        if bytes < MIN_BYTES {
            return;
        }
        let mut pool = lock(T::pool());
        let retained: usize = pool
            .iter()
            .map(|b| b.capacity() * std::mem::size_of::<T>())
            .sum();
        if pool.len() < MAX_RETAINED_BUFFERS && retained + bytes <= MAX_RETAINED_BYTES {
            pool.push(v);
        }
    }
}

impl<T: Reusable> std::ops::Deref for Buf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: Reusable> std::ops::DerefMut for Buf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

/// A vector that returns to the pool when dropped (when large enough to be worth keeping).
impl<T: Reusable> From<Vec<T>> for Buf<T> {
    fn from(v: Vec<T>) -> Self {
        Buf(v)
    }
}

/// A pool's lock; a panic while holding it cannot leave the list of buffers inconsistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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

/// Reads a whole file into one buffer of its size, advised to use huge pages when large: with
/// 4 KiB pages, faulting in a fresh 52 MB buffer cost more than copying the file into it
/// (measured: 27 ms with `std::fs::read`, 11.5 ms this way). Refuses a file over `max_bytes`
/// before reading it.
pub fn read_file(path: &std::path::Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > max_bytes {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("{len} bytes is over the limit of {max_bytes} bytes"),
        ));
    }
    // One spare byte: read_to_end then sees the end of the file without growing the buffer.
    let mut bytes = with_capacity(usize::try_from(len).unwrap_or(usize::MAX).saturating_add(1));
    // `take`: a file that grows while it is read still stops at the limit.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("the file grew over the limit of {max_bytes} bytes while it was read"),
        ));
    }
    Ok(bytes)
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // madvise: the one system call here without a safe wrapper.
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
    fn read_file_reads_whole_files_and_refuses_large_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let data: Vec<u8> = (0..(3u32 << 20)).map(|i| i as u8).collect();
        std::fs::write(&path, &data).unwrap();
        assert_eq!(super::read_file(&path, 3 << 20).unwrap(), data);
        let err = super::read_file(&path, (3 << 20) - 1).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge);
        assert!(super::read_file(&dir.path().join("missing"), 10).is_err());
    }

    #[test]
    fn pooled_buffers_come_back_zeroed() {
        use super::Buf;
        // A type only this test pools, so parallel tests cannot take this buffer.
        let len = 2 << 20;
        let mut a: Buf<u16> = Buf::zeroed(len);
        a[7] = 9;
        let ptr = a.as_ptr();
        drop(a);
        let b: Buf<u16> = Buf::zeroed(len - 5);
        assert_eq!(b.as_ptr(), ptr, "the retained buffer is reused");
        assert_eq!(b.len(), len - 5);
        assert!(b.iter().all(|&c| c == 0));
        // Too small to be worth keeping: not retained.
        drop(Buf::<u16>::zeroed(100));
        assert!(
            super::lock(<u16 as super::Reusable>::pool())
                .iter()
                .all(|v| v.capacity() >= len)
        );
        let v = b.into_vec();
        assert_eq!(v.len(), len - 5);
    }

    #[test]
    fn buffers_are_usable_whatever_the_advice() {
        let v: Vec<u32> = super::zeroed(3 << 20);
        assert!(v.iter().all(|&x| x == 0));
        let mut w: Vec<u64> = super::with_capacity(1 << 20);
        w.extend(0..1 << 20);
        assert_eq!(w[12345], 12345);
    }
}
