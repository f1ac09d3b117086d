//! The pinned base kernel as a git tree in kernel-src/linux: downloaded (the Debian
//! linux-source package of the pin), verified, imported as one commit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::common::apt::{self, PrivateApt};
use crate::common::deps;
use crate::common::pin::Pin;
use crate::common::project::Project;
use crate::common::util::write_atomic;

/// Fixed identity and date of the imported base commit, so that every machine that
/// imports the same pin gets the same commit id (and the same `base-commit:` line).
const BASE_IDENT: (&str, &str, &str) = (
    "rdmabond xtask",
    "xtask@rdmabond.invalid",
    "2026-01-01T00:00:00Z",
);

/// Free space needed to extract and import the tree (1.7 GB tree + .git + tarball).
const NEEDED_BYTES: u64 = 4 << 30;

/// Makes sure the kernel tree exists with its base commit; seconds when it does.
pub fn fetch(sh: &Shell, project: &Project, mirror: Option<&str>) -> Result<()> {
    deps::ensure(sh, "kernel fetch", deps::FETCH)?;
    if project.external_tree {
        return check_base(sh, project);
    }
    let tree = &project.tree;
    if tree.join(".git").exists() {
        check_base(sh, project).with_context(|| {
            format!(
                "{} exists but does not carry the pinned base; export your work \
                 (`cargo xtask export`), then remove the tree and run `cargo xtask kernel fetch` again",
                tree.display()
            )
        })?;
        eprintln!(
            "kernel tree {} is at {} (cached)",
            tree.display(),
            project.base
        );
        return Ok(());
    }
    if tree.exists() {
        bail!(
            "{} exists but is not a git tree (an interrupted import?); remove it and run \
             `cargo xtask kernel fetch` again",
            tree.display()
        );
    }
    let deb = download(sh, project, &project.pin, mirror)?;
    import(sh, project, &deb)
}

fn check_base(sh: &Shell, project: &Project) -> Result<()> {
    let _dir = sh.push_dir(&project.tree);
    let base = format!("{}^{{commit}}", project.base);
    cmd!(sh, "git rev-parse --verify --quiet {base}")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| {
            format!(
                "the base revision `{}` does not exist in {}",
                project.base,
                project.tree.display()
            )
        })?;
    Ok(())
}

/// Downloads the pinned .deb into the cache (once) and verifies its checksum.
fn download(sh: &Shell, project: &Project, pin: &Pin, mirror: Option<&str>) -> Result<PathBuf> {
    let cache = project.cache_dir()?;
    let dl = cache.join("dl");
    fs_err::create_dir_all(&dl).with_context(|| format!("cannot create {}", dl.display()))?;
    let deb = dl.join(pin.deb_file_name());
    if deb.is_file() {
        verify_sha256(sh, &deb, &pin.sha256)?;
        eprintln!("using cached {}", deb.display());
        return Ok(deb);
    }
    let fresh = apt_download(sh, &cache, pin, mirror)?;
    if let Err(e) = verify_sha256(sh, &fresh, &pin.sha256) {
        let _ = fs_err::remove_file(&fresh);
        return Err(e);
    }
    fs_err::rename(&fresh, &deb)
        .with_context(|| format!("cannot move the download to {}", deb.display()))?;
    Ok(deb)
}

/// apt-get download with a private sources list and state directory; the system's
/// apt configuration is read (for the archive URI) but never changed.
pub fn apt_download(sh: &Shell, cache: &Path, pin: &Pin, mirror: Option<&str>) -> Result<PathBuf> {
    let uri = apt::uri(mirror)?;
    let apt = PrivateApt::update(sh, cache, "apt", &uri, &pin.suite, &pin.component)?;
    let work = cache.join("dl/partial");
    let _ = fs_err::remove_dir_all(&work);
    let spec = pin.apt_spec();
    let out = apt.download(sh, std::slice::from_ref(&spec), &work)?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("was not found") || err.contains("Unable to locate") {
            bail!(
                "{spec} is not in {} any more ({}); pick a version that `apt-cache policy {}` \
                 lists and run `cargo xtask kernel bump --deb-version VERSION`",
                pin.suite,
                err.trim(),
                pin.package
            );
        }
        if err.contains("No space left") {
            bail!(
                "disk full while downloading {spec} into {}: free some space and retry",
                work.display()
            );
        }
        bail!("apt-get download {spec} failed: {}", err.trim());
    }
    let got = work.join(pin.deb_file_name());
    if !got.is_file() {
        bail!(
            "apt-get download said yes but {} is not there",
            got.display()
        );
    }
    Ok(got)
}

/// Checks the sha256 of a file against the pin.
pub fn verify_sha256(sh: &Shell, file: &Path, want: &str) -> Result<()> {
    let got = sha256(sh, file)?;
    if got != want {
        bail!(
            "checksum mismatch for {}: sha256 is {got}, the pin says {want}. \
             If kernel-src/kernel.toml was edited by hand, restore it (`git checkout \
             kernel-src/kernel.toml`); if the download is corrupt, delete {} and run \
             `cargo xtask kernel fetch` again; to move to another package version, run \
             `cargo xtask kernel bump --deb-version VERSION`",
            file.display(),
            file.display()
        );
    }
    Ok(())
}

pub fn sha256(sh: &Shell, file: &Path) -> Result<String> {
    let out = cmd!(sh, "sha256sum {file}")
        .quiet()
        .read()
        .with_context(|| format!("sha256sum {} failed", file.display()))?;
    out.split_whitespace()
        .next()
        .map(str::to_string)
        .context("sha256sum printed nothing")
}

fn free_bytes(dir: &Path) -> Option<u64> {
    let sh = Shell::new().ok()?;
    let out = cmd!(sh, "df --output=avail -B1 {dir}")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()?;
    out.lines().nth(1)?.trim().parse().ok()
}

/// Extracts the tarball from the .deb and turns it into a git tree with one base commit.
fn import(sh: &Shell, project: &Project, deb: &Path) -> Result<()> {
    let pin = &project.pin;
    let parent = project
        .tree
        .parent()
        .context("the kernel tree has no parent")?;
    fs_err::create_dir_all(parent)?;
    if let Some(free) = free_bytes(parent) {
        if free < NEEDED_BYTES {
            bail!(
                "only {} MiB free in {}, importing the kernel needs {} MiB: free some space and retry",
                free >> 20,
                parent.display(),
                NEEDED_BYTES >> 20
            );
        }
    }
    let staging = parent.join(".import");
    let _ = fs_err::remove_dir_all(&staging);
    fs_err::create_dir_all(&staging)?;
    eprintln!("extracting {} from {}", pin.tarball, deb.display());
    if let Err(err) = extract(sh, deb, &staging, &pin.tarball) {
        let _ = fs_err::remove_dir_all(&staging);
        if err.contains("No space left") {
            bail!(
                "disk full while extracting into {}: free some space and retry",
                staging.display()
            );
        }
        bail!("extracting {} failed: {}", deb.display(), err.trim());
    }
    // The tarball holds one top-level directory (linux-source-7.3).
    let top = fs_err::read_dir(&staging)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.join("Makefile").is_file())
        .with_context(|| format!("no kernel tree inside {}", pin.tarball))?;
    fix_gitignore(&top)?;
    git_import(sh, &top, pin)?;
    fs_err::rename(&top, &project.tree)
        .with_context(|| format!("cannot move the tree to {}", project.tree.display()))?;
    let _ = fs_err::remove_dir_all(&staging);
    eprintln!(
        "imported {} as {} in {}",
        pin.apt_spec(),
        pin.base_tag(),
        project.tree.display()
    );
    Ok(())
}

/// `dpkg-deb --fsys-tarfile DEB | tar -x ./TARBALL` into `staging`, then the
/// tarball itself there (and it removed); Err(what the tools printed).
fn extract(sh: &Shell, deb: &Path, staging: &Path, tarball: &str) -> Result<(), String> {
    let fail = |e: std::io::Error| e.to_string();
    // A pipe, streamed: std's Command (xshell runs no pipelines).
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(fail)?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(staging)
        .arg(format!("./{tarball}"))
        .stdin(dpkg.stdout.take().ok_or("no dpkg-deb output")?)
        .output()
        .map_err(fail)?;
    let dpkg = dpkg.wait_with_output().map_err(fail)?;
    if !dpkg.status.success() || !tar.status.success() {
        return Err(format!(
            "{}{}",
            String::from_utf8_lossy(&dpkg.stderr),
            String::from_utf8_lossy(&tar.stderr)
        ));
    }
    let inner = staging.join(tarball);
    let out = cmd!(sh, "tar -xJf {inner} -C {staging}")
        .quiet()
        .ignore_status()
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    fs_err::remove_file(&inner).map_err(|e| format!("cannot remove {}: {e}", inner.display()))
}

/// Debian's tarball ends its .gitignore with a stanza that ignores every top-level
/// path; cut it, or nothing added at the top level would ever be tracked.
pub fn strip_debian_gitignore(text: &str) -> String {
    match text.find("#\n# Debian packaging") {
        Some(i) => format!("{}\n", text[..i].trim_end_matches('\n')),
        None => text.to_string(),
    }
}

fn fix_gitignore(top: &Path) -> Result<()> {
    let path = top.join(".gitignore");
    let text =
        fs_err::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    write_atomic(&path, strip_debian_gitignore(&text).as_bytes())
}

fn git_import(sh: &Shell, top: &Path, pin: &Pin) -> Result<()> {
    let _d = sh.push_dir(top);
    let (name, email, date) = BASE_IDENT;
    let _e = [
        sh.push_env("GIT_AUTHOR_NAME", name),
        sh.push_env("GIT_AUTHOR_EMAIL", email),
        sh.push_env("GIT_AUTHOR_DATE", date),
        sh.push_env("GIT_COMMITTER_NAME", name),
        sh.push_env("GIT_COMMITTER_EMAIL", email),
        sh.push_env("GIT_COMMITTER_DATE", date),
    ];
    let msg = format!(
        "Linux {} (Debian {} {})\n\n\
         Imported by `cargo xtask kernel fetch` from Debian's {} package, version {}\n\
         (sha256 {}).\n\n\
         The \"Debian packaging\" stanza at the end of .gitignore, which ignores every\n\
         top-level path, is removed so that the tree can be tracked by git.\n",
        pin.version, pin.package, pin.deb_version, pin.package, pin.deb_version, pin.sha256
    );
    let tag = pin.base_tag();
    eprintln!("creating the base commit (about a minute)");
    cmd!(sh, "git init -q -b {tag}-branch").run()?;
    // The import commit holds ~90k files: with automatic gc on, git starts a detached
    // `git gc --auto` that expires the reflog under HEAD.lock while `apply` (run next
    // by test-qemu) checks out the work branch, which then fails with "cannot lock
    // ref 'HEAD'" (seen on a fresh machine, 2026-12-02). The xtask never needs gc here.
    cmd!(sh, "git config gc.auto 0").run()?;
    cmd!(sh, "git config maintenance.auto false").run()?;
    cmd!(sh, "git add -A")
        .run()
        .context("git add of the kernel tree failed")?;
    cmd!(sh, "git commit -q --no-verify -m {msg}").run()?;
    cmd!(sh, "git tag {tag}").run()?;
    // git am needs a committer identity; keep a developer's own if configured.
    if cmd!(sh, "git config user.email")
        .quiet()
        .ignore_stderr()
        .read()
        .is_err()
    {
        let (name, email) = (
            crate::common::identity::NEUTRAL_NAME,
            crate::common::identity::NEUTRAL_EMAIL,
        );
        cmd!(sh, "git config user.name {name}").run()?;
        cmd!(sh, "git config user.email {email}").run()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_the_debian_stanza_only() {
        let text =
            "*.o\n!kernel/time/timeconst.bc\n\n#\n# Debian packaging: ignore\n#\n/*\n!/debian/\n";
        assert_eq!(
            strip_debian_gitignore(text),
            "*.o\n!kernel/time/timeconst.bc\n"
        );
        assert_eq!(strip_debian_gitignore("*.o\n"), "*.o\n");
    }

    #[test]
    fn extracts_the_tarball_of_a_deb() {
        if crate::common::util::which("dpkg-deb").is_none() {
            return; // Not a Debian host: nothing to test with.
        }
        let sh = Shell::new().unwrap();
        let base = std::env::temp_dir().join(format!("xtask-deb-{}", std::process::id()));
        let pkg = base.join("pkg");
        let src = pkg.join("usr/src");
        fs_err::create_dir_all(src.join("linux-x")).unwrap();
        fs_err::create_dir_all(pkg.join("DEBIAN")).unwrap();
        fs_err::write(src.join("linux-x/Makefile"), "x\n").unwrap();
        fs_err::write(
            pkg.join("DEBIAN/control"),
            "Package: t\nVersion: 1\nArchitecture: all\nMaintainer: x <x@example.org>\nDescription: t\n",
        )
        .unwrap();
        cmd!(sh, "tar -cJf {src}/linux-x.tar.xz -C {src} linux-x")
            .run()
            .unwrap();
        fs_err::remove_dir_all(src.join("linux-x")).unwrap();
        let deb = base.join("t.deb");
        cmd!(sh, "dpkg-deb --build {pkg} {deb}")
            .quiet()
            .ignore_stdout()
            .run()
            .unwrap();
        let staging = base.join("staging");
        fs_err::create_dir_all(&staging).unwrap();
        extract(&sh, &deb, &staging, "usr/src/linux-x.tar.xz").unwrap();
        assert!(staging.join("linux-x/Makefile").is_file());
        assert!(!staging.join("usr/src/linux-x.tar.xz").exists());
        let err = extract(&sh, &deb, &staging, "usr/src/none.tar.xz").unwrap_err();
        assert!(!err.is_empty());
        let _ = fs_err::remove_dir_all(&base);
    }
}
