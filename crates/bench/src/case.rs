//! What one benchmark measurement is: a stack on a device doing a workload at a shape.

use aios_device::CompletionMode;
use serde::Serialize;

/// The access pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    Randread,
    Randwrite,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Randread => "randread",
            Workload::Randwrite => "randwrite",
        }
    }
}

/// Which software path carries the I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stack {
    /// aios: the LBIO block layer over the device's own queue.
    Aios {
        completion: CompletionMode,
        registered_buffers: bool,
    },
    /// aios over a synchronous backend (psync): the I/O happens inside `submit`.
    AiosSync,
    /// The kernel's own path: `pread`/`pwrite` on an `O_DIRECT` descriptor, no aios code.
    KernelPread,
}

impl Stack {
    pub fn stack_name(self) -> &'static str {
        match self {
            Stack::Aios { .. } | Stack::AiosSync => "aios",
            Stack::KernelPread => "kernel",
        }
    }

    /// `irq`, `poll`, `irq-unreg`, `poll-unreg`, `sync`, or `pread` for the kernel.
    pub fn mode_name(self) -> String {
        match self {
            Stack::Aios {
                completion,
                registered_buffers,
            } => {
                let unreg = if registered_buffers { "" } else { "-unreg" };
                format!("{}{unreg}", completion.name())
            }
            Stack::AiosSync => "sync".into(),
            Stack::KernelPread => "pread".into(),
        }
    }
}

/// One cell of the benchmark matrix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Case {
    /// Index into the list of devices under test.
    pub device: usize,
    pub stack: Stack,
    pub workload: Workload,
    pub bs_bytes: u64,
    pub threads: usize,
    pub qd: u16,
}
