//! iproute2 support for rdmabond: patches/iproute2/ holds an iproute2-next series
//! (format-patch files with their cover letter) that adds `ip link ... type
//! rdmabond` options and prints groups and ports. iproute2 is no package this
//! project can fetch, so the developer gives a checkout of it (`--iproute2 PATH` or
//! RDMABOND_IPROUTE2). The patches are applied in a worktree of that checkout under
//! target/iproute2/src (the checkout's own work tree and branches are not touched),
//! and `ip` is built there and copied to target/iproute2/ip.
//!
//! - test-qemu exports RB_IP (the guest path of that `ip`) to the selftests; without
//!   a checkout, the tests that need it skip, with the reason, and count as skipped;
//! - check runs checkpatch on the patches (always) and builds them (with a
//!   checkout);
//! - send writes them as their own series, target/series/vN/iproute2/.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::common::deps::{Dep, Probe};
use crate::common::project::Project;

/// The environment variable that names the checkout, like `--iproute2`.
pub const ENV: &str = "RDMABOND_IPROUTE2";
/// patches/iproute2/.
pub const DIR: &str = "iproute2";
/// The cover letter of the series.
pub const COVER: &str = "0000-cover-letter.patch";
/// patches/iproute2/send.conf: the tree and version of the iproute2 series.
pub const SEND_CONF: &str = "send.conf";

/// Message types checkpatch reports that iproute2 itself accepts: its MAINTAINERS
/// file writes `M: name`, with a space, where the kernel's wants a tab.
pub const ACCEPTED: &str = "MAINTAINERS_STYLE";

/// Building `ip`.
const BUILD_DEPS: &[Dep] = &[
    Dep {
        probe: Probe::Program("make"),
        package: "make",
    },
    Dep {
        probe: Probe::Program("gcc"),
        package: "gcc",
    },
    Dep {
        probe: Probe::Program("bison"),
        package: "bison",
    },
    Dep {
        probe: Probe::Program("flex"),
        package: "flex",
    },
    Dep {
        probe: Probe::Program("pkg-config"),
        package: "pkg-config",
    },
    // Without libmnl, ip prints no extended ack ("Error: ..." from the kernel).
    Dep {
        probe: Probe::File("/usr/include/libmnl/libmnl.h"),
        package: "libmnl-dev",
    },
];

/// `--iproute2 PATH`, for the commands that use the checkout.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Iproute2Arg {
    /// A git checkout of iproute2 (iproute2-next or main): the patches of
    /// patches/iproute2/ are applied in a worktree of it under target/iproute2/ and
    /// `ip` is built there; the checkout itself is not changed. Without it, the
    /// iproute2 tests and builds are skipped.
    #[arg(long = "iproute2", value_name = "PATH", env = ENV)]
    pub iproute2: Option<PathBuf>,
}

impl Iproute2Arg {
    /// What RDMABOND_IPROUTE2 says, for callers that build their arguments
    /// themselves (ci).
    pub fn from_env() -> Iproute2Arg {
        Iproute2Arg {
            iproute2: std::env::var_os(ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }

    pub fn checkout(&self) -> Option<&Path> {
        self.iproute2.as_deref()
    }
}

/// Why the iproute2 parts are skipped without a checkout.
pub fn no_checkout_reason() -> String {
    format!("no iproute2 checkout (give one with --iproute2 PATH or {ENV}=PATH)")
}

/// target/iproute2/.
fn out_dir(project: &Project) -> PathBuf {
    project.target_dir().join("iproute2")
}

/// The built `ip`: target/iproute2/ip.
pub fn ip_path(project: &Project) -> PathBuf {
    out_dir(project).join("ip")
}

/// The patch files of patches/iproute2/ in order, cover letter first.
pub fn files(project: &Project) -> Result<Vec<PathBuf>> {
    let dir = project.patches_dir().join(DIR);
    let mut v: Vec<PathBuf> = fs_err::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "patch"))
        .collect();
    v.sort();
    if v.is_empty() {
        bail!("{} has no .patch files", dir.display());
    }
    Ok(v)
}

/// The patches without the cover letter.
pub fn patches(files: &[PathBuf]) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|p| !p.file_name().is_some_and(|n| n == COVER))
        .cloned()
        .collect()
}

/// The `base-commit:` that format-patch wrote, if any.
pub fn base_commit(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let id = l.strip_prefix("base-commit: ")?.trim();
        (id.len() >= 7 && id.chars().all(|c| c.is_ascii_hexdigit())).then(|| id.to_string())
    })
}

/// The files a patch changes, in order, each once.
pub fn touched(text: &str) -> Vec<String> {
    let mut v: Vec<String> = crate::common::diff::parse(text)
        .into_iter()
        .map(|f| f.path)
        .collect();
    v.dedup();
    v
}

/// Where the patches go in `checkout`: their base commit when the checkout has
/// it, else its HEAD.
fn base(sh: &Shell, checkout: &Path, files: &[PathBuf]) -> Result<String> {
    let _d = sh.push_dir(checkout);
    let text = files
        .iter()
        .map(fs_err::read_to_string)
        .collect::<std::io::Result<Vec<_>>>()?
        .join("\n");
    if let Some(id) = base_commit(&text) {
        let rev = format!("{id}^{{commit}}");
        if let Ok(full) = cmd!(sh, "git rev-parse --verify --quiet {rev}")
            .quiet()
            .ignore_stderr()
            .read()
        {
            return Ok(full);
        }
        eprintln!(
            "iproute2: {} does not have the patches' base {id}: applying onto its HEAD",
            checkout.display()
        );
    }
    cmd!(sh, "git rev-parse HEAD")
        .quiet()
        .read()
        .with_context(|| format!("{} is not a git checkout", checkout.display()))
}

/// The worktree of `checkout` with the patches applied (target/iproute2/src);
/// returns it. Nothing is done when the stamp says it already has these patches
/// on this base.
pub fn prepare(sh: &Shell, project: &Project, checkout: &Path) -> Result<PathBuf> {
    let checkout = checkout
        .canonicalize()
        .with_context(|| format!("no iproute2 checkout at {}", checkout.display()))?;
    if !checkout.join("ip/iplink.c").is_file() {
        bail!(
            "{} is not an iproute2 checkout (no ip/iplink.c)",
            checkout.display()
        );
    }
    let files = files(project)?;
    let patches = patches(&files);
    let base = base(sh, &checkout, &files)?;
    let wt = out_dir(project).join("src");
    let stamp_file = out_dir(project).join("applied");
    let mut stamp = format!("{}\n{base}\n", checkout.display());
    for p in &patches {
        let id = cmd!(sh, "git hash-object {p}").quiet().read()?;
        stamp.push_str(&format!("{id}\n"));
    }
    if wt.join(".git").exists() && fs_err::read_to_string(&stamp_file).is_ok_and(|s| s == stamp) {
        return Ok(wt);
    }
    let _ = fs_err::remove_file(&stamp_file);
    fs_err::create_dir_all(out_dir(project))?;
    if wt.join(".git").exists() {
        detach_at(sh, &wt, &base)?;
    } else {
        let _ = fs_err::remove_dir_all(&wt);
        let _d = sh.push_dir(&checkout);
        cmd!(sh, "git worktree prune").quiet().run()?;
        cmd!(sh, "git worktree add --quiet --detach {wt} {base}")
            .quiet()
            .run()
            .with_context(|| format!("cannot create the worktree {}", wt.display()))?;
    }
    {
        let _d = sh.push_dir(&wt);
        let r = cmd!(
            sh,
            "git -c user.name=xtask -c user.email=xtask@localhost am --quiet -3 {patches...}"
        )
        .quiet()
        .run();
        if let Err(e) = r {
            let _ = cmd!(sh, "git am --abort").quiet().ignore_status().run();
            return Err(e).with_context(|| {
                format!(
                    "the patches of patches/{DIR}/ do not apply onto {base} of {}",
                    checkout.display()
                )
            });
        }
    }
    crate::common::util::write_atomic(&stamp_file, stamp.as_bytes())?;
    Ok(wt)
}

/// The `-j` of the iproute2 build: CARGO_BUILD_JOBS when set, as for cargo.
fn jobs() -> usize {
    std::env::var("CARGO_BUILD_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .filter(|j| *j >= 1)
        .unwrap_or_else(crate::common::util::jobs)
}

/// The compiler warnings in make's output (`file:line:col: warning: ...`).
pub fn warnings(make_output: &str) -> Vec<String> {
    make_output
        .lines()
        .filter(|l| l.contains(": warning: "))
        .map(str::to_string)
        .collect()
}

/// What building `ip` gave: its path and the compiler warnings.
pub struct Built {
    pub ip: PathBuf,
    pub warnings: Vec<String>,
}

/// Applies the patches in a worktree of `checkout`, builds `ip` (lib and ip only)
/// and copies it to target/iproute2/ip.
pub fn build(sh: &Shell, project: &Project, checkout: &Path) -> Result<Built> {
    crate::common::deps::ensure(sh, "the iproute2 build", BUILD_DEPS)?;
    let wt = prepare(sh, project, checkout)?;
    if !wt.join("config.mk").is_file() {
        let _d = sh.push_dir(&wt);
        let out = cmd!(sh, "sh configure")
            .quiet()
            .ignore_status()
            .output()
            .context("cannot run iproute2's configure")?;
        if !out.status.success() {
            bail!(
                "iproute2's configure failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    eprintln!("iproute2: building ip in {}", wt.display());
    let (jobs, subdirs) = (format!("-j{}", jobs()), "SUBDIRS=lib ip");
    let out = {
        let _d = sh.push_dir(&wt);
        cmd!(sh, "make {jobs} {subdirs}")
            .quiet()
            .ignore_status()
            .output()
            .context("cannot run make")?
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("building ip failed:\n{}", tail.join("\n"));
    }
    let ip = ip_path(project);
    fs_err::copy(wt.join("ip/ip"), &ip)
        .with_context(|| format!("cannot copy ip to {}", ip.display()))?;
    let help = cmd!(sh, "{ip} link help rdmabond")
        .quiet()
        .ignore_status()
        .output()
        .with_context(|| format!("cannot run {}", ip.display()))?;
    if !String::from_utf8_lossy(&help.stdout).contains("failback_delay") {
        bail!(
            "{} was built but does not know rdmabond (ip link help rdmabond)",
            ip.display()
        );
    }
    eprintln!("iproute2: built {}", ip.display());
    Ok(Built {
        ip,
        warnings: warnings(&text),
    })
}

/// The lines that start the guest payload: RB_IP, the guest path of `ip`, for the
/// selftests; nothing without one (they then use the guest's own ip and skip).
pub fn payload_env(root: &Path, ip: Option<&Path>) -> Result<String> {
    Ok(match ip {
        Some(ip) => format!(
            "export RB_IP='{}'\n",
            crate::common::vm::guest_path(root, ip)?
        ),
        None => String::new(),
    })
}

/// For test-qemu: builds `ip` when there is a checkout; returns it.
pub fn for_tests(sh: &Shell, project: &Project, arg: &Iproute2Arg) -> Result<Option<PathBuf>> {
    match arg.checkout() {
        Some(c) => Ok(Some(build(sh, project, c)?.ip)),
        None => {
            eprintln!(
                "iproute2: {}: the selftests that need the patched ip skip",
                no_checkout_reason()
            );
            Ok(None)
        }
    }
}

/// Whether the mail's subject starts with `[PREFIX` (then ` N/M]`, ` vN ...`).
pub fn subject_has_prefix(mail: &str, prefix: &str) -> bool {
    mail.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("Subject: ["))
        .is_some_and(|s| {
            s.strip_prefix(prefix)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with(']'))
        })
}

/// Aborts a `git am` left behind in the worktree `wt`, then checks `rev` out,
/// detached, dropping any change.
pub fn detach_at(sh: &Shell, wt: &Path, rev: &str) -> Result<()> {
    {
        let _d = sh.push_dir(wt);
        let _ = cmd!(sh, "git am --abort")
            .quiet()
            .ignore_status()
            .ignore_stderr()
            .run();
    }
    crate::common::git::checkout(sh, wt, rev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn base_commit_and_touched_files() {
        let p = "Subject: x\n\ndiff --git a/ip/Makefile b/ip/Makefile\n+x\n\
                 diff --git a/ip/iplink_rdmabond.c b/ip/iplink_rdmabond.c\n--\n\
                 base-commit: ee2a4a86625688d8c2b468ec15d7ae35a4f5717f\n";
        assert_eq!(
            base_commit(p).as_deref(),
            Some("ee2a4a86625688d8c2b468ec15d7ae35a4f5717f")
        );
        assert_eq!(base_commit("base-commit: not-hex\n"), None);
        assert_eq!(touched(p), vec!["ip/Makefile", "ip/iplink_rdmabond.c"]);
    }

    #[test]
    fn guest_env_and_warnings() {
        let root = Path::new("/src/rb");
        let ip = Path::new("/src/rb/target/iproute2/ip");
        assert_eq!(
            payload_env(root, Some(ip)).unwrap(),
            "export RB_IP='/mnt/target/iproute2/ip'\n"
        );
        assert_eq!(payload_env(root, None).unwrap(), "");
        assert!(payload_env(root, Some(Path::new("/elsewhere/ip"))).is_err());
        let w = warnings("    CC x.o\niplink_rdmabond.c:3:1: warning: unused [-Wunused]\nnote\n");
        assert_eq!(w, vec!["iplink_rdmabond.c:3:1: warning: unused [-Wunused]"]);
    }

    /// With RDMABOND_IPROUTE2 naming an iproute2 checkout: applies the series in
    /// a worktree of it, builds ip, and leaves the checkout as it was
    /// (`cargo test -p xtask -- --ignored builds_ip`).
    #[test]
    #[ignore = "needs an iproute2 checkout in RDMABOND_IPROUTE2 and builds ip"]
    fn builds_ip_without_touching_the_checkout() {
        let arg = Iproute2Arg::from_env();
        let checkout = arg.checkout().expect("RDMABOND_IPROUTE2 is not set");
        let sh = Shell::new().unwrap();
        let status = |sh: &Shell| {
            let _d = sh.push_dir(checkout);
            cmd!(sh, "git status --porcelain --branch").read().unwrap()
        };
        let before = status(&sh);
        let project = Project::locate(None, None, true).unwrap();
        let built = build(&sh, &project, checkout).unwrap();
        assert!(built.warnings.is_empty(), "{:?}", built.warnings);
        let out = Command::new(&built.ip)
            .args([
                "link",
                "add",
                "rb0",
                "type",
                "rdmabond",
                "failback_delay",
                "abc",
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "Error: argument \"abc\" is wrong: invalid failback_delay\n"
        );
        assert_eq!(status(&sh), before, "the checkout changed");
        // A second run finds the patches applied and only runs make.
        let again = prepare(&sh, &project, checkout).unwrap();
        assert!(again.join("ip/iplink_rdmabond.c").is_file());
    }

    #[test]
    fn the_stored_series_is_an_iproute2_next_series() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../patches")
            .join(DIR);
        let mut n = 0;
        for e in fs_err::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|e| e == "patch") {
                let t = fs_err::read_to_string(&p).unwrap();
                assert!(
                    subject_has_prefix(&t, "PATCH iproute2-next"),
                    "{}",
                    p.display()
                );
                n += 1;
            }
        }
        assert!(n >= 2, "cover letter and patches in {}", dir.display());
    }
}
