//! The per-thread check of one recovered crash image: the thread's directory is its model
//! after some prefix of its ops that holds everything acknowledged before the crash.
//!
//! # The rule ([`Judge::check`])
//! For thread `t` with counters read around the crash ([`Counters`]): `acked` ops had returned
//! before it (read before), `started` had begun by its end (read after, plus the op under
//! way), and some sync had covered the first `floor`. The durable bound is
//! `max(bound_after[acked], floor)` (`worker`: `sync` at op `j` needs `j`, `fsync(p)` the last
//! op touching `p`'s inode, `fdatasync(p)` the last remapping it, or touching it in
//! `data=journal`). The directory must equal the model after some `b` in `bound..=started`:
//! names, types, symlink targets, shared inodes, link counts (the directory's own too), sizes
//! and bytes; in `data=ordered` a byte may instead hold what an op in `b..started` put there
//! in place (`check.rs`'s rule). Bytes an acknowledged `fdatasync` made durable in place must
//! be there when its write is not in the prefix (or an in-place op after that write overwrote
//! them). Every file's records are zeros or its own tags (ids differ per thread).
//!
//! # Across threads ([`cross_thread_order`])
//! Each op takes a global stamp when it starts and when it returns. If thread B's op began
//! after thread A's op returned, B's op joined a transaction no earlier than A's; so once B's
//! least matching prefix holds that op, A's prefix must hold its op. The check looks for one
//! matching prefix per thread meeting all such pairs. It assumes every op that changes what
//! the model sees joins the running transaction when it is applied (an overwrite too: it
//! changes the inode's times), and takes a thread's least matching prefix, so an op whose
//! bytes show only in place (ordered mode, or an `fdatasync` without a commit) constrains
//! nobody.
//!
//! # What the per-thread prefixes do not cover
//! - Ops that overlapped in time may land in either order: nothing is demanded of them.
//! - A prefix holds an op's effect, not its transaction: an op that changes nothing visible
//!   (a sync, a truncate to the same size) constrains nobody.
//! - Durability across threads comes only from `sync` (`floor`); an `fsync` covering another
//!   thread's ops through a shared transaction is not demanded.
//! - The model ignores modes, times and free-space counts (`e2fsck -fn` checks those counts).

use std::collections::{BTreeMap, BTreeSet};

use crate::check::{check_tags, record_at};
use crate::model::{tag_record, Model, Node, Op, Tag, RECORD_BYTES};
use crate::recover::{Seen, Tree};

use super::worker::{thread_dir, ThreadLog};

/// One thread's counters around one crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub acked: usize,
    pub floor: usize,
    pub started: usize,
}

/// Checks one thread's crashes in time order, rolling its model forward once.
pub struct Judge<'a> {
    log: &'a ThreadLog,
    ordered: bool,
    /// The model after `at` ops (never past a bound still to check).
    base: Model,
    at: usize,
}

impl<'a> Judge<'a> {
    pub fn new(log: &'a ThreadLog, ordered: bool) -> Judge<'a> {
        Judge {
            log,
            ordered,
            base: Model::with_id_base(super::worker::id_base(log.thread)),
            at: 0,
        }
    }

    /// The durable bound for `c` (capped to the ops logged).
    pub fn bound(&self, c: Counters) -> usize {
        let n = self.log.steps.len();
        let own = self
            .log
            .bound_after
            .get(c.acked.min(n))
            .copied()
            .unwrap_or(0);
        own.max(c.floor).min(n)
    }

    /// Whether `c` makes the check demand something acknowledged (not vacuous).
    pub fn demands(&self, c: Counters) -> bool {
        self.bound(c) > 0 || self.log.needs.iter().any(|n| n.sync_op < c.acked)
    }

    fn advance(&mut self, to: usize) -> Result<(), String> {
        while self.at < to {
            let step = &self.log.steps[self.at];
            self.base.apply(&step.op)?;
            self.at += 1;
        }
        Ok(())
    }

    /// Checks `tree` for this thread (see the module documentation).
    pub fn check(&mut self, tree: &Tree, c: Counters) -> Result<(), String> {
        self.prefixes(tree, c).map(drop)
    }

    /// Every prefix of the window `tree` matches for this thread (at least one, else `Err`
    /// with the nearest misses). Calls must come with non-decreasing bounds (crashes in the
    /// order they were taken).
    pub fn prefixes(&mut self, tree: &Tree, c: Counters) -> Result<Vec<usize>, String> {
        let n = self.log.steps.len();
        let b_min = self.bound(c);
        let started = c.started.min(n);
        if b_min < self.at {
            return Err(format!("internal: bound {b_min} below {}", self.at));
        }
        self.advance(b_min)?;
        let (dir, sub) = subtree(tree, &thread_dir(self.log.thread));
        let mut m = self.base.clone();
        let mut why = Vec::new();
        let mut matching = Vec::new();
        for b in b_min..=started.max(b_min) {
            if b > b_min {
                m.apply(&self.log.steps[b - 1].op)?;
            }
            match self.matches(&m, b, dir, &sub, c) {
                Ok(()) => matching.push(b),
                Err(e) => why.push(format!("prefix {b}: {e}")),
            }
        }
        if !matching.is_empty() {
            return Ok(matching);
        }
        // The nearest prefixes explain best; a long window would drown the message.
        let shown: Vec<&str> = why.iter().take(3).map(|s| s.as_str()).collect();
        Err(format!(
            "thread {}: no allowed prefix (acked {}, floor {}, bound {b_min}, started {started}, \
             {} tried):\n    {}",
            self.log.thread,
            c.acked,
            c.floor,
            why.len(),
            shown.join("\n    ")
        ))
    }

    /// Whether op `k` may have left `byte` at `at` of model inode `id` in place.
    fn in_place(&self, k: usize, id: u32, at: u64, byte: u8) -> bool {
        let Some(step) = self.log.steps.get(k) else {
            return false;
        };
        if step.target != Some(id) {
            return false;
        }
        match step.op {
            Op::Write {
                offset,
                len,
                generation,
                ..
            } => at >= offset && at < offset + len as u64 && tag_byte(id, generation, at) == byte,
            Op::Truncate(_, size) => byte == 0 && at >= size && at < size.next_multiple_of(4096),
            _ => false,
        }
    }

    fn matches(
        &self,
        m: &Model,
        b: usize,
        dir: Option<&Seen>,
        sub: &BTreeMap<String, &Seen>,
        c: Counters,
    ) -> Result<(), String> {
        let started = c.started.min(self.log.steps.len());
        match dir {
            Some(Seen {
                node: Node::Dir,
                nlink,
                ..
            }) if usize::from(*nlink) == 2 + m.subdirs("") => {}
            other => return Err(format!("its directory is {other:?}")),
        }
        let missing: Vec<&String> = m.ns.keys().filter(|k| !sub.contains_key(*k)).collect();
        let extra: Vec<&String> = sub.keys().filter(|k| !m.ns.contains_key(*k)).collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(format!("names: missing {missing:?}, extra {extra:?}"));
        }
        let mut inos = BTreeMap::new();
        for (p, seen) in sub {
            let (Some(&id), Some(w)) = (m.ns.get(p), m.get(p)) else {
                return Err(format!("{p}: not in the model"));
            };
            if *inos.entry(id).or_insert(seen.ino) != seen.ino {
                return Err(format!("{p}: not the inode its hard links have"));
            }
            let links = match w {
                Node::Dir => 2 + m.subdirs(p),
                _ => m.names_of(id),
            };
            if usize::from(seen.nlink) != links {
                return Err(format!("{p}: {} links, want {links}", seen.nlink));
            }
            match (&seen.node, w) {
                (Node::Dir, Node::Dir) => {}
                (Node::Symlink(g), Node::Symlink(t)) if g == t => {}
                (Node::File(g), Node::File(t)) => self.same_bytes(p, id, g, t, b..started)?,
                (g, w) => return Err(format!("{p}: {} instead of {}", g.kind(), w.kind())),
            }
        }
        let distinct: BTreeSet<&u32> = inos.values().collect();
        if distinct.len() != inos.len() {
            return Err("two model inodes share one recovered inode".into());
        }
        self.needs_hold(m, b, sub, c)
    }

    /// File bytes: tags first, then the model's bytes (or, in `data=ordered`, what an op in
    /// `ahead` left in place).
    fn same_bytes(
        &self,
        p: &str,
        id: u32,
        got: &[u8],
        want: &[u8],
        ahead: std::ops::Range<usize>,
    ) -> Result<(), String> {
        if got.len() != want.len() {
            return Err(format!("{p}: {} bytes, want {}", got.len(), want.len()));
        }
        check_tags(p, id, got)?;
        if got == want {
            return Ok(());
        }
        let allowed = |i: usize| {
            self.ordered
                && ahead
                    .clone()
                    .any(|k| self.in_place(k, id, i as u64, got[i]))
        };
        match (0..got.len()).find(|&i| got[i] != want[i] && !allowed(i)) {
            None => Ok(()),
            Some(i) => Err(format!(
                "{p}: byte {i} is {:#04x} ({}), want {:#04x} ({})",
                got[i],
                record_at(got, i),
                want[i],
                record_at(want, i)
            )),
        }
    }

    /// The bytes acknowledged `fdatasync`s made durable whose write is not in prefix `b`.
    fn needs_hold(
        &self,
        m: &Model,
        b: usize,
        sub: &BTreeMap<String, &Seen>,
        c: Counters,
    ) -> Result<(), String> {
        let started = c.started.min(self.log.steps.len());
        for need in &self.log.needs {
            if need.sync_op >= c.acked || need.write_op < b {
                continue;
            }
            let by = format!(
                "the fdatasync at op {} of op {}",
                need.sync_op, need.write_op
            );
            let Some(p) = m.ns.iter().find(|(_, &i)| i == need.id).map(|(p, _)| p) else {
                return Err(format!("inode {} of {by} has no name", need.id));
            };
            let Some(Seen {
                node: Node::File(got),
                ..
            }) = sub.get(p).copied()
            else {
                return Err(format!("{p}: not a file, acknowledged by {by}"));
            };
            let Op::Write { generation, .. } = self.log.steps[need.write_op].op else {
                return Err(format!("internal: op {} is no write", need.write_op));
            };
            for at in need.start..need.end {
                let want = tag_byte(need.id, generation, at);
                let have = got.get(at as usize).copied();
                let later = |byte: u8| {
                    self.ordered
                        && (need.write_op + 1..started).any(|k| self.in_place(k, need.id, at, byte))
                };
                if have != Some(want) && !have.is_some_and(later) {
                    return Err(format!(
                        "{p}: byte {at} lost (it holds {}), acknowledged by {by}",
                        have.map_or("nothing: past the end".into(), |_| record_at(
                            got,
                            at as usize
                        ))
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One matching prefix per thread that respects real-time order across threads, given every
/// thread's matching prefixes (ascending, none empty): an op that began after another
/// thread's op returned joined a transaction no earlier (transactions commit in order), so
/// if it is in its thread's prefix, the other op is in its own. Starts from the least
/// prefixes (the fewest ops claimed) and raises a thread's only when an op of another forces
/// it; `Err` names the pair when no prefix of that thread can hold the forced op. `Ok`: the
/// prefixes chosen, and how many thread pairs demanded an op (in the final round).
pub fn cross_thread_order(
    logs: &[ThreadLog],
    matching: &[Vec<usize>],
) -> Result<(Vec<usize>, usize), String> {
    let mut cur: Vec<usize> = matching
        .iter()
        .map(|m| m.first().copied().unwrap_or(0))
        .collect();
    loop {
        let mut raised = false;
        let mut demands = 0;
        for (b, log_b) in logs.iter().enumerate() {
            let Some(last) = cur[b].checked_sub(1).and_then(|k| log_b.steps.get(k)) else {
                continue;
            };
            for (a, log_a) in logs.iter().enumerate().filter(|(a, _)| *a != b) {
                // Ops of `a` that returned before `b`'s last op in its prefix began.
                let need = log_a
                    .steps
                    .partition_point(|s| s.returned_at < last.started_at);
                demands += usize::from(need > 0);
                if cur[a] >= need {
                    continue;
                }
                let Some(&x) = matching[a].iter().find(|&&x| x >= need) else {
                    return Err(format!(
                        "cross-thread order: thread {b}'s op {} ({}) is in the recovered state, \
                         but thread {a}'s op {} ({}), which returned before it began, is not \
                         (thread {a} matches prefixes {:?})",
                        cur[b] - 1,
                        last.op,
                        need - 1,
                        log_a.steps[need - 1].op,
                        matching[a]
                    ));
                };
                cur[a] = x;
                raised = true;
            }
        }
        if !raised {
            return Ok((cur, demands));
        }
    }
}

/// The byte a write of `generation` to model inode `id` puts at `at`.
fn tag_byte(id: u32, generation: u32, at: u64) -> u8 {
    let rec = RECORD_BYTES as u64;
    let r = tag_record(Tag {
        file: id,
        generation,
        offset_bytes: at - at % rec,
    });
    r[(at % rec) as usize]
}

/// The thread directory `dir` as read back, and its contents keyed by model path (`/n1`).
fn subtree<'t>(tree: &'t Tree, dir: &str) -> (Option<&'t Seen>, BTreeMap<String, &'t Seen>) {
    let prefix = format!("{dir}/");
    let sub = tree
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, v)| (k[dir.len()..].to_string(), v))
        .collect();
    (tree.get(dir), sub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tagged;

    /// A thread whose op `i` ran from stamp `spans[i].0` to `spans[i].1`.
    fn log_with(thread: usize, spans: &[(u64, u64)]) -> ThreadLog {
        let steps = spans
            .iter()
            .enumerate()
            .map(
                |(i, &(started_at, returned_at))| super::super::worker::Step {
                    op: Op::Create(format!("/n{i}")),
                    effect: Default::default(),
                    target: None,
                    started_at,
                    returned_at,
                },
            )
            .collect();
        ThreadLog {
            thread,
            steps,
            ..ThreadLog::default()
        }
    }

    #[test]
    fn cross_thread_order_raises_a_prefix_or_reports_the_pair() {
        // Thread 0: ops at 0-1 and 4-5; thread 1: one op at 2-3 (after thread 0's first
        // returned) and one at 6-7.
        let logs = [
            log_with(0, &[(0, 1), (4, 5)]),
            log_with(1, &[(2, 3), (6, 7)]),
        ];
        // Thread 1 holds its first op: thread 0's first op must be in, and prefix 1 or 2 of
        // thread 0 is chosen over 0.
        assert_eq!(
            cross_thread_order(&logs, &[vec![0, 1, 2], vec![1]]),
            Ok((vec![1, 1], 1))
        );
        // Thread 1's second op began after thread 0's second returned: both in.
        assert_eq!(
            cross_thread_order(&logs, &[vec![0, 2], vec![2]]),
            Ok((vec![2, 2], 2))
        );
        // Overlap-free states that are fine as they are.
        assert_eq!(
            cross_thread_order(&logs, &[vec![1], vec![0]]),
            Ok((vec![1, 0], 0))
        );
        // Thread 1's first op survived, thread 0's first (returned before it began) did not.
        let e = cross_thread_order(&logs, &[vec![0], vec![1, 2]]).unwrap_err();
        assert!(
            e.contains("thread 1's op 0") && e.contains("thread 0's op 0"),
            "{e}"
        );
    }

    #[test]
    fn tag_byte_is_the_tagged_byte() {
        let d = tagged(7, 100, 90, 3);
        for (i, &b) in d.iter().enumerate() {
            assert_eq!(tag_byte(7, 3, 100 + i as u64), b);
        }
    }
}
