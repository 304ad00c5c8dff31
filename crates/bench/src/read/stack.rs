//! `aios bench read` stacks: the software paths a read takes (aios on one of its mounts, or the
//! kernel's), and how the table names them.

use super::*;

/// The aios mount a stack reads through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mount {
    /// The read-only mount, `aios_fs::Fs`.
    Ro,
    /// The read-write mount, `aios_fs::RwFs` (threads share its `RwShared`).
    Rw,
}

impl Mount {
    pub(super) fn name(self) -> &'static str {
        match self {
            Mount::Ro => "ro",
            Mount::Rw => "rw",
        }
    }
}

/// The software path of a file read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadStack {
    Aios {
        mode: ReadMode,
        completion: CompletionMode,
        mount: Mount,
    },
    KernelBuffered,
    KernelDirect,
}

/// aios's read orders and completion modes on the host disk, in table order.
pub(super) const AIOS_MODES: [(ReadMode, CompletionMode); 3] = [
    (ReadMode::Sync, CompletionMode::Interrupt),
    (ReadMode::Async, CompletionMode::Interrupt),
    (ReadMode::Async, CompletionMode::Poll),
];

impl ReadStack {
    /// The stack column: `aios`, or with its mount (`aios rw`) when `mounts_shown`.
    pub(super) fn stack_name(self, mounts_shown: bool) -> &'static str {
        match self {
            ReadStack::Aios { mount, .. } if mounts_shown => match mount {
                Mount::Ro => "aios ro",
                Mount::Rw => "aios rw",
            },
            ReadStack::Aios { .. } => "aios",
            ReadStack::KernelBuffered | ReadStack::KernelDirect => "kernel",
        }
    }

    pub(super) fn mount(self) -> Option<Mount> {
        match self {
            ReadStack::Aios { mount, .. } => Some(mount),
            ReadStack::KernelBuffered | ReadStack::KernelDirect => None,
        }
    }

    pub(super) fn mode_name(self) -> String {
        match self {
            ReadStack::Aios {
                mode, completion, ..
            } => match completion {
                CompletionMode::Poll => format!("{}+poll", mode.name()),
                _ => mode.name().to_string(),
            },
            ReadStack::KernelBuffered => "buffered".into(),
            ReadStack::KernelDirect => "direct".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_column_names_the_mount_only_when_both_are_measured() {
        let stack = |mount| ReadStack::Aios {
            mode: ReadMode::Async,
            completion: CompletionMode::Poll,
            mount,
        };
        assert_eq!(stack(Mount::Rw).stack_name(false), "aios");
        assert_eq!(stack(Mount::Ro).stack_name(false), "aios");
        assert_eq!(stack(Mount::Rw).stack_name(true), "aios rw");
        assert_eq!(stack(Mount::Ro).stack_name(true), "aios ro");
        assert_eq!(stack(Mount::Rw).mode_name(), "async+poll");
        assert_eq!(ReadStack::KernelBuffered.stack_name(true), "kernel");
        assert_eq!(ReadStack::KernelBuffered.mount(), None);
        let mut args = ReadArgs::defaults();
        args.mount = vec![Mount::Rw, Mount::Ro, Mount::Rw];
        assert_eq!(setup_mounts(&args), vec![Mount::Rw, Mount::Ro]);
        args.mount.clear();
        assert!(validate(&args).is_err());
    }
}
