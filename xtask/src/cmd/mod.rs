//! The subcommands, one module each. They are leaves: none imports another (the
//! tidy test checks it); what two of them share lives in [`crate::common`].

pub mod apply;
pub mod bench;
pub mod build;
pub mod check;
pub mod ci;
pub mod export;
pub mod kernel;
pub mod send;
pub mod test_qemu;
pub mod vm;
