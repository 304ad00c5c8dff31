//! What a front end names on its command line, parsed in one place: a device by a spec string
//! that picks the backend and its target, and byte sizes with binary suffixes. The `aios`
//! command, its benchmarks and any later front end (the Rust API's mount options, the preload
//! library's environment) read devices and sizes through this crate, so `emu:ull` means the same
//! thing everywhere.
//!
//! | Module | What |
//! | --- | --- |
//! | [`device`] | [`DeviceSpec`] (`uring:PATH`, `psync:PATH`, `emu:PRESET[,opt=val]`, `null`), [`OpenDevice`] and [`with_device!`] |
//! | [`size`] | [`parse_size`] (`4k`, `128K`, `1G`) and [`show_size`] |
//!
//! It depends on the device contract and its backends only: nothing above the device layer.

pub mod device;
pub mod size;

pub use device::{DeviceSpec, OpenDevice, BENCH_ARENA_BYTES};
pub use size::{parse_size, show_size};
