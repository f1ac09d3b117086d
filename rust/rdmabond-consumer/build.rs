//! Generates the FFI bindings: librdmacm/libibverbs from the system's rdma-core
//! headers, and the rtnetlink uapi (IFLA_RDMABOND_* included) from the patched
//! kernel's `make headers` output.
//!
//! The uapi include directory comes from `RDMABOND_UAPI_INCLUDE` (set by
//! `cargo xtask`, which builds the kernel first), else from the default xtask build
//! directory `target/kbuild-y/usr/include` when it exists. On a clean clone neither
//! exists yet (`cargo xtask ci` runs clippy and the unit tests before any kernel
//! is built): then the bindings come from the host's base headers plus the
//! hand-copied constants in `src/uapi_fallback.rs`, the crate is compiled with
//! `cfg(rdmabond_uapi_fallback)`, a warning says so, and the `rbc` binary refuses
//! to run. Only binaries built against the generated header are ever used. The
//! test that the hand copies match the generated header is compiled out then; `cargo
//! xtask ci` runs it after test-qemu's kernel build, with RDMABOND_UAPI_INCLUDE set.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(rdmabond_uapi_fallback)");
    println!("cargo::rerun-if-changed=wrapper_rdma.h");
    println!("cargo::rerun-if-changed=wrapper_uapi.h");
    println!("cargo::rerun-if-env-changed=RDMABOND_UAPI_INCLUDE");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));

    println!("cargo::rustc-link-lib=rdmacm");
    println!("cargo::rustc-link-lib=ibverbs");
    bindgen::Builder::default()
        .header(manifest.join("wrapper_rdma.h").display().to_string())
        .allowlist_function("rdma_.*|ibv_.*")
        .allowlist_type("rdma_.*|ibv_.*|sockaddr_in6?")
        .allowlist_var("RDMA_.*|IBV_.*")
        .prepend_enum_name(false)
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("bindgen failed on <rdma/rdma_cma.h> <infiniband/verbs.h>: install librdmacm-dev and libibverbs-dev")
        .write_to_file(out.join("rdma.rs"))
        .expect("cannot write rdma.rs");

    let default = manifest.join("../../target/kbuild-y/usr/include");
    // An empty RDMABOND_UAPI_INCLUDE forces the fallback (to test it).
    let include = match env::var_os("RDMABOND_UAPI_INCLUDE") {
        Some(dir) if dir.is_empty() => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None if has_rdmabond(&default) => Some(default.clone()),
        None => None,
    };
    let mut uapi = bindgen::Builder::default()
        .header(manifest.join("wrapper_uapi.h").display().to_string())
        .allowlist_var("IFLA_.*|IFA_.*|RTM_.*|RTMGRP_.*|RTNLGRP_.*|NLM_F_.*|NLMSG_.*|RDMABOND_.*|NETLINK_ROUTE")
        .allowlist_type("ifinfomsg|ifaddrmsg|nlmsghdr|nlattr|rtattr|rdmabond_.*")
        .prepend_enum_name(false)
        .layout_tests(false)
        .generate_comments(false);
    match &include {
        Some(dir) => {
            let header = dir.join("linux/if_link.h");
            assert!(
                has_rdmabond(dir),
                "{} has no IFLA_RDMABOND_*: RDMABOND_UAPI_INCLUDE must be the patched kernel's `make headers` output",
                header.display()
            );
            println!("cargo::rerun-if-changed={}", header.display());
            uapi = uapi.clang_arg(format!("-I{}", dir.display()));
        }
        None => {
            println!(
                "cargo::warning=no patched uapi headers (RDMABOND_UAPI_INCLUDE unset or empty, {} missing): \
                 using the base headers and src/uapi_fallback.rs; this rbc only runs unit tests",
                default.display()
            );
            println!("cargo::rustc-cfg=rdmabond_uapi_fallback");
            println!(
                "cargo::rerun-if-changed={}",
                default.join("linux/if_link.h").display()
            );
        }
    }
    uapi.generate()
        .expect("bindgen failed on the rtnetlink uapi headers")
        .write_to_file(out.join("uapi.rs"))
        .expect("cannot write uapi.rs");
}

fn has_rdmabond(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("linux/if_link.h"))
        .is_ok_and(|t| t.contains("IFLA_RDMABOND_PORT_STATE"))
}
