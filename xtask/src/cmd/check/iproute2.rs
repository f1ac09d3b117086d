//! The checks of the iproute2 series (patches/iproute2/, see
//! [`crate::common::iproute2`]): checkpatch on every patch, and with a checkout its
//! build.

use std::path::Path;

use anyhow::Result;
use xshell::Shell;

use super::{checkpatch, Check, Outcome, Status};
use crate::common::iproute2::{
    build, files, no_checkout_reason, subject_has_prefix, Iproute2Arg, ACCEPTED, COVER,
};
use crate::common::project::Project;

/// The checks of the iproute2 series for `cargo xtask check`: checkpatch with the
/// kernel tree's script (`kernel_wt`) on every patch, and, with a checkout and
/// without `fast`, that they apply and build without warnings.
pub fn check(
    sh: &Shell,
    project: &Project,
    kernel_wt: &Path,
    arg: &Iproute2Arg,
    fast: bool,
) -> Result<Vec<Outcome>> {
    let files = files(project)?;
    let mut cp = Outcome::new(Check::Iproute2Checkpatch, Status::Pass);
    for f in &files {
        let text = fs_err::read_to_string(f)?;
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if !subject_has_prefix(&text, "PATCH iproute2-next") {
            cp.status = cp.status.max(Status::Fail);
            cp.details.push(format!(
                "{name}: the subject is not [PATCH iproute2-next ...]"
            ));
        }
        if name == COVER {
            continue;
        }
        cp.details
            .extend(checkpatch(kernel_wt, f, &name, &mut cp.status)?);
    }
    let build = match (arg.checkout(), fast) {
        (None, _) => Outcome::skip(Check::Iproute2Build, no_checkout_reason()),
        (Some(_), true) => Outcome::skip(Check::Iproute2Build, "--fast"),
        (Some(c), false) => match build(sh, project, c) {
            Ok(b) => Outcome::from_findings(Check::Iproute2Build, Status::Warn, b.warnings),
            Err(e) => {
                let mut o = Outcome::new(Check::Iproute2Build, Status::Fail);
                o.details.push(format!("{e:#}"));
                o
            }
        },
    };
    Ok(vec![cp, build])
}

/// checkpatch --no-tree on one patch file, as for the kernel but with iproute2's
/// 100 columns and its MAINTAINERS style accepted; returns the findings.
fn checkpatch(
    kernel_wt: &Path,
    file: &Path,
    name: &str,
    status: &mut Status,
) -> Result<Vec<String>> {
    let (out, _) = checkpatch::invoke(
        kernel_wt,
        100,
        ACCEPTED,
        &[std::ffi::OsStr::new("--no-tree"), file.as_os_str()],
    )?;
    let (found, details) = checkpatch::judge(name, &out);
    *status = (*status).max(found);
    Ok(details)
}
