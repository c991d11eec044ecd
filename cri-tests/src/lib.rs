//! berth as a Kubernetes runtime, proven through the CRI (issue 18).
//!
//! Kubernetes reaches a runtime through the Container Runtime Interface: kubelet → containerd's
//! CRI plugin → the runc shim (`io.containerd.runc.v2`) → the binary named in the runtime
//! handler's `BinaryName`, here `berth`. This crate exists for one integration test,
//! `tests/cri.rs`, that plays kubelet's part: a small gRPC client on the CRI protobufs
//! (`k8s-cri`, tonic) drives a containerd of the test's own (private root, state and socket,
//! inside a network namespace the test creates, CNI bridge from `containernetworking-plugins`)
//! through a pod's life with berth as the handler.
//!
//! It is a crate of its own, with no library code, because tonic, prost and the generated CRI
//! code are heavy to compile: as dev-dependencies of the `berth` package they would delay every
//! one of its test binaries. It is a workspace member but not a default member, so a plain
//! `cargo build` or `cargo test` in the root leaves it out; `cargo test --workspace` (as
//! `scripts/test.sh` runs it) includes it.
