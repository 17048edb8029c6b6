//! The `livevote` binary, black box: the README's demo on a stack of its own
//! (`demo`), and the dead-letter commands against the local SQS endpoint
//! (`dlq`). One test binary for the crate.

mod demo;
mod dlq;

pub fn livevote() -> &'static str {
    env!("CARGO_BIN_EXE_livevote")
}

pub fn sqs_endpoint() -> String {
    std::env::var("LIVEVOTE_TEST_SQS_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}
