//! One integration-test binary for the whole workspace, one module per theme.

mod augment_fidelity;
mod decode_corpus;
mod handoff;
mod moco_equivalence;
mod prep_isolation;
mod shards_pyarrow;
mod support;
