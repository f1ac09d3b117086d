//! Host dependencies: what each step needs, checked before it runs, installed with
//! apt-get when we are root on Debian, otherwise reported as the exact command.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::common::util::which;

/// How to tell that a dependency is present.
#[derive(Debug, Clone, Copy)]
pub enum Probe {
    /// A program in PATH.
    Program(&'static str),
    /// A file at a fixed path.
    File(&'static str),
}

/// One host dependency and the Debian package that provides it.
#[derive(Debug, Clone, Copy)]
pub struct Dep {
    /// How to see that it is installed.
    pub probe: Probe,
    /// Debian package that provides it.
    pub package: &'static str,
}

const fn prog(name: &'static str, package: &'static str) -> Dep {
    Dep {
        probe: Probe::Program(name),
        package,
    }
}

const fn file(path: &'static str, package: &'static str) -> Dep {
    Dep {
        probe: Probe::File(path),
        package,
    }
}

/// Fetching and importing the kernel source.
pub const FETCH: &[Dep] = &[
    prog("apt-get", "apt"),
    prog("dpkg-deb", "dpkg"),
    prog("tar", "tar"),
    prog("xz", "xz-utils"),
    prog("git", "git"),
    prog("sha256sum", "coreutils"),
];

/// Building the kernel with Rust support.
pub const BUILD: &[Dep] = &[
    prog("make", "make"),
    prog("gcc", "gcc"),
    prog("flex", "flex"),
    prog("bison", "bison"),
    prog("bc", "bc"),
    prog("cpio", "cpio"),
    prog("ccache", "ccache"),
    prog("depmod", "kmod"),
    prog("pahole", "dwarves"),
    prog("perl", "perl"),
    prog("python3", "python3"),
    prog("rsync", "rsync"),
    file("/usr/include/libelf.h", "libelf-dev"),
    file("/usr/include/openssl/ssl.h", "libssl-dev"),
    file("/usr/bin/rustc", "rustc-web"),
    file(
        "/usr/lib/rustlib/src/rust/library/core/src/lib.rs",
        "rust-web-src",
    ),
    file("/usr/lib/llvm-19/lib/libclang.so", "libclang-19-dev"),
    file(KERNEL_RUSTFMT, "rustfmt-web"),
    file(CLIPPY_DRIVER, "rust-web-clippy"),
    prog(SELFTEST_CLANG, "clang-19"),
    // The Rust consumer (rust/rdmabond-consumer) binds librdmacm and libibverbs.
    file("/usr/include/rdma/rdma_cma.h", "librdmacm-dev"),
    file("/usr/include/infiniband/verbs.h", "libibverbs-dev"),
];

/// Booting the guest and running the selftests in it (the guest uses the host's root).
pub const QEMU: &[Dep] = &[
    prog("qemu-system-x86_64", "qemu-system-x86"),
    prog("ip", "iproute2"),
    prog("rdma", "iproute2"),
    prog("rping", "rdmacm-utils"),
    prog("ibv_devices", "ibverbs-utils"),
    prog("ping", "iputils-ping"),
    prog("ps", "procps"),
    prog("tcpdump", "tcpdump"),
    prog("python3", "python3"),
    file(
        "/usr/lib/python3/dist-packages/yaml/__init__.py",
        "python3-yaml",
    ),
    file("/etc/libibverbs.d/rxe.driver", "ibverbs-providers"),
];

/// The upstream gate (`cargo xtask check`): the linters the netdev CI runs on
/// touched files, checkpatch's codespell dictionary and its SPDX checker's modules.
pub const CHECK: &[Dep] = &[
    prog("shellcheck", "shellcheck"),
    prog("yamllint", "yamllint"),
    file(CODESPELL_DICT, "codespell"),
    file(
        "/usr/lib/python3/dist-packages/ply/__init__.py",
        "python3-ply",
    ),
    file(
        "/usr/lib/python3/dist-packages/git/__init__.py",
        "python3-git",
    ),
];

/// Debian's codespell dictionary (checkpatch `--codespellfile`).
pub const CODESPELL_DICT: &str = "/usr/lib/python3/dist-packages/codespell_lib/data/dictionary.txt";

/// Where the kernel's Rust support finds libclang.
pub const LIBCLANG_PATH: &str = "/usr/lib/llvm-19/lib";
/// The rustc the kernel is built with (Debian's, which ships rust-src).
pub const KERNEL_RUSTC: &str = "/usr/bin/rustc";
/// Debian's clippy-driver (package rust-web-clippy), matching [`KERNEL_RUSTC`].
pub const CLIPPY_DRIVER: &str = "/usr/bin/clippy-driver";
/// Debian's rustfmt for `make rustfmtcheck` (rustup's comes first in PATH).
pub const KERNEL_RUSTFMT: &str = "/usr/bin/rustfmt";
/// The clang that builds the selftests' BPF objects.
pub const SELFTEST_CLANG: &str = "clang-19";
/// bindgen-cli version installed from crates.io when none is present.
const BINDGEN_VERSION: &str = "0.73.2";

fn present(dep: &Dep) -> bool {
    match dep.probe {
        Probe::Program(p) => which(p).is_some(),
        Probe::File(f) => Path::new(f).exists(),
    }
}

/// Names of the packages whose probe fails, deduplicated, in table order.
pub fn missing(deps: &[Dep]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for dep in deps.iter().filter(|d| !present(d)) {
        if !out.contains(&dep.package) {
            out.push(dep.package);
        }
    }
    out
}

/// dpkg's journal of an unfinished run: apt-get refuses to install while it has
/// entries.
const DPKG_UPDATES: &str = "/var/lib/dpkg/updates";
/// How long apt-get waits for a dpkg lock another apt holds, in seconds.
const LOCK_TIMEOUT_S: u32 = 600;

/// The number of entries in dpkg's journal directory `updates`, when it has any:
/// an earlier dpkg was interrupted, and `dpkg --configure -a` must finish it.
/// None when the directory is empty or absent.
pub fn interrupted(updates: &Path) -> Option<usize> {
    let n = fs_err::read_dir(updates).ok()?.flatten().count();
    (n > 0).then_some(n)
}

/// The exact command a user runs to install `packages`.
pub fn install_command(packages: &[&str]) -> String {
    format!(
        "sudo apt-get update && sudo apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    )
}

pub fn is_root() -> bool {
    // SAFETY-free: read the effective uid from /proc, no libc dependency needed.
    fs_err::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Makes sure every dependency in `deps` is present, installing what is missing
/// when possible.
pub fn ensure(sh: &Shell, what: &str, deps: &[Dep]) -> Result<()> {
    let need = missing(deps);
    if need.is_empty() {
        return Ok(());
    }
    let debian = Path::new("/etc/debian_version").exists() && which("apt-get").is_some();
    if !(debian && is_root()) {
        bail!(
            "{what} needs host packages that are missing: {}\n  install them with: {}",
            need.join(" "),
            install_command(&need)
        );
    }
    eprintln!("installing host packages for {what}: {}", need.join(" "));
    // Another apt (unattended-upgrades at boot) may hold the lock: wait for it
    // rather than fail.
    let lock = format!("-oDPkg::Lock::Timeout={LOCK_TIMEOUT_S}");
    cmd!(sh, "apt-get {lock} update -q")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .context("apt-get update failed; check the machine's apt sources")?;
    // An earlier dpkg run that was killed leaves its journal behind, and apt-get
    // then refuses every install ("dpkg was interrupted, you must manually run
    // 'dpkg --configure -a'"): finish it, as apt asks, before installing.
    if let Some(pending) = interrupted(Path::new(DPKG_UPDATES)) {
        eprintln!(
            "dpkg was interrupted earlier ({pending} journal entries in {DPKG_UPDATES}): \
             running dpkg --configure -a first"
        );
        cmd!(sh, "dpkg --configure -a")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .run()
            .context(
                "dpkg --configure -a failed: dpkg's database needs repair by hand \
                 (see its output above) before packages can be installed",
            )?;
    }
    let need_refs = &need;
    cmd!(
        sh,
        "apt-get {lock} install -y -q --no-install-recommends {need_refs...}"
    )
    .env("DEBIAN_FRONTEND", "noninteractive")
    .run()
    .with_context(|| {
        format!(
            "apt-get install failed; run it by hand: {}",
            install_command(&need)
        )
    })?;
    let still = missing(deps);
    if !still.is_empty() {
        bail!(
            "after apt-get install, {what} still misses: {} (is this Debian 12 or newer?)",
            still.join(" ")
        );
    }
    Ok(())
}

/// The bindgen the kernel's Rust build uses: PATH, then ~/.cargo/bin, then our cache;
/// installed from crates.io into the cache when missing.
pub fn bindgen(sh: &Shell, cache: &Path) -> Result<PathBuf> {
    if let Some(p) = which("bindgen") {
        return Ok(p);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".cargo/bin/bindgen");
        if p.is_file() {
            return Ok(p);
        }
    }
    let root = cache.join("tools");
    let p = root.join("bin/bindgen");
    if p.is_file() {
        return Ok(p);
    }
    eprintln!(
        "installing bindgen-cli {BINDGEN_VERSION} from crates.io into {}",
        root.display()
    );
    let version = BINDGEN_VERSION;
    cmd!(
        sh,
        "cargo install --locked --root {root} --version {version} bindgen-cli"
    )
    .run()
    .with_context(|| {
        format!("installing bindgen-cli failed; run `cargo install --locked bindgen-cli@{version}`")
    })?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_is_deduplicated_and_ordered() {
        let deps = [
            prog("surely-not-a-program-xyz", "pkg-a"),
            file("/surely/not/a/file", "pkg-a"),
            prog("sh", "dash"),
            file("/surely/not/either", "pkg-b"),
        ];
        assert_eq!(missing(&deps), vec!["pkg-a", "pkg-b"]);
    }

    #[test]
    fn an_interrupted_dpkg_is_seen_by_its_journal() {
        let dir = std::env::temp_dir().join(format!("xtask-dpkg-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&dir);
        assert_eq!(interrupted(&dir), None, "no directory");
        fs_err::create_dir_all(&dir).unwrap();
        assert_eq!(interrupted(&dir), None, "empty journal");
        fs_err::write(dir.join("0001"), "Package: x\n").unwrap();
        assert_eq!(interrupted(&dir), Some(1));
        fs_err::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn install_command_is_exact() {
        assert_eq!(
            install_command(&["qemu-system-x86", "rdmacm-utils"]),
            "sudo apt-get update && sudo apt-get install -y --no-install-recommends qemu-system-x86 rdmacm-utils"
        );
    }
}
