//! Fault injection, shared by every backend.
//!
//! A [`FaultPlan`] says which commands fail with `EIO`: the n-th command matching an op filter, or
//! every command touching a byte range, once or from then on ("sticky", a dying device). Each
//! backend asks its device's [`FaultInjector`] in `push`; a matched command never reaches the
//! medium (a failed write changes nothing, a failed flush makes nothing durable) and completes
//! through the backend's normal completion path with [`crate::DeviceError::Io`] naming it.
//!
//! Fault model (what tests may assume): failures are reported, never silent; a failed command has
//! no effect; commands that do not match are unaffected. Counting is in `push` order across all
//! queues of a device, so with one thread the same plan fails the same command every run.
//!
//! When no plan is armed the check is one relaxed atomic load.

use crate::{Io, Op};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Which commands a rule considers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpFilter {
    Any,
    Reads,
    /// Writes with or without FUA.
    Writes,
    Flushes,
}

impl OpFilter {
    fn matches(self, op: Op) -> bool {
        match self {
            OpFilter::Any => true,
            OpFilter::Reads => op == Op::Read,
            OpFilter::Writes => matches!(op, Op::Write { .. }),
            OpFilter::Flushes => op == Op::Flush,
        }
    }
}

/// When a rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The n-th matching command, counting from 0 once the plan is armed.
    NthCommand(u64),
    /// Any matching data command overlapping `start_bytes..end_bytes`.
    Range { start_bytes: u64, end_bytes: u64 },
}

/// Whether a rule fires once or keeps firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Only the first command that triggers it fails.
    Once,
    /// Every matching command fails from the first trigger on.
    Sticky,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultRule {
    pub trigger: Trigger,
    pub ops: OpFilter,
    pub persistence: Persistence,
}

/// A set of rules; a command fails if any rule fires for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    pub rules: Vec<FaultRule>,
}

impl FaultPlan {
    /// Fails the n-th command matching `ops`, once.
    pub fn nth(n: u64, ops: OpFilter) -> Self {
        FaultPlan {
            rules: vec![FaultRule {
                trigger: Trigger::NthCommand(n),
                ops,
                persistence: Persistence::Once,
            }],
        }
    }

    /// Fails every command matching `ops` that overlaps the byte range.
    pub fn range(start_bytes: u64, end_bytes: u64, ops: OpFilter) -> Self {
        FaultPlan {
            rules: vec![FaultRule {
                trigger: Trigger::Range {
                    start_bytes,
                    end_bytes,
                },
                ops,
                persistence: Persistence::Sticky,
            }],
        }
    }

    /// The same rules, but sticky: from the first failure on, every matching command fails.
    pub fn sticky(mut self) -> Self {
        for r in &mut self.rules {
            r.persistence = Persistence::Sticky;
        }
        self
    }
}

#[derive(Debug)]
struct RuleState {
    rule: FaultRule,
    seen: u64,
    fired: bool,
}

/// The live state of a device's fault plan. One per device, shared by its queues.
#[derive(Debug, Default)]
pub struct FaultInjector {
    armed: AtomicBool,
    rules: Mutex<Vec<RuleState>>,
}

impl FaultInjector {
    /// Replaces the plan and restarts its counters.
    pub fn arm(&self, plan: FaultPlan) {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        *rules = plan
            .rules
            .into_iter()
            .map(|rule| RuleState {
                rule,
                seen: 0,
                fired: false,
            })
            .collect();
        self.armed.store(!rules.is_empty(), Ordering::Release);
    }

    /// Removes every rule.
    pub fn disarm(&self) {
        self.arm(FaultPlan::default());
    }

    /// Decides whether `io` fails; returns the errno to complete it with. Called once per command,
    /// in `push`, after validation.
    pub fn check(&self, io: &Io<'_>, len_bytes: u32) -> Option<i32> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        let mut fail = false;
        for st in rules.iter_mut().filter(|st| st.rule.ops.matches(io.op)) {
            let triggered = match st.rule.trigger {
                Trigger::NthCommand(n) => st.seen == n,
                Trigger::Range {
                    start_bytes,
                    end_bytes,
                } => {
                    io.op.has_data()
                        && io.offset_bytes < end_bytes
                        && io.offset_bytes + u64::from(len_bytes) > start_bytes
                }
            };
            st.seen += 1;
            let fires = match st.rule.persistence {
                Persistence::Once => triggered && !st.fired,
                Persistence::Sticky => {
                    triggered || (st.fired && Self::sticky_applies(st.rule.trigger))
                }
            };
            st.fired |= triggered;
            fail |= fires;
        }
        fail.then_some(libc::EIO)
    }

    /// Commands each rule of the plan has matched so far (in rule order): with a rule that
    /// never fires, a count of a run's commands.
    pub fn counts(&self) -> Vec<u64> {
        let rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        rules.iter().map(|st| st.seen).collect()
    }

    /// True once any rule of the plan fired (a command failed).
    pub fn fired(&self) -> bool {
        let rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        rules.iter().any(|st| st.fired)
    }

    /// A sticky n-th-command rule fails everything after it; a sticky range rule keeps failing only
    /// commands in its range (handled by `triggered`).
    fn sticky_applies(trigger: Trigger) -> bool {
        matches!(trigger, Trigger::NthCommand(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Segment;

    const SEG: [Segment; 1] = [Segment {
        arena_offset: 0,
        len: 4096,
    }];

    #[test]
    fn nth_once_fails_exactly_one_command() {
        let f = FaultInjector::default();
        f.arm(FaultPlan::nth(2, OpFilter::Writes));
        let fails: Vec<bool> = (0..5)
            .map(|_| f.check(&Io::write(0, &SEG, false), 4096).is_some())
            .collect();
        assert_eq!(fails, [false, false, true, false, false]);
        assert_eq!(
            f.check(&Io::read(0, &SEG), 4096),
            None,
            "reads are not counted or failed"
        );
    }

    #[test]
    fn nth_sticky_fails_everything_after() {
        let f = FaultInjector::default();
        f.arm(FaultPlan::nth(1, OpFilter::Any).sticky());
        assert!(!f.fired());
        let fails: Vec<bool> = (0..4).map(|_| f.check(&Io::flush(), 0).is_some()).collect();
        assert_eq!(fails, [false, true, true, true]);
        assert!(f.fired());
        assert_eq!(f.counts(), [4]);
    }

    #[test]
    fn range_fails_overlapping_data_commands_only() {
        let f = FaultInjector::default();
        f.arm(FaultPlan::range(8192, 12288, OpFilter::Any));
        assert_eq!(f.check(&Io::read(4096, &SEG), 4096), None);
        assert_eq!(f.check(&Io::read(8192, &SEG), 4096), Some(libc::EIO));
        assert_eq!(f.check(&Io::write(12288, &SEG, true), 4096), None);
        assert_eq!(f.check(&Io::flush(), 0), None);
        f.disarm();
        assert_eq!(f.check(&Io::read(8192, &SEG), 4096), None);
    }
}
