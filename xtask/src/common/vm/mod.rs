//! Boots a built kernel in QEMU with the host's root read-only over 9p (as virtme-ng
//! does) and the checkout shared writable, runs a script as init's payload, and
//! watches the serial console.
//!
//! ttyS0 carries the kernel console (saved to console.log and watched for panics,
//! oopses, warnings and KVM failures); ttyS1 carries the payload's own output
//! (saved to output.log and streamed, timestamped, to the caller).

pub mod probe;

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::common::util::write_atomic;

/// Where the guest mounts the checkout (writable 9p share).
pub const GUEST_SHARE: &str = "/mnt";
/// Line the init prints on ttyS1 before the payload, and after it with the status.
const START_MARK: &str = "XTASK-PAYLOAD-START";
const EXIT_MARK: &str = "XTASK-PAYLOAD-EXIT ";

/// Kernel console lines that mean the run is broken.
const FATAL: &[&str] = &["Kernel panic - not syncing", "KVM internal error"];
/// Kernel console lines that mean the kernel misbehaved (the run goes on).
const PROBLEMS: &[&str] = &[
    "WARNING: ",
    "BUG: ",
    "Oops: ",
    "general protection fault",
    "UBSAN: ",
    "KASAN: ",
    "kernel BUG at",
    "INFO: task ",
    "rcu: INFO:",
    "unreferenced object",
    "refcount_t: ",
    "Call Trace:",
];

/// What the payload writes to /dev/kmsg to start a section of the kernel log (the
/// selftest it is about to run): a report is attributed to the section it appears in.
pub const SECTION_MARK: &str = "xtask-section: ";
/// The section before the payload's first mark.
pub const BOOT_SECTION: &str = "boot";
/// Console lines kept after a report's first line (its trace).
const REPORT_LINES: usize = 12;

/// One kernel report (a WARNING, lockdep splat, KASAN report, ...): its first line
/// and up to [`REPORT_LINES`] after it, and the section it appeared in.
#[derive(Debug, Clone, PartialEq)]
pub struct Splat {
    pub section: String,
    pub lines: Vec<String>,
}

impl Splat {
    /// The first line without its printk timestamp.
    pub fn title(&self) -> &str {
        let l = self.lines.first().map_or("", String::as_str).trim();
        match l.strip_prefix('[').and_then(|r| r.split_once("] ")) {
            Some((_, rest)) => rest.trim(),
            None => l,
        }
    }
}

/// Watches console lines: sections and reports.
#[derive(Debug, Default)]
pub struct ConsoleWatch {
    pub section: Option<String>,
    pub sections: Vec<String>,
    pub splats: Vec<Splat>,
    /// Lines still to add to the last report.
    trace_lines: usize,
}

impl ConsoleWatch {
    pub fn line(&mut self, line: &str) {
        if let Some(i) = line.find(SECTION_MARK) {
            let name = line[i + SECTION_MARK.len()..].trim().to_string();
            self.sections.push(name.clone());
            self.section = Some(name);
            self.trace_lines = 0;
            return;
        }
        let problem = PROBLEMS.iter().any(|p| line.contains(p));
        if self.trace_lines > 0 {
            if let Some(last) = self.splats.last_mut() {
                last.lines.push(line.to_string());
            }
            self.trace_lines -= 1;
            if problem {
                // Part of the same report (its "Call Trace:", the lockdep chain).
                self.trace_lines = REPORT_LINES;
            }
            return;
        }
        if problem {
            let section = self
                .section
                .clone()
                .unwrap_or_else(|| BOOT_SECTION.to_string());
            self.splats.push(Splat {
                section,
                lines: vec![line.to_string()],
            });
            self.trace_lines = REPORT_LINES;
        }
    }
}

/// Accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

/// One guest run.
#[derive(Debug, Clone)]
pub struct Run {
    /// bzImage to boot.
    pub image: PathBuf,
    /// INSTALL_MOD_PATH of the build (modprobe looks there).
    pub modroot: Option<PathBuf>,
    /// The checkout, shared writable at [`GUEST_SHARE`].
    pub root: PathBuf,
    /// Directory for init, payload and logs (inside `root`).
    pub dir: PathBuf,
    /// Shell script run as root in the guest.
    pub payload: String,
    /// Hard limit for the whole run.
    pub timeout: Duration,
    pub accel: Accel,
    /// Extra kernel command line.
    pub cmdline: String,
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Payload output lines, with seconds since the payload started.
    pub lines: Vec<(f64, String)>,
    /// Exit status of the payload, if it finished.
    pub exit: Option<i32>,
    /// Kernel reports, with the section they appeared in.
    pub problems: Vec<Splat>,
    /// Sections the payload marked, in order.
    pub sections: Vec<String>,
    /// A fatal console line, if any.
    pub fatal: Option<String>,
    pub timed_out: bool,
    /// Seconds from QEMU start to the payload start.
    pub boot_seconds: f64,
    /// Seconds the payload ran.
    pub payload_seconds: f64,
    pub console_log: PathBuf,
    /// The kernel console as it came (also in `console_log`, which may fail to
    /// be written): KUnit's KTAP is read from here.
    pub console: String,
}

/// The guest path of a host path inside the checkout.
pub fn guest_path(root: &Path, host: &Path) -> Result<String> {
    let rel = host.strip_prefix(root).with_context(|| {
        format!(
            "{} is not inside the checkout {}",
            host.display(),
            root.display()
        )
    })?;
    Ok(format!("{GUEST_SHARE}/{}", rel.display()))
}

fn init_script(run: &Run) -> Result<String> {
    let payload = guest_path(&run.root, &run.dir.join("payload.sh"))?;
    let modprobe = match &run.modroot {
        Some(m) => format!(
            "mkdir -p /run/xtask-bin\n\
             printf '#!/bin/sh\\nexec /sbin/modprobe -d {} \"$@\"\\n' > /run/xtask-bin/modprobe\n\
             chmod +x /run/xtask-bin/modprobe\n\
             echo /run/xtask-bin/modprobe > /proc/sys/kernel/modprobe\n\
             export PATH=/run/xtask-bin:$PATH\n\
             export RDMABOND_MODROOT={}\n",
            guest_path(&run.root, m)?,
            guest_path(&run.root, m)?
        ),
        None => String::new(),
    };
    Ok(format!(
        r#"#!/bin/sh
# Written by cargo xtask: init of the test guest. The host root is mounted read-only.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,access=any,cache=none xtask {share}
for d in /tmp /run /var/lib /var/tmp /var/log /var/cache /root; do
	mount -t tmpfs -o mode=0755 tmpfs "$d"
done
chmod 1777 /tmp
mkdir -p /dev/pts /dev/shm /run/netns
mount -t devpts -o ptmxmode=666 devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
hostname rdmabond-guest
ip link set lo up
{modprobe}exec </dev/null >/dev/ttyS1 2>&1
stty -F /dev/ttyS1 raw -echo 2>/dev/null
echo {start}
cd /tmp
sh {payload}
echo "{exit}$?"
sync
reboot -f
"#,
        share = GUEST_SHARE,
        modprobe = modprobe,
        start = START_MARK,
        exit = EXIT_MARK,
        payload = payload,
    ))
}

fn qemu_command(run: &Run, output: &Path, init: &Path) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    match run.accel {
        Accel::Kvm => c.args(["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => c.args(["-accel", "tcg,thread=multi", "-cpu", "max"]),
    };
    c.args([
        "-smp",
        "2",
        "-m",
        "2048",
        "-nodefaults",
        "-no-reboot",
        "-display",
        "none",
    ])
    .args(["-monitor", "none"])
    .arg("-kernel")
    .arg(&run.image)
    .args(["-serial", "stdio"])
    .arg("-serial")
    .arg(format!("file:{}", output.display()))
    .args([
        "-fsdev",
        "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
    ])
    .args(["-device", "virtio-9p-pci,fsdev=root,mount_tag=root"])
    .arg("-fsdev")
    .arg(format!(
        "local,id=xtask,path={},security_model=none,multidevs=remap",
        run.root.display()
    ))
    .args(["-device", "virtio-9p-pci,fsdev=xtask,mount_tag=xtask"])
    .arg("-append")
    .arg(format!(
        "console=ttyS0 earlyprintk=serial,ttyS0 root=root rootfstype=9p \
             rootflags=trans=virtio,version=9p2000.L,msize=262144 ro init={} \
             panic=-1 oops=panic panic_on_warn=0 loglevel=7 printk.time=1 {}",
        init.display(),
        run.cmdline
    ))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

/// Boots the guest and runs the payload, streaming payload lines to `on_line`.
pub fn run(run: &Run, mut on_line: impl FnMut(f64, &str)) -> Result<Outcome> {
    fs_err::create_dir_all(&run.dir)?;
    if !run.image.is_file() {
        bail!(
            "no kernel image at {}: run `cargo xtask build`",
            run.image.display()
        );
    }
    if !Path::new(GUEST_SHARE).is_dir() {
        bail!("the host has no {GUEST_SHARE} directory for the guest to mount the checkout on");
    }
    let init = run.dir.join("init.sh");
    write_atomic(&init, init_script(run)?.as_bytes())?;
    set_executable(&init)?;
    write_atomic(&run.dir.join("payload.sh"), run.payload.as_bytes())?;
    let console = run.dir.join("console.log");
    let output = run.dir.join("output.log");
    let _ = fs_err::remove_file(&output);
    std::fs::File::create(&output)?;

    let mut child = qemu_command(run, &output, &init)
        .spawn()
        .context("cannot start qemu-system-x86_64")?;
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().context("no qemu stdout")?;
    let stderr = child.stderr.take().context("no qemu stderr")?;
    let tx2 = tx.clone();
    let readers = [
        std::thread::spawn(move || pump(stdout, tx)),
        std::thread::spawn(move || pump(stderr, tx2)),
    ];
    let mut console_file = Some(fs_err::File::create(&console)?.into_parts().0);
    let mut out = Outcome {
        console_log: console.clone(),
        ..Outcome::default()
    };
    let started = Instant::now();
    let mut payload_start: Option<Instant> = None;
    let mut tail = Tail::new(&output)?;
    let mut kill_at: Option<Instant> = None;
    let mut watch = ConsoleWatch::default();
    loop {
        // Kernel console.
        while let Ok(line) = rx.try_recv() {
            console_line(&mut console_file, &console, &mut out.console, &line);
            if let Some(p) = FATAL.iter().find(|p| line.contains(*p)) {
                out.fatal.get_or_insert_with(|| line.clone());
                // Give the panic a moment to print its trace.
                kill_at.get_or_insert(
                    Instant::now() + Duration::from_secs(if p.starts_with("KVM") { 0 } else { 3 }),
                );
            } else {
                watch.line(&line);
            }
        }
        // Payload output.
        for line in tail.read_lines()? {
            let line = line.trim_end_matches('\r').to_string();
            if line == START_MARK {
                payload_start = Some(Instant::now());
                out.boot_seconds = started.elapsed().as_secs_f64();
                continue;
            }
            if let Some(code) = line.strip_prefix(EXIT_MARK) {
                out.exit = code.trim().parse().ok();
                kill_at.get_or_insert(Instant::now() + Duration::from_secs(10));
                continue;
            }
            let t = payload_start.map_or(0.0, |s| s.elapsed().as_secs_f64());
            on_line(t, &line);
            out.lines.push((t, line));
        }
        if let Some(status) = child.try_wait()? {
            let _ = status;
            break;
        }
        if started.elapsed() > run.timeout {
            out.timed_out = true;
            break;
        }
        if kill_at.is_some_and(|k| Instant::now() >= k) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop(&mut child);
    for r in readers {
        let _ = r.join();
    }
    // Drain what is left.
    while let Ok(line) = rx.try_recv() {
        console_line(&mut console_file, &console, &mut out.console, &line);
        watch.line(&line);
    }
    out.problems = watch.splats;
    out.sections = watch.sections;
    for line in tail.read_lines()? {
        let line = line.trim_end_matches('\r').to_string();
        if let Some(code) = line.strip_prefix(EXIT_MARK) {
            out.exit = code.trim().parse().ok();
        } else if line != START_MARK {
            let t = payload_start.map_or(0.0, |s| s.elapsed().as_secs_f64());
            on_line(t, &line);
            out.lines.push((t, line));
        }
    }
    out.payload_seconds = payload_start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    Ok(out)
}

/// Keeps a console line in memory and in console.log; says once when the file
/// cannot be written (the run goes on: the lines are still in memory).
fn console_line(file: &mut Option<std::fs::File>, path: &Path, text: &mut String, line: &str) {
    use std::io::Write;
    text.push_str(line);
    text.push('\n');
    if let Some(f) = file {
        if let Err(e) = writeln!(f, "{line}") {
            eprintln!(
                "warning: cannot write {}: {e} (the console is kept in memory)",
                path.display()
            );
            *file = None;
        }
    }
}

fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

fn pump(reader: impl Read, tx: mpsc::Sender<String>) {
    let mut r = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                if tx.send(line).is_err() {
                    return;
                }
            }
        }
    }
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut p = fs_err::metadata(path)?.permissions();
    p.set_mode(0o755);
    fs_err::set_permissions(path, p)?;
    Ok(())
}

/// Follows a growing file and returns its complete new lines.
struct Tail {
    file: std::fs::File,
    pos: u64,
    partial: Vec<u8>,
}

impl Tail {
    fn new(path: &Path) -> Result<Tail> {
        Ok(Tail {
            file: std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?,
            pos: 0,
            partial: Vec::new(),
        })
    }

    fn read_lines(&mut self) -> Result<Vec<String>> {
        self.file.seek(SeekFrom::Start(self.pos))?;
        let mut buf = Vec::new();
        let n = self.file.read_to_end(&mut buf)?;
        self.pos += n as u64;
        self.partial.extend_from_slice(&buf);
        let mut lines = Vec::new();
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            lines.push(String::from_utf8_lossy(&line[..line.len() - 1]).to_string());
        }
        Ok(lines)
    }
}

/// Chooses the accelerator: `RDMABOND_ACCEL=kvm|tcg`, else KVM only when a probe
/// boot with it reaches the payload, else TCG (nested KVM is often broken).
pub fn choose_accel(probe: impl FnOnce() -> Result<bool>) -> Result<(Accel, String)> {
    match std::env::var("RDMABOND_ACCEL").ok().as_deref() {
        Some("kvm") => return Ok((Accel::Kvm, "RDMABOND_ACCEL=kvm".into())),
        Some("tcg") => return Ok((Accel::Tcg, "RDMABOND_ACCEL=tcg".into())),
        Some(other) => bail!("RDMABOND_ACCEL must be kvm or tcg, not `{other}`"),
        None => {}
    }
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !usable {
        return Ok((Accel::Tcg, "no usable /dev/kvm".into()));
    }
    if probe()? {
        Ok((Accel::Kvm, "KVM probe boot succeeded".into()))
    } else {
        Ok((Accel::Tcg, "KVM probe boot failed (nested KVM?)".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_are_under_the_share() {
        let root = Path::new("/src/rdmabond");
        assert_eq!(
            guest_path(root, Path::new("/src/rdmabond/target/vm/payload.sh")).unwrap(),
            "/mnt/target/vm/payload.sh"
        );
        assert!(guest_path(root, Path::new("/elsewhere/x")).is_err());
    }

    #[test]
    fn init_runs_the_payload_and_reports_status() {
        let run = Run {
            image: "/src/r/target/kbuild-y/arch/x86/boot/bzImage".into(),
            modroot: Some("/src/r/target/kbuild-y/modroot".into()),
            root: "/src/r".into(),
            dir: "/src/r/target/vm/test".into(),
            payload: "true\n".into(),
            timeout: Duration::from_secs(1),
            accel: Accel::Tcg,
            cmdline: String::new(),
        };
        let init = init_script(&run).unwrap();
        assert!(init.contains("sh /mnt/target/vm/test/payload.sh\n"));
        assert!(init.contains("modprobe -d /mnt/target/kbuild-y/modroot"));
        assert!(init.contains(START_MARK));
        assert!(init.contains(EXIT_MARK));
    }

    #[test]
    fn reports_are_attributed_to_sections() {
        let mut w = ConsoleWatch::default();
        w.line("[    1.0] WARNING: CPU: 0 PID: 1 at boot.c:1 f+0x1/0x2");
        w.line("[    1.1] Call Trace:");
        w.line("[    2.0] xtask-section: drivers/net/rdmabond:basic.sh");
        w.line("[    2.1] rdmabond: rb0: port a0 added");
        w.line("[    3.0] ============================================");
        w.line("[    3.0] WARNING: possible circular locking dependency detected");
        w.line("[    3.1] kworker/0:1/12 is trying to acquire lock:");
        w.line("[    3.2] Call Trace:");
        w.line("[    4.0] xtask-section: drivers/net/rdmabond:teardown.sh");
        w.line("[    4.1] BUG: KASAN: slab-use-after-free in rdmabond_x+0x1/0x2");
        assert_eq!(w.sections.len(), 2);
        assert_eq!(w.splats.len(), 3);
        assert_eq!(w.splats[0].section, BOOT_SECTION);
        assert_eq!(w.splats[0].lines.len(), 2);
        assert_eq!(w.splats[1].section, "drivers/net/rdmabond:basic.sh");
        assert_eq!(
            w.splats[1].title(),
            "WARNING: possible circular locking dependency detected"
        );
        assert_eq!(w.splats[1].lines.len(), 3);
        assert_eq!(w.splats[2].section, "drivers/net/rdmabond:teardown.sh");
    }

    #[test]
    fn tail_returns_complete_lines_only() {
        let p = std::env::temp_dir().join(format!("xtask-tail-{}", std::process::id()));
        fs_err::write(&p, "a\nb").unwrap();
        let mut t = Tail::new(&p).unwrap();
        assert_eq!(t.read_lines().unwrap(), vec!["a"]);
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"c\nd\n")
            .unwrap();
        assert_eq!(t.read_lines().unwrap(), vec!["bc", "d"]);
        fs_err::remove_file(&p).unwrap();
    }
}
