//! Criterion benchmarks for berth live in `benches/`; this library is empty.
