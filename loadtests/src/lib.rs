//! Benchmarks and load generators. `adapter-bench` measures the storage
//! adapters against the bare operations they are built from, as ratios
//! measured in one run on one machine; `livevote-load` drives a running
//! stack and checks every accepted vote afterwards ([`load`]).

pub mod hostile;
pub mod load;
