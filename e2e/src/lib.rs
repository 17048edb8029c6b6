//! No library: this crate holds the end-to-end tests in `tests/it/`, which
//! wire the ingestion, processor and results use cases together (the
//! services' own tests never depend on one another).
