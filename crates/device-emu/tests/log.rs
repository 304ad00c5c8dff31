//! The write log: its shape, its crash points, and replays that rebuild exactly the live crash
//! states.

mod common;

use aios_device_emu::{BlockWrite, CrashPoint, DiskImage, EmuError, EventKind, LoggedCommand};
use common::{pattern, patterns, Driver};

/// Live crash state == replayed crash state at the same time, for a few seeds.
fn assert_log_matches_live(d: &Driver, context: &str) {
    let log = d.dev.log().unwrap();
    let point = log.point_at(d.dev.now_ns());
    assert_eq!(
        point.events,
        log.events().len(),
        "{context}: the log holds everything up to now"
    );
    let replay = log.replay_to(point).unwrap();
    assert_eq!(replay.candidates(), d.dev.crash_candidates(), "{context}");
    assert_eq!(
        *replay.durable_image(),
        d.dev.durable_image().unwrap(),
        "{context}"
    );
    for seed in 0..8 {
        assert_eq!(
            replay.image_seeded(seed).unwrap(),
            d.dev.crash(seed).unwrap(),
            "{context} seed {seed}"
        );
    }
}

#[test]
fn replays_rebuild_the_live_crash_states() {
    let mut d = Driver::open("nand,size=1M,arena=4M,clock=virtual,record");
    for round in 0..12u64 {
        for i in 0..4 {
            let block = (round * 5 + i * 7) % 64;
            d.push_write(
                block,
                &patterns(round * 4 + i, 1 + i % 3),
                i == 3 && round % 2 == 0,
            );
        }
        if round % 3 == 1 {
            d.push_flush();
        }
        d.submit();
        assert_log_matches_live(&d, &format!("round {round} submitted"));
        d.reap(2);
        assert_log_matches_live(&d, &format!("round {round} half reaped"));
    }
    d.reap_all();
    assert_log_matches_live(&d, "all reaped");
}

#[test]
fn the_log_has_commands_in_submission_order_and_events_in_canonical_order() {
    let mut d = Driver::open("ull,size=1M,arena=1M,clock=virtual,cache=volatile,record");
    d.push_write(0, &pattern(1, 0), false); // 6 us
    d.push_flush(); // 1 us, issued while the write is in flight
    d.submit();
    d.reap_all();
    d.write(1, &patterns(2, 2), true).unwrap(); // 6 us + 1 us more link
    let log = d.dev.log().unwrap();
    assert!(log.volatile_cache());
    assert_eq!(log.base_image(), &DiskImage::zeroed(1 << 20).unwrap());
    assert_eq!(log.commands().len(), 3);
    assert!(matches!(
        &log.commands()[0],
        LoggedCommand::Write { offset_bytes: 0, fua: false, submit_ns: 0, complete_ns: 6_000, data }
            if **data == pattern(1, 0)[..]
    ));
    assert_eq!(
        log.commands()[1],
        LoggedCommand::Flush {
            submit_ns: 0,
            complete_ns: 1_000,
            implicit: false
        }
    );
    let events: Vec<(u64, EventKind, u64)> = log
        .events()
        .iter()
        .map(|e| (e.id, e.kind, e.time_ns))
        .collect();
    use EventKind::{Complete, Submit};
    assert_eq!(
        events,
        [
            (1, Submit, 0),
            (2, Submit, 0),
            (2, Complete, 1_000),
            (1, Complete, 6_000),
            (3, Submit, 6_000),
            (3, Complete, 6_000 + 7_000),
        ]
    );
    assert_eq!(log.crash_times_ns(), [0, 1_000, 6_000, 13_000]);
    assert_eq!(log.crash_points().len(), 7);
    assert_eq!(
        log.point_at(5_999),
        CrashPoint {
            events: 3,
            time_ns: 1_000
        }
    );
    assert_eq!(
        log.point_at(6_000),
        CrashPoint {
            events: 5,
            time_ns: 6_000
        }
    );
}

#[test]
fn crash_points_walk_through_durability() {
    // instant: every command completes at its own submission time, before the next one.
    let mut d = Driver::open("instant,size=1M,arena=1M,clock=virtual,record");
    d.write(0, &pattern(1, 0), false).unwrap();
    d.flush().unwrap();
    d.write(0, &pattern(3, 0), true).unwrap();
    d.write(1, &pattern(4, 0), false).unwrap();
    let log = d.dev.log().unwrap();
    let points = log.crash_points();
    assert_eq!(points.len(), 9, "4 commands, 8 events");
    assert!(
        points.iter().all(|p| p.time_ns == 0),
        "all at time 0, still distinct points"
    );
    let c = |write_id, block| BlockWrite { write_id, block };
    // (candidates, durable writes) after each number of events.
    let expected: [(&[BlockWrite], &[u64]); 9] = [
        (&[], &[]),
        (&[c(1, 0)], &[]),     // write 1 submitted
        (&[c(1, 0)], &[]),     // completed, in the volatile cache
        (&[c(1, 0)], &[]),     // flush submitted, covers it
        (&[], &[1]),           // flush completed
        (&[c(3, 0)], &[1]),    // FUA write submitted
        (&[], &[1, 3]),        // completed: durable
        (&[c(4, 1)], &[1, 3]), // write 4 submitted
        (&[c(4, 1)], &[1, 3]), // completed, not flushed
    ];
    let mut replay = log.replay().unwrap();
    for (point, (candidates, durable)) in points.iter().zip(expected) {
        replay.advance_to(*point).unwrap();
        assert_eq!(replay.point(), *point);
        assert_eq!(replay.candidates(), candidates, "at {point:?}");
        assert_eq!(replay.durable_writes(), durable, "at {point:?}");
    }
    // Keep everything: what reads saw. Keep nothing: the durable image.
    assert_eq!(
        replay.image_subset(&[true]).unwrap(),
        d.dev.current_image().unwrap()
    );
    assert_eq!(
        replay.image_subset(&[false]).unwrap(),
        d.dev.durable_image().unwrap()
    );
    let img = replay.image_with(|_| true).unwrap();
    assert_eq!(img.block(1).unwrap(), &pattern(4, 0)[..]);
    assert_eq!(img.block(0).unwrap(), &pattern(3, 0)[..]);
}

#[test]
fn keep_all_is_the_current_image_and_keep_none_the_durable_one() {
    let mut d = Driver::open("nand,size=1M,arena=4M,clock=virtual");
    for i in 0..30u64 {
        d.push_write((i * 3) % 20, &patterns(i, 1 + i % 4), i % 7 == 0);
        if i % 9 == 4 {
            d.push_flush();
        }
        d.submit();
        if i % 2 == 0 {
            d.reap(1);
        }
        assert_eq!(
            d.dev.crash_with(|_| true).unwrap(),
            d.dev.current_image().unwrap(),
            "after {i}"
        );
        assert_eq!(
            d.dev.crash_with(|_| false).unwrap(),
            d.dev.durable_image().unwrap()
        );
    }
    d.reap_all();
}

#[test]
fn misuse_is_a_typed_error() {
    let mut plain = Driver::open("instant,size=1M,arena=1M");
    plain.write(0, &pattern(1, 0), false).unwrap();
    assert!(matches!(plain.dev.log(), Err(EmuError::NotRecording)));
    assert!(matches!(
        plain.dev.advance_clock_to(5),
        Err(EmuError::RealClock)
    ));

    let mut d = Driver::open("instant,size=1M,arena=1M,clock=virtual,record");
    d.write(0, &pattern(1, 0), false).unwrap();
    let log = d.dev.log().unwrap();
    let end = log.point(usize::MAX);
    assert_eq!(end.events, 2, "clamped");
    let mut replay = log.replay_to(end).unwrap();
    assert!(matches!(
        replay.advance_to(log.point(0)),
        Err(EmuError::ReplayBackwards {
            at: 2,
            requested: 0
        })
    ));
    let beyond = CrashPoint {
        events: 3,
        time_ns: 0,
    };
    assert!(matches!(
        replay.advance_to(beyond),
        Err(EmuError::BadCrashPoint { .. })
    ));
    assert!(matches!(
        replay.image_subset(&[true, true]),
        Err(EmuError::SubsetLength {
            given: 2,
            candidates: 1
        })
    ));
    assert!(log.command(0).is_none() && log.command(3).is_none());
    assert_eq!(
        log.command(1)
            .map(|c| matches!(c, LoggedCommand::Write { .. })),
        Some(true)
    );
}
