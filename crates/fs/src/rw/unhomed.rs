//! A data block's newest contents while they are not home: taken from the running
//! transaction by a commit or data sync in flight, or logged by `data=journal` and not yet
//! checkpointed. The state keeps them by block (`State::unhomed`); every read of a data block
//! sees them before the device (`read`, `fetch`). A leaf, so both can name it.

use std::sync::Arc;

use crate::DataPage;

/// See the module documentation.
#[derive(Debug, Clone)]
pub(super) struct Unhomed {
    /// Shared with the commit or data sync writing it, never copied.
    pub(super) page: Arc<DataPage>,
    /// The transaction that logged it (`data=journal`: home only after a checkpoint), or
    /// `None`: written in place by the commit or data sync in flight.
    pub(super) logged_by: Option<u64>,
}
