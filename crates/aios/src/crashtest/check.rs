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
//!   later ops of a multi-op workload made of them).
//! - **Prefix**: the recovered tree equals the model after some `b` at or above the bound:
//!   names, types, symlink targets, which names share an inode, link counts, sizes, bytes.
//!   In `data=ordered`, a byte may instead hold what an op not in the prefix (`k >= b`) that
//!   had started by the crash wrote there in place (an overwrite; zeros a truncate put in the
//!   tail of the block holding its new end): ordered mode writes data before its commit.
//!   `data=journal` allows nothing of the kind.
//! - **Tags**: every 32-byte record of every file is zeros or a tag naming this file (model
//!   id) and this offset; a differing byte is described by the tags (foreign file, older
//!   generation, torn).

use super::model::{decode_record, Effect, Model, Node, Op, Record, RECORD_BYTES};
use super::recover::{Seen, Tree};
use super::workload::Recording;

/// Bytes an acknowledged `fdatasync` made durable: at `path`, `start..end` equal `want`.
struct DataNeed {
    path: String,
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
        Op::Write { path, offset, .. } if names_id(path) => {
            let off = *offset as usize;
            at >= off && before.data_of(&ops[k]).get(at - off) == Some(&byte)
        }
        Op::Truncate(path, size) if names_id(path) => {
            let size = *size as usize;
            byte == 0 && at >= size && at < size.next_multiple_of(4096)
        }
        _ => false,
    }
}

/// Describes the record holding byte `at` for a message.
fn record_at(d: &[u8], at: usize) -> String {
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
fn check_tags(p: &str, id: u32, d: &[u8]) -> Result<(), String> {
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
fn matches(
    rec: &Recording,
    ops: &[Op],
    got: &Tree,
    b: usize,
    ctx: (usize, bool),
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
                check_tags(p, id, g)?;
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
    for b in (b_min..rec.states.len()).rev() {
        let mut needed = needs.iter().filter(|n| n.write_op >= b);
        match needed
            .try_for_each(|n| check_need(got, n))
            .and_then(|()| matches(rec, ops, got, b, (started, ordered)))
        {
            Ok(()) => return Ok(()),
            Err(e) => why.push(format!("prefix {b}: {e}")),
        }
    }
    Err(format!(
        "the recovered tree is no allowed prefix (durable bound {b_min}):\n  {}",
        why.join("\n  ")
    ))
}

/// The bytes `need` names are in `got` (see [`DataNeed`]).
fn check_need(got: &Tree, need: &DataNeed) -> Result<(), String> {
    let Some(Seen {
        node: Node::File(d),
        ..
    }) = got.get(&need.path)
    else {
        return Err(format!(
            "{}: acknowledged by {} but not a file here",
            need.path, need.by
        ));
    };
    let end = need.start + need.want.len();
    if d.get(need.start..end) == Some(&need.want[..]) {
        return Ok(());
    }
    let i = (need.start..end)
        .find(|&i| d.get(i) != need.want.get(i - need.start))
        .unwrap_or(need.start);
    Err(format!(
        "{}: byte {i} lost (it holds {}), acknowledged by {}",
        need.path,
        d.get(i)
            .map_or("past the end".to_string(), |_| record_at(d, i)),
        need.by
    ))
}
