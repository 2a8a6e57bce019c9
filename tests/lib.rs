//! Cross-crate integration tests of twoview live in `integration/` as one test binary
//! (`cargo test -p twoview-tests`); this library is empty.
