//! One integration-test binary for the whole workspace, one module per theme.

mod handoff;
