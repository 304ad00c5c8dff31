//! The shared contract suite ([`aios_device::contract::run_all`]) on the emulator's presets and
//! clocks.

use aios_device_emu::EmuDevice;

fn run(spec: &str) {
    let dev = EmuDevice::open(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    aios_device::contract::run_all(&dev);
}

#[test]
fn contract_instant_volatile() {
    run("instant,size=16M,arena=8M");
}

#[test]
fn contract_ull_real_clock() {
    run("ull,size=16M,arena=8M,clock=real");
}

#[test]
fn contract_ull_real_clock_prefaulted() {
    run("ull,size=16M,arena=8M,clock=real,prefault=on");
}

#[test]
fn contract_ull_virtual_clock() {
    run("ull,size=16M,arena=8M,clock=virtual");
}

#[test]
fn contract_nand_virtual_clock_recording() {
    run("nand,size=16M,arena=8M,clock=virtual,record");
}
