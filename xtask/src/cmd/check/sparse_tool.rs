//! Which sparse the check runs (`make C=2 CHECK=...`). The kernel takes a sparse only
//! when it passes scripts/checker-valid.sh. Debian 12's and 13's sparse 0.6.4 does
//! not (it cannot parse `__typeof_unqual__`); Debian sid's 0.6.5 does, but needs a
//! newer C library than the host has. So, when the host's sparse is refused, sid's
//! sparse and libc6 are downloaded once into the cache (a private apt state, nothing
//! installed on the system) and run through that libc's own dynamic loader by a
//! wrapper script.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::common::apt::{self, PrivateApt};
use crate::common::project::Project;

/// The sparse to run, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sparse {
    /// `CHECK=` value and a description (version, where from).
    Use {
        check: String,
        about: String,
    },
    Skip(String),
}

/// Asks the kernel's scripts/checker-valid.sh whether `check` will be run by kbuild.
fn accepted(sh: &Shell, wt: &Path, check: &str) -> bool {
    let script = wt.join("scripts/checker-valid.sh");
    if !script.is_file() {
        return true;
    }
    cmd!(sh, "sh {script} {check} --arch=x86 -mlittle-endian -m64")
        .quiet()
        .ignore_status()
        .ignore_stderr()
        .read()
        .is_ok_and(|v| v.trim() == "1")
}

fn version(sh: &Shell, check: &str) -> Option<String> {
    cmd!(sh, "{check} --version")
        .quiet()
        .ignore_status()
        .ignore_stderr()
        .read()
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The host's sparse when the kernel accepts it, else sid's (fetched once).
pub fn choose(sh: &Shell, project: &Project, wt: &Path) -> Sparse {
    let host = version(sh, "sparse");
    if let Some(v) = &host {
        if accepted(sh, wt, "sparse") {
            return Sparse::Use {
                check: "sparse".into(),
                about: format!("host sparse {v}"),
            };
        }
    }
    let host_why = match &host {
        Some(v) => format!(
            "the host's sparse {v} fails the kernel's scripts/checker-valid.sh (no \
             __typeof_unqual__)"
        ),
        None => "sparse is not installed".to_string(),
    };
    let wrapper = match project.cache_dir().and_then(|c| sid_sparse(sh, &c)) {
        Ok(w) => w,
        Err(e) => {
            return Sparse::Skip(format!(
                "{host_why}, and Debian sid's could not be fetched: {e:#}"
            ))
        }
    };
    let check = wrapper.display().to_string();
    let v = version(sh, &check).unwrap_or_else(|| "?".into());
    if accepted(sh, wt, &check) {
        Sparse::Use {
            check,
            about: format!("Debian sid's sparse ({v}) with sid's C library ({host_why})"),
        }
    } else {
        Sparse::Skip(format!(
            "{host_why}, and so does Debian sid's ({v}); install a sparse built from git"
        ))
    }
}

/// `cache/tools/sparse-sid/sparse`: a wrapper that runs sid's sparse with sid's libc.
fn sid_sparse(sh: &Shell, cache: &Path) -> Result<PathBuf> {
    let dir = cache.join("tools/sparse-sid");
    let wrapper = dir.join("sparse");
    if wrapper.is_file() {
        return Ok(wrapper);
    }
    let uri = apt::uri(std::env::var("RDMABOND_DEBIAN_MIRROR").ok().as_deref())?;
    let apt = PrivateApt::update(sh, cache, "apt-sid", &uri, "sid", "main")?;
    let tmp = cache.join("tools/sparse-sid.tmp");
    let _ = fs_err::remove_dir_all(&tmp);
    let debs = tmp.join("debs");
    let specs = ["sparse".to_string(), "libc6".to_string()];
    let out = apt.download(sh, &specs, &debs)?;
    if !out.status.success() {
        bail!(
            "apt-get download sparse libc6 from {} failed: {}",
            apt.source,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let root = tmp.join("root");
    fs_err::create_dir_all(&root)?;
    for e in fs_err::read_dir(&debs)? {
        let deb = e?.path();
        if deb.extension().is_some_and(|x| x == "deb") {
            cmd!(sh, "dpkg-deb -x {deb} {root}")
                .quiet()
                .run()
                .with_context(|| format!("cannot unpack {}", deb.display()))?;
        }
    }
    let final_root = dir.join("root");
    let lib = final_root.join("usr/lib/x86_64-linux-gnu");
    for need in [
        root.join("usr/bin/sparse"),
        root.join("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
    ] {
        if !need.is_file() {
            bail!("{} is not in sid's packages", need.display());
        }
    }
    let script = wrapper_script(
        &lib.join("ld-linux-x86-64.so.2"),
        &lib,
        &final_root.join("usr/bin/sparse"),
    );
    fs_err::write(tmp.join("sparse"), script)?;
    {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(tmp.join("sparse"), std::fs::Permissions::from_mode(0o755))?;
    }
    let _ = fs_err::remove_dir_all(&dir);
    fs_err::rename(&tmp, &dir)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), dir.display()))?;
    eprintln!(
        "check: fetched Debian sid's sparse into {} (run with sid's C library)",
        dir.display()
    );
    Ok(wrapper)
}

/// The wrapper: sid's sparse through sid's loader and libraries.
pub fn wrapper_script(loader: &Path, lib: &Path, sparse: &Path) -> String {
    format!(
        "#!/bin/sh\n# Debian sid's sparse, run with sid's C library (written by cargo xtask check).\n\
         exec '{}' --library-path '{}' '{}' \"$@\"\n",
        loader.display(),
        lib.display(),
        sparse.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_runs_sparse_through_the_loader() {
        let s = wrapper_script(
            Path::new("/c/root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
            Path::new("/c/root/usr/lib/x86_64-linux-gnu"),
            Path::new("/c/root/usr/bin/sparse"),
        );
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains(
            "exec '/c/root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2' --library-path \
             '/c/root/usr/lib/x86_64-linux-gnu' '/c/root/usr/bin/sparse' \"$@\""
        ));
    }
}
