//! The `aios` library part: what the binary and the integration tests share.
//!
//! | Module | What |
//! | --- | --- |
//! | `crashtest` | the crash-consistency harness (`aios crashtest`) |

pub mod crashtest;
