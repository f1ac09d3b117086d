//! The KVM probe: whether this host's KVM boots our kernel (a nested KVM may not).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;

use crate::common::project::Project;
use crate::common::vm::{self, Accel};

/// How long a failed probe is believed: then KVM is probed again (a nested KVM
/// can be fixed, a busy host can time the probe out once).
const FAILED_FOR: Duration = Duration::from_secs(6 * 3600);

/// What the verdict depends on: the host kernel, whether /dev/kvm exists, and the
/// QEMU binary (its path and modification time, which an upgrade changes).
fn probe_key() -> String {
    let host = fs_err::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let kvm = Path::new("/dev/kvm").exists();
    let qemu = crate::common::util::which("qemu-system-x86_64");
    let qemu_time = qemu
        .as_deref()
        .and_then(|q| fs_err::metadata(q).ok())
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    format!(
        "host {} kvm {} qemu {}@{qemu_time}",
        host.trim(),
        if kvm { "yes" } else { "no" },
        qemu.map_or("none".into(), |q| q.display().to_string())
    )
}

/// The cache file's line: `KEY: works|fails AT` (AT in seconds since the epoch).
fn render_verdict(key: &str, works: bool, at: u64) -> String {
    format!("{key}: {} {at}\n", if works { "works" } else { "fails" })
}

/// The cached verdict for `key` at time `now`: a working KVM is believed until the
/// key changes, a failed one for [`FAILED_FOR`]. None: probe again.
fn cached_verdict(text: &str, key: &str, now: u64) -> Option<bool> {
    let rest = text.trim().strip_prefix(key)?.strip_prefix(": ")?;
    let (verdict, at) = rest.split_once(' ')?;
    let at: u64 = at.trim().parse().ok()?;
    match verdict {
        "works" => Some(true),
        "fails" if now.saturating_sub(at) < FAILED_FOR.as_secs() => Some(false),
        _ => None,
    }
}

/// The KVM probe's verdict, cached (see [`cached_verdict`] and [`probe_key`]);
/// delete the cache file to probe again at once.
pub fn cached_probe(project: &Project, image: &Path) -> Result<bool> {
    let key = probe_key();
    let file = project.cache_dir()?.join("kvm-probe");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Ok(text) = fs_err::read_to_string(&file) {
        if let Some(works) = cached_verdict(&text, &key, now) {
            eprintln!("KVM probe result cached in {}", file.display());
            return Ok(works);
        }
    }
    let works = probe_kvm(project, image)?;
    crate::common::util::write_atomic(&file, render_verdict(&key, works, now).as_bytes())?;
    Ok(works)
}

/// Boots the kernel once with KVM and a trivial payload.
fn probe_kvm(project: &Project, image: &Path) -> Result<bool> {
    let run = vm::Run {
        image: image.to_path_buf(),
        modroot: None,
        root: project.root.clone(),
        dir: project.target_dir().join("vm/kvm-probe"),
        payload: "echo probe-ok\n".into(),
        timeout: Duration::from_secs(20),
        accel: Accel::Kvm,
        cmdline: String::new(),
    };
    let out = vm::run(&run, |_, _| {})?;
    Ok(out.exit == Some(0) && out.fatal.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_probe_expires_and_a_new_host_probes_again() {
        let key = "host 6.1 kvm yes qemu /usr/bin/qemu-system-x86_64@100";
        let works = render_verdict(key, true, 1000);
        assert_eq!(cached_verdict(&works, key, 1000 + 365 * 86400), Some(true));
        let fails = render_verdict(key, false, 1000);
        assert_eq!(cached_verdict(&fails, key, 1000 + 60), Some(false));
        assert_eq!(
            cached_verdict(&fails, key, 1000 + FAILED_FOR.as_secs()),
            None
        );
        let other = "host 6.2 kvm yes qemu /usr/bin/qemu-system-x86_64@100";
        assert_eq!(cached_verdict(&works, other, 1000), None);
        // The old format (no time, host kernel only) is probed again.
        assert_eq!(cached_verdict("host 6.1: fails\n", "host 6.1", 1000), None);
        assert_eq!(cached_verdict("", key, 1000), None);
    }
}
