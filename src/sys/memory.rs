//! Giving freed heap memory back to the kernel.

/// Returns the free memory of every malloc arena to the kernel
/// (`malloc_trim(0)`): glibc keeps what threads freed in their arenas, so
/// after thousands of pairs have come and gone RSS stays high without it.
/// Costs a walk over the arenas; call it when the process goes idle, not
/// per connection.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_heap() {
    // SAFETY: malloc_trim only reorganises the allocator's own free lists
    // under its locks; any thread may call it at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other C libraries (musl's malloc returns memory by itself) have no
/// `malloc_trim`: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_heap() {}

#[cfg(test)]
mod tests {
    #[test]
    fn can_be_called_from_any_thread() {
        let v: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 64 * 1024]).collect();
        drop(v);
        std::thread::spawn(super::release_free_heap).join().unwrap();
        super::release_free_heap();
    }
}
