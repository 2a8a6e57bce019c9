//! One integration-test binary for the whole workspace, one module per theme.

mod augment_fidelity;
mod decode_corpus;
mod device_photometric;
mod export_timm;
mod fuzz;
mod handoff;
mod moco_equivalence;
mod prep_isolation;
mod python_loader;
mod shards_pyarrow;
mod support;
mod trajectory;

/// The test binary's allocator: the system's, plus a per-thread record of the largest single
/// allocation while a thread asks for it (`support::largest_allocation`), so that a fuzz target
/// can show that no input makes the readers allocate without bound.
#[global_allocator]
static ALLOC: support::Tracking = support::Tracking;
