//! Helpers for the whole-binary tests in `tests/tests/`.
