//! Benchmark support for vswitch (criterion benches live in benches/).
