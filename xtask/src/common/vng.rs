//! The selftests as the netdev CI runs them: virtme-ng (`vng`, from PyPI) boots
//! the build and runs `make -C tools/testing/selftests TARGETS=<dir> run_tests`
//! in the kernel tree, which the guest sees through a writable overlay (the host
//! copy is never written). The KTAP it prints is parsed like the xtask runner's;
//! the kernel log (dmesg, printed after a marker) is checked for reports.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::common::ktap::{Case, Outcome};
use crate::common::vm::{self, ConsoleWatch};

/// The PyPI package and the version the xtask was written against.
pub const PACKAGE: &str = "virtme-ng";
/// Printed between the selftests' output and the kernel log.
pub const DMESG_MARK: &str = "XTASK-VNG-DMESG";
/// virtme-ng-init's lines around the script. Without udev (a container host)
/// it finds no virtio-serial script ports and runs the script on the console,
/// which vng shows only with --verbose; and without ACPI the guest cannot power
/// off after it ("System halted"): the script's end is read from the console.
const SCRIPT_START: &str = "virtme-ng-init: starting script";
const SCRIPT_EXIT: &str = "virtme-ng-init: script exited with code ";

/// Installs virtme-ng from PyPI when it is missing and we are root (as the
/// Debian packages are), or says how.
pub fn ensure_installed() -> Result<()> {
    if crate::common::util::which("vng").is_some() {
        return Ok(());
    }
    if !crate::common::deps::is_root() {
        bail!("vng not found: install it with `python3 -m pip install {PACKAGE}`");
    }
    eprintln!("vng not found: installing {PACKAGE} from PyPI");
    let sh = xshell::Shell::new()?;
    let ok = xshell::cmd!(sh, "python3 -m pip install --quiet {PACKAGE}")
        .run()
        .is_ok();
    if !ok || crate::common::util::which("vng").is_none() {
        bail!("`python3 -m pip install {PACKAGE}` did not give a vng in PATH");
    }
    Ok(())
}

/// Builds the selftests of `target` (and net/lib, which `run_tests` builds for
/// the networking targets: libbpf and BPF objects) on the host, in the tree, so
/// that `run_tests` in the guest finds them built instead of compiling them
/// under TCG. The outputs are ignored by the tree's .gitignore files.
pub fn prebuild(sh: &xshell::Shell, tree: &Path, target: &str, log: &Path) -> Result<()> {
    let dir = tree.join("tools/testing/selftests");
    let targets = format!("TARGETS={target}");
    let clang = format!("CLANG={}", crate::common::deps::SELFTEST_CLANG);
    let out = xshell::cmd!(sh, "make -C {dir} {targets} {clang} -j2 all")
        .ignore_status()
        .output()
        .with_context(|| format!("cannot run make in {}", dir.display()))?;
    let mut text = out.stdout;
    text.extend_from_slice(&out.stderr);
    crate::common::util::write_atomic(log, &text)?;
    if !out.status.success() {
        bail!(
            "building the selftests of {target} failed (log: {})",
            log.display()
        );
    }
    Ok(())
}

/// `make -C tools/testing/selftests TARGETS=<target> run_tests`, limited to
/// `tests` (TEST_PROGS on the command line overrides the Makefile's) if given.
pub fn make_command(target: &str, tests: Option<&[String]>) -> String {
    let mut cmd = format!("make -C tools/testing/selftests TARGETS={target}");
    if let Some(t) = tests {
        cmd.push_str(&format!(" TEST_PROGS='{}'", t.join(" ")));
    }
    cmd.push_str(" run_tests");
    cmd
}

/// The vng command line: boot `image` (a bzImage) with the host's root, the
/// kernel `tree` writable through an overlay and the working directory, and run
/// `inner` then dmesg.
pub fn command_line(
    image: &Path,
    tree: &Path,
    kvm: bool,
    inner: &str,
    env: &[(String, String)],
) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "vng".into(),
        "--run".into(),
        image.display().to_string(),
        "--force-9p".into(),
        "--disable-microvm".into(),
        "--cpus".into(),
        "2".into(),
        "--memory".into(),
        "4G".into(),
        "--verbose".into(),
        format!("--overlay-rwdir={}", tree.display()),
        format!("--cwd={}", tree.display()),
    ];
    if !kvm {
        v.push("--disable-kvm".into());
    }
    let exports: String = env
        .iter()
        .map(|(k, val)| format!("export {k}={}; ", crate::common::util::sh_quote(val)))
        .collect();
    v.push("--".into());
    v.push("sh".into());
    v.push("-c".into());
    v.push(format!(
        "{exports}{inner}; rc=$?; echo {DMESG_MARK}; dmesg --color=never; exit $rc"
    ));
    v
}

/// What a vng run left.
#[derive(Debug, Default)]
pub struct VngOutcome {
    /// The selftests' output, with seconds since the start.
    pub ktap: Vec<(f64, String)>,
    /// The kernel log printed after the run.
    pub dmesg: Vec<String>,
    pub exit: Option<i32>,
    pub timed_out: bool,
    pub seconds: f64,
    pub log: PathBuf,
}

/// The script's output, without the boot before it; the script's exit code.
pub fn script_part(lines: Vec<(f64, String)>) -> (Vec<(f64, String)>, Option<i32>) {
    let start = lines
        .iter()
        .position(|l| l.1.contains(SCRIPT_START))
        .map_or(0, |i| i + 1);
    let mut code = None;
    let mut out = Vec::new();
    for l in lines.into_iter().skip(start) {
        if let Some(i) = l.1.find(SCRIPT_EXIT) {
            code = l.1[i + SCRIPT_EXIT.len()..].trim().parse().ok();
            break;
        }
        out.push(l);
    }
    (out, code)
}

/// Splits the script's output at [`DMESG_MARK`].
pub fn split(lines: Vec<(f64, String)>) -> (Vec<(f64, String)>, Vec<String>) {
    match lines.iter().position(|l| l.1.trim() == DMESG_MARK) {
        Some(i) => {
            let dmesg = lines[i + 1..].iter().map(|l| l.1.clone()).collect();
            let mut ktap = lines;
            ktap.truncate(i);
            (ktap, dmesg)
        }
        None => (lines, Vec::new()),
    }
}

/// Runs `args` (from [`command_line`]), streaming its output to `log`; kills it
/// after `timeout`.
pub fn run(args: &[String], timeout: Duration, log: &Path) -> Result<VngOutcome> {
    if crate::common::util::which(&args[0]).is_none() {
        bail!(
            "{} not found: install it with `python3 -m pip install {PACKAGE}` (PyPI)",
            args[0]
        );
    }
    if let Some(d) = log.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    // Its own process group: vng runs QEMU as a child, which must go too.
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", args[0]))?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for l in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let start = Instant::now();
    let mut lines = Vec::new();
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(l) => {
                let t = start.elapsed().as_secs_f64();
                writeln!(file, "{l}").with_context(|| format!("cannot write {}", log.display()))?;
                if l.starts_with("ok ")
                    || l.starts_with("not ok ")
                    || l.starts_with("# selftests: ")
                {
                    eprintln!("[vng {t:6.0}s] {l}");
                }
                let end = l.contains(SCRIPT_EXIT);
                lines.push((t, l));
                if end {
                    // The guest halts instead of powering off: stop it.
                    kill_group(child.id());
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if start.elapsed() > timeout {
            timed_out = true;
            kill_group(child.id());
            break;
        }
    }
    child.wait().context("cannot wait for vng")?;
    // The readers end with the pipes, once QEMU is gone too.
    drop(rx);
    drop(readers);
    let (script, code) = script_part(lines);
    let (ktap, dmesg) = split(script);
    Ok(VngOutcome {
        ktap,
        dmesg,
        exit: if timed_out { None } else { code },
        timed_out,
        seconds: start.elapsed().as_secs_f64(),
        log: log.to_path_buf(),
    })
}

/// Kills vng's process group (vng and its QEMU).
fn kill_group(pid: u32) {
    let group = format!("-{pid}");
    if let Ok(sh) = xshell::Shell::new() {
        let _ = xshell::cmd!(sh, "kill -KILL -- {group}").quiet().run();
    }
}

/// The cases of a vng run: its selftests, a case for the kernel log, and one
/// for a run that stopped early.
pub fn cases(out: &VngOutcome, expected: usize) -> Vec<Case> {
    let report = crate::common::ktap::parse(out.ktap.iter().map(|(t, l)| (*t, l.as_str())));
    let mut cases = report.cases.clone();
    let mut watch = ConsoleWatch::default();
    for l in &out.dmesg {
        watch.line(l);
    }
    let first: Option<&vm::Splat> = watch.splats.first();
    cases.push(Case {
        name: "kernel log of the vng run: no WARNING, BUG, lockdep, KASAN, RCU or refcount report"
            .into(),
        outcome: match (first, out.dmesg.is_empty()) {
            (Some(_), _) | (None, true) => Outcome::Fail,
            (None, false) => Outcome::Pass,
        },
        directive: match (first, out.dmesg.is_empty()) {
            (Some(s), _) => Some(s.title().to_string()),
            (None, true) => Some("no kernel log: the run did not get to dmesg".into()),
            (None, false) => None,
        },
        seconds: 0.0,
        subtests: Vec::new(),
    });
    let got = report.cases.len();
    if got < expected || out.timed_out {
        cases.push(Case {
            name: format!("vng run: {expected} selftests reported"),
            outcome: Outcome::Fail,
            directive: Some(format!(
                "{got} reported{} (log: {})",
                if out.timed_out { ", timed out" } else { "" },
                out.log.display()
            )),
            seconds: out.seconds,
            subtests: Vec::new(),
        });
    }
    cases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        assert_eq!(
            make_command("drivers/net/rdmabond", None),
            "make -C tools/testing/selftests TARGETS=drivers/net/rdmabond run_tests"
        );
        let t = vec!["basic.sh".to_string(), "netlink.sh".to_string()];
        assert!(make_command("x", Some(&t)).contains("TEST_PROGS='basic.sh netlink.sh' run_tests"));
        let v = command_line(
            Path::new("/b/bzImage"),
            Path::new("/k"),
            false,
            "make x",
            &[("RB_IP".into(), "/i p".into())],
        );
        assert_eq!(&v[..3], ["vng", "--run", "/b/bzImage"]);
        assert!(v.contains(&"--disable-kvm".to_string()));
        assert!(v.contains(&"--overlay-rwdir=/k".to_string()));
        let last = v.last().unwrap();
        assert!(last.starts_with("export RB_IP='/i p'; make x; rc=$?; echo XTASK-VNG-DMESG"));
    }

    #[test]
    fn the_script_part_of_the_console() {
        let l = |s: &str| (0.0, s.to_string());
        let (out, code) = script_part(vec![
            l("ok 1 rust_rdmabond"),
            l("virtme-ng-init: starting script (console fallback)"),
            l("TAP version 13"),
            l("virtme-ng-init: script exited with code 2"),
            l("reboot: Power off not available: System halted instead"),
        ]);
        assert_eq!(out, [l("TAP version 13")]);
        assert_eq!(code, Some(2));
        assert_eq!(script_part(vec![l("x")]).1, None);
    }

    #[test]
    fn splits_and_judges() {
        let l = |s: &str| (0.0, s.to_string());
        let lines = vec![
            l("TAP version 13"),
            l("1..2"),
            l("# selftests: drivers/net/rdmabond: basic.sh"),
            l("ok 1 selftests: drivers/net/rdmabond: basic.sh"),
            l("not ok 2 selftests: drivers/net/rdmabond: netlink.sh # exit=1"),
            l(DMESG_MARK),
            l("[  1.0] rb0: added port a0"),
        ];
        let (k, d) = split(lines.clone());
        assert_eq!(k.len(), 5);
        assert_eq!(d, ["[  1.0] rb0: added port a0"]);
        let out = VngOutcome {
            ktap: k,
            dmesg: d,
            ..Default::default()
        };
        let c = cases(&out, 2);
        assert_eq!(c.len(), 3);
        assert_eq!(c[1].outcome, Outcome::Fail);
        assert_eq!(c[2].outcome, Outcome::Pass);
        // a run that stopped early, and one with a report
        let mut out2 = VngOutcome {
            ktap: out.ktap[..4].to_vec(),
            dmesg: vec!["[ 2.0] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2".into()],
            ..Default::default()
        };
        let c = cases(&out2, 2);
        assert_eq!(c.last().unwrap().outcome, Outcome::Fail);
        assert_eq!(c[1].outcome, Outcome::Fail);
        out2.dmesg.clear();
        assert!(cases(&out2, 1)[1]
            .directive
            .as_deref()
            .unwrap()
            .contains("no kernel log"));
    }
}
