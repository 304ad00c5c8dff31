//! cargo-fuzz target: `aios_fuzz::targets::inode` (see its documentation for the input layout).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = aios_fuzz::targets::inode(data);
});
