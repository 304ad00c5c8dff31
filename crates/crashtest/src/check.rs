//! The model checks of one recovered crash state: the namespace is the model after a prefix
//! of the workload, every acknowledged sync is there byte for byte, and no byte is stale or
//! foreign.
//!
//! # The rules ([`check_state`])
//! Let the crash be after `point` events of the log; op `j` is *acknowledged* when it returned
//! before `point` (`Recording::acked`), and all ops are once the clean unmount returned.
//! - **Durable bound**: an acknowledged `sync` at op `j` needs prefix `b >= j`; `fsync(p)` needs
//!   the last earlier op that touched `p`'s inode; `fdatasync(p)` the last that remapped it
//!   (size or block map; `data=journal`: touched), and also the bytes of the last earlier
//!   write to `p` (an overwrite synced without a commit), checked separately for the prefixes
//!   that end at or before that write (later prefixes hold those bytes in the model, or what
//!   later ops made of them).
//! - **Prefix**: the recovered tree equals the model after some `b` at or above the bound
//!   that ends at a commit boundary (transactions are atomic; [`at_boundary`]):
//!   names, types, symlink targets, which names share an inode, link counts, sizes, bytes.
//!   In `data=ordered`, a byte may instead hold what an op not in the prefix (`k >= b`) that
//!   had started by the crash wrote there in place (an overwrite; zeros a truncate put in the
//!   tail of the block holding its new end): ordered mode writes data before its commit.
//!   `data=journal` allows nothing of the kind.
//! - **Tags**: every 32-byte record of every file is zeros or a tag naming this file (model
//!   id) and this offset; a differing byte is described by the tags (foreign file, older
//!   generation, torn).

use super::model::{decode_record, tagged_byte, Effect, Model, Node, Op, Record, RECORD_BYTES};
use super::recover::{Seen, Tree};
use super::workload::Recording;

/// Bytes an acknowledged `fdatasync` made durable: at `path`, `start..end` equal `want`.
struct DataNeed {
    path: String,
    /// The model inode, and the index of the `fdatasync` op.
    id: u32,
    op: usize,
    start: usize,
    want: Vec<u8>,
    by: String,
    /// The write's op: prefixes past it hold the bytes in the model (or what later ops made
    /// of them: a truncate, a rename, an overwrite), and are checked against that instead.
    write_op: usize,
}

/// The least prefix allowed at `point`, and the data needs.
fn bound(rec: &Recording, ops: &[Op], point: usize, ordered: bool) -> (usize, Vec<DataNeed>) {
    let n = ops.len();
    if point >= rec.unmounted {
        return (n, Vec::new());
    }
    let mut b = 0;
    let mut needs = Vec::new();
    let last = |j: usize, id: u32, pick: &dyn Fn(&Effect) -> &Vec<u32>| {
        (0..j).rev().find(|&k| pick(&rec.effects[k]).contains(&id))
    };
    for (j, op) in ops.iter().enumerate() {
        if rec.acked.get(j).is_none_or(|&a| a > point) {
            continue;
        }
        let before = &rec.states[j];
        match op {
            Op::Sync => b = b.max(j),
            Op::Fsync(p) => {
                // The root is implicit in the model: id 0.
                let id = if p == "/" {
                    Some(0)
                } else {
                    before.ns.get(p).copied()
                };
                if let Some(k) = id.and_then(|id| last(j, id, &|e| &e.touched)) {
                    b = b.max(k + 1);
                }
            }
            Op::Fdatasync(p) => {
                let Some(&id) = before.ns.get(p) else {
                    continue;
                };
                let pick: &dyn Fn(&Effect) -> &Vec<u32> = if ordered {
                    &|e| &e.remapped
                } else {
                    &|e| &e.touched
                };
                if let Some(k) = last(j, id, pick) {
                    b = b.max(k + 1);
                }
                let wrote = (0..j).rev().find_map(|k| {
                    rec.effects[k]
                        .wrote
                        .filter(|w| w.0 == id)
                        .map(|w| (k, w.1, w.2))
                });
                if let (Some((k, s, e)), Some(Node::File(d))) = (wrote, before.get(p)) {
                    let (s, e) = (s as usize, (e as usize).min(d.len()));
                    if s < e {
                        needs.push(DataNeed {
                            path: p.clone(),
                            id,
                            op: j,
                            start: s,
                            want: d[s..e].to_vec(),
                            by: format!("op {j} ({op}) after op {k} ({})", ops[k]),
                            write_op: k,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    (b, needs)
}

/// Whether a crash after `point` events must show an acknowledged sync (a durable bound above
/// the empty prefix, or bytes an `fdatasync` made durable).
pub fn has_acknowledged(rec: &Recording, ops: &[Op], point: usize, ordered: bool) -> bool {
    let (b, needs) = bound(rec, ops, point, ordered);
    b > 0 || !needs.is_empty()
}

/// Whether op `k` may have left `byte` at `at` of model inode `id` in place (ordered mode).
fn in_place(ops: &[Op], states: &[Model], k: usize, id: u32, at: usize, byte: u8) -> bool {
    let before = &states[k];
    let names_id = |p: &str| before.ns.get(p) == Some(&id);
    match &ops[k] {
        Op::Write {
            path,
            offset,
            len,
            generation,
        } if names_id(path) => {
            let off = *offset as usize;
            (off..off + len).contains(&at) && tagged_byte(id, *generation, at) == byte
        }
        Op::Truncate(path, size) if names_id(path) => {
            let size = *size as usize;
            byte == 0 && at >= size && at < size.next_multiple_of(4096)
        }
        _ => false,
    }
}

/// Describes the record holding byte `at` for a message.
pub fn record_at(d: &[u8], at: usize) -> String {
    let r = at - at % RECORD_BYTES;
    match d.get(r..r + RECORD_BYTES).map(decode_record) {
        Some(Record::Tag(t)) => format!(
            "tag of file {} offset {} gen {}",
            t.file, t.offset_bytes, t.generation
        ),
        Some(Record::Zero) => "zeros".into(),
        Some(Record::Garbage) => "garbage (neither zeros nor a tag)".into(),
        None => "a partial record".into(),
    }
}

/// Tags of file `p` (model id `id`): every whole record zeros or this file's own.
pub fn check_tags(p: &str, id: u32, d: &[u8]) -> Result<(), String> {
    for (i, r) in d.chunks_exact(RECORD_BYTES).enumerate() {
        let at = (i * RECORD_BYTES) as u64;
        match decode_record(r) {
            Record::Zero => {}
            Record::Tag(t) if t.file == id && t.offset_bytes == at => {}
            Record::Tag(t) if t.file != id => {
                return Err(format!(
                    "{p}: foreign data at {at}: a record of file {} (offset {}, gen {}), this \
                     is file {id}",
                    t.file, t.offset_bytes, t.generation
                ))
            }
            Record::Tag(t) => {
                return Err(format!(
                    "{p}: misplaced data at {at}: the record of offset {} (gen {})",
                    t.offset_bytes, t.generation
                ))
            }
            Record::Garbage => return Err(format!("{p}: torn or garbage record at {at}")),
        }
    }
    Ok(())
}

/// Whether `got` is the model after prefix `b` (see the module documentation).
/// Tag checks already done for this tree: (path, model id) -> outcome. They do not depend
/// on the prefix, and a state tries many prefixes.
type TagMemo<'a> = std::collections::HashMap<(&'a str, u32), Result<(), String>>;

fn matches<'a>(
    rec: &Recording,
    ops: &[Op],
    got: &'a Tree,
    b: usize,
    ctx: (usize, bool),
    memo: &mut TagMemo<'a>,
) -> Result<(), String> {
    let (started, ordered) = ctx;
    let want = &rec.states[b];
    let missing: Vec<&String> = want.ns.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.ns.contains_key(*k)).collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(format!("names: missing {missing:?}, extra {extra:?}"));
    }
    let mut inos = std::collections::BTreeMap::new();
    for (p, Seen { node, ino, nlink }) in got {
        let (Some(&id), Some(w)) = (want.ns.get(p), want.get(p)) else {
            return Err(format!("{p}: not in the model"));
        };
        if *inos.entry(id).or_insert(*ino) != *ino {
            return Err(format!("{p}: not the inode its hard links have"));
        }
        let links = match w {
            Node::Dir => 2 + want.subdirs(p),
            _ => want.names_of(id),
        };
        if usize::from(*nlink) != links {
            return Err(format!("{p}: {nlink} links, want {links}"));
        }
        match (node, w) {
            (Node::Dir, Node::Dir) => {}
            (Node::Symlink(g), Node::Symlink(t)) if g == t => {}
            (Node::File(g), Node::File(t)) => {
                memo.entry((p.as_str(), id))
                    .or_insert_with(|| check_tags(p, id, g))
                    .clone()?;
                if g.len() != t.len() {
                    return Err(format!("{p}: {} bytes, want {}", g.len(), t.len()));
                }
                let allowed = |i: usize| {
                    ordered
                        && (b..started.min(ops.len()))
                            .any(|k| in_place(ops, &rec.states, k, id, i, g[i]))
                };
                if let Some(i) = (0..g.len()).find(|&i| g[i] != t[i] && !allowed(i)) {
                    return Err(format!(
                        "{p}: byte {i} is {:#04x} ({}), want {:#04x} ({})",
                        g[i],
                        record_at(g, i),
                        t[i],
                        record_at(t, i)
                    ));
                }
            }
            (g, w) => return Err(format!("{p}: {} instead of {}", g.kind(), w.kind())),
        }
    }
    let distinct: std::collections::BTreeSet<&u32> = inos.values().collect();
    if distinct.len() != inos.len() {
        return Err("two model inodes share one recovered inode".into());
    }
    Ok(())
}

/// Whether prefix `b` may end at a commit boundary: no transaction can hold changes of both
/// an op before `b` and an op from `b` on. Op `k`'s changes lie in the transactions
/// `rec.tids[k].0..=rec.tids[k].1`; persistence ops change nothing. A cut between the last
/// changing op before `b` (`p`) and the first from `b` (`n`) exists iff `p` may end in a
/// transaction below one `n` may reach: `tids[p].0 < tids[n].1`.
fn at_boundary(rec: &Recording, ops: &[Op], b: usize) -> bool {
    let changes = |k: &usize| !matches!(ops[*k], Op::Fsync(_) | Op::Fdatasync(_) | Op::Sync);
    let prev = (0..b).rev().find(changes);
    let next = (b..ops.len()).find(changes);
    match (
        prev.and_then(|p| rec.tids.get(p)),
        next.and_then(|n| rec.tids.get(n)),
    ) {
        (Some(&(p_first, _)), Some(&(_, n_last))) => p_first < n_last,
        _ => true,
    }
}

/// Checks the recovered `got` of a crash after `point` events (see the module doc).
pub fn check_state(
    rec: &Recording,
    ops: &[Op],
    got: &Tree,
    point: usize,
    ordered: bool,
) -> Result<(), String> {
    let (b_min, needs) = bound(rec, ops, point, ordered);
    // Ops that had started by the crash: op k once op k-1 returned before it.
    let started = (0..ops.len())
        .take_while(|&k| k == 0 || rec.acked.get(k - 1).is_some_and(|&a| a < point))
        .count();
    let mut why = Vec::new();
    let mut memo = TagMemo::new();
    for b in (b_min..rec.states.len()).rev() {
        if !at_boundary(rec, ops, b) {
            continue;
        }
        match matches(rec, ops, got, b, (started, ordered), &mut memo) {
            Ok(()) => {
                return needs
                    .iter()
                    .filter(|n| n.write_op >= b)
                    .try_for_each(|n| check_need(rec, ops, got, n, (b, started)));
            }
            Err(e) => why.push(format!("prefix {b}: {e}")),
        }
    }
    Err(format!(
        "the recovered tree is no allowed prefix (durable bound {b_min}):\n  {}",
        why.join("\n  ")
    ))
}

/// Whether the bytes an acknowledged `fdatasync` made durable are there, in a tree that
/// matched prefix `b`. Strict unless an op after the `fdatasync` that had started by the
/// crash touched the inode: then a byte may also be what the prefix's model holds or what
/// that op put there in place, and the name may be gone if the prefix has none.
fn check_need(
    rec: &Recording,
    ops: &[Op],
    got: &Tree,
    need: &DataNeed,
    (b, started): (usize, usize),
) -> Result<(), String> {
    let later: Vec<usize> = (need.op + 1..started)
        .filter(|&k| rec.effects[k].touched.contains(&need.id))
        .collect();
    // The synced inode under any of its names in the prefix: `fdatasync` makes data
    // durable, not the name it was called through (a new hard link may not be committed).
    let at_b = &rec.states[b];
    let path = if at_b.ns.get(&need.path) == Some(&need.id) {
        Some(need.path.as_str())
    } else {
        at_b.ns
            .iter()
            .find(|(_, &i)| i == need.id)
            .map(|(p, _)| p.as_str())
    };
    let Some(path) = path else {
        if later.is_empty() {
            return Err(format!(
                "{}: acknowledged by {}, but the prefix matched ({b}) has no name for it",
                need.path, need.by
            ));
        }
        // A later op removed the inode's last name, and the prefix has that.
        return Ok(());
    };
    let file = match got.get(path) {
        Some(Seen {
            node: Node::File(d),
            ..
        }) => d,
        _ => {
            return Err(format!(
                "{path}: acknowledged by {} but not a file here",
                need.by
            ))
        }
    };
    let model = match at_b.get(path) {
        Some(Node::File(d)) => Some(d),
        _ => None,
    };
    for (i, want) in (need.start..).zip(&need.want) {
        let have = file.get(i);
        if have == Some(want) {
            continue;
        }
        let explained = !later.is_empty()
            && match have {
                None => true,
                Some(&h) => {
                    model.and_then(|m| m.get(i)) == Some(&h)
                        || later
                            .iter()
                            .any(|&k| in_place(ops, &rec.states, k, need.id, i, h))
                }
            };
        if !explained {
            return Err(format!(
                "{path}: byte {i} lost (it holds {}), acknowledged by {}",
                have.map_or("past the end".to_string(), |_| record_at(file, i)),
                need.by
            ));
        }
    }
    Ok(())
}
