//! The KVM probe: whether this host's KVM boots our kernel (a nested KVM may not).

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::common::project::Project;
use crate::common::vm::{self, Accel};

/// The KVM probe's verdict, remembered per host kernel (a broken nested KVM stays
/// broken until the host changes); delete the cache file to probe again.
pub fn cached_probe(project: &Project, image: &Path) -> Result<bool> {
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let key = format!("host {}", host.trim());
    let file = project.cache_dir()?.join("kvm-probe");
    if let Ok(text) = std::fs::read_to_string(&file) {
        if let Some(verdict) = text.strip_prefix(&format!("{key}: ")) {
            eprintln!("KVM probe result cached in {}", file.display());
            return Ok(verdict.trim() == "works");
        }
    }
    let works = probe_kvm(project, image)?;
    let verdict = if works { "works" } else { "fails" };
    crate::common::util::write_atomic(&file, format!("{key}: {verdict}\n").as_bytes())?;
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
