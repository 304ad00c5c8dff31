//! The spec parser: presets, every option, and the errors that name what is wrong.

use aios_device::Device;
use aios_device_emu::{ClockKind, EmuConfig, EmuDevice, EmuError, LatencyModel, Preset};

#[test]
fn presets_parse_to_their_defaults() {
    assert_eq!(EmuConfig::parse("ull").unwrap(), EmuConfig::ull());
    assert_eq!(EmuConfig::parse("nand").unwrap(), EmuConfig::nand());
    assert_eq!(EmuConfig::parse(" instant ").unwrap(), EmuConfig::instant());
    let ull = EmuConfig::ull();
    assert_eq!(ull.preset, Preset::Ull);
    assert_eq!(ull.capacity_bytes, 1 << 30);
    assert_eq!(ull.latency, LatencyModel::ULL);
    assert!(!ull.volatile_cache);
    assert_eq!(ull.clock, ClockKind::Real);
    assert!(!ull.record);
    assert_eq!(ull.prefault, None, "sparse unless the opener chooses");
}

#[test]
fn every_option_is_applied() {
    let c = EmuConfig::parse(
        "ull,size=2G,cache=volatile,channels=8,arena=16M,clock=virtual,record,cache_size=1M,\
         read=7us,write=3us,flush=2ms,flush_block=500ns,bw=1G,prefault",
    )
    .unwrap();
    assert_eq!(c.capacity_bytes, 2 << 30);
    assert!(c.volatile_cache);
    assert_eq!(c.arena_bytes, 16 << 20);
    assert_eq!(c.clock, ClockKind::Virtual);
    assert!(c.record);
    assert_eq!(c.cache_bytes_max, 1 << 20);
    assert_eq!(c.prefault, Some(true));
    assert_eq!(
        c.latency,
        LatencyModel {
            read_ns: 7_000,
            write_ns: 3_000,
            flush_ns: 2_000_000,
            flush_per_dirty_block_ns: 500,
            link_bytes_per_sec: 1_000_000_000,
            channels: 8,
        }
    );
    let nv =
        EmuConfig::parse("nand,cache=nonvolatile,record=off,bw=0,channels=0,prefault=off").unwrap();
    assert!(!nv.volatile_cache && !nv.record);
    assert_eq!(nv.prefault, Some(false));
    assert_eq!(nv.latency.link_bytes_per_sec, 0);
    assert_eq!(nv.latency.channels, 0);
    assert_eq!(nv.name(), "emu:nand,cache=nonvolatile");
}

#[test]
fn errors_name_the_culprit() {
    let err = |spec: &str| EmuConfig::parse(spec).unwrap_err();
    assert!(matches!(err(""), EmuError::EmptySpec));
    assert!(matches!(err("optane"), EmuError::UnknownPreset(p) if p == "optane"));
    let e = err("ull,speed=9");
    assert!(matches!(&e, EmuError::UnknownOption { option } if option == "speed"));
    assert!(
        e.to_string().contains("`speed`") && e.to_string().contains("channels"),
        "{e}"
    );
    let e = err("ull,size=12Q");
    assert!(
        matches!(&e, EmuError::BadValue { option, value, .. } if option == "size" && value == "12Q")
    );
    assert!(e.to_string().contains("size=12Q"), "{e}");
    assert!(
        matches!(err("ull,cache=maybe"), EmuError::BadValue { option, .. } if option == "cache")
    );
    assert!(
        matches!(err("ull,clock=wall"), EmuError::BadValue { option, .. } if option == "clock")
    );
    assert!(
        matches!(err("ull,channels=-1"), EmuError::BadValue { option, .. } if option == "channels")
    );
    assert!(
        matches!(err("ull,read=5 parsecs"), EmuError::BadValue { option, .. } if option == "read")
    );
    assert!(
        matches!(err("ull,record=yes please"), EmuError::BadValue { option, .. } if option == "record")
    );
    assert!(matches!(err("ull,file="), EmuError::BadValue { option, .. } if option == "file"));
    assert!(
        matches!(err("ull,prefault=lazy"), EmuError::BadValue { option, .. } if option == "prefault")
    );
    assert!(matches!(err("ull,size=1G,size=2G"), EmuError::DuplicateOption(o) if o == "size"));
    assert!(
        matches!(err("ull,size=1000"), EmuError::BadConfig(_)),
        "not a multiple of 4096"
    );
    assert!(matches!(err("ull,size=0"), EmuError::BadConfig(_)));
    assert!(
        matches!(err("ull,arena=2G"), EmuError::BadConfig(_)),
        "arena above 1 GiB"
    );
    assert!(matches!(err("ull,channels=100000"), EmuError::BadConfig(_)));
    let e = err("ull,file=/nonexistent/aios.img");
    assert!(e.to_string().contains("/nonexistent/aios.img"), "{e}");
    // Errors convert into the contract's error type, keeping the message.
    let d: aios_device::DeviceError = err("ull,speed=9").into();
    assert!(d.to_string().contains("speed"), "{d}");
}

#[test]
fn file_sets_the_size_and_its_contents_are_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dev.img");
    let mut contents = vec![0u8; 64 << 10];
    contents[8192..12288].fill(0xab);
    std::fs::write(&path, &contents).unwrap();
    let spec = format!("instant,arena=1M,file={}", path.display());
    let c = EmuConfig::parse(&spec).unwrap();
    assert_eq!(c.capacity_bytes, 64 << 10);
    let dev = EmuDevice::new(c).unwrap();
    assert_eq!(dev.info().capacity_bytes, 64 << 10);
    let image = dev.durable_image().unwrap();
    assert_eq!(image.block(2), Some(&[0xab; 4096][..]));
    assert_eq!(
        image.written_blocks().collect::<Vec<_>>(),
        [2],
        "zeros stay sparse"
    );
    // An explicit size may exceed the file (the rest reads zero) but not fall short of it.
    let bigger = EmuDevice::open(&format!("{spec},size=1M")).unwrap();
    assert_eq!(bigger.info().capacity_bytes, 1 << 20);
    let e = EmuDevice::open(&format!("{spec},size=32K")).unwrap_err();
    assert!(matches!(e, EmuError::ImageSize { .. }), "{e}");
    // Backing the images with RAM changes no contents.
    let prefaulted = EmuDevice::open(&format!("{spec},size=1M,prefault=on")).unwrap();
    let sparse = bigger.durable_image().unwrap();
    assert_eq!(prefaulted.durable_image().unwrap(), sparse);
    assert_eq!(prefaulted.current_image().unwrap(), sparse);
    assert_eq!(sparse.block(2), Some(&[0xab; 4096][..]));
}

#[test]
fn prefault_larger_than_the_available_memory_is_refused() {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let available_kib: Option<u64> = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok());
    // Two images of 1 TiB: more than any machine this runs on has free.
    let Some(available_kib) = available_kib.filter(|&kib| kib < 2 << 30) else {
        eprintln!("skipped: MemAvailable unknown or at least 2 TiB");
        return;
    };
    let e = EmuDevice::open("ull,size=1T,arena=1M,prefault=on").unwrap_err();
    assert!(matches!(e, EmuError::BadConfig(_)), "{e}");
    assert!(
        e.to_string().contains("prefault=off"),
        "{e} ({available_kib} KiB free)"
    );
}
