//! livevote-results: the HTTP contract, the binary as a black box against
//! the real stores, and the pages in headless Chromium. One test binary for
//! the crate.

mod blackbox;
mod contract;
mod pages;
mod support;
