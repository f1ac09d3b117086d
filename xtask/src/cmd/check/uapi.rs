//! uapi consistency: bindgen reads the enums of the patched include/uapi/linux/if_link.h;
//! every IFLA_RDMABOND_* attribute must be in the YNL spec (rt-link.yaml, same value)
//! and in the driver's netlink policy, and no patch may renumber or remove an
//! existing if_link.h enum constant (uapi enums are only appended to).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::LazyLock;

use anyhow::{Context, Result};
use regex::Regex;
use xshell::{cmd, Shell};

use super::series::SeriesCtx;
use super::{Check, Ctx, Outcome, Status};

/// The uapi header the link type extends.
pub const HEADER: &str = "include/uapi/linux/if_link.h";
/// Its YNL spec.
pub const SPEC: &str = "Documentation/netlink/specs/rt-link.yaml";
/// The driver's netlink policy.
pub const POLICY: &str = "drivers/infiniband/ulp/rdmabond/netlink.c";
/// The attribute prefix of the link type.
pub const PREFIX: &str = "IFLA_RDMABOND_";

/// Constants of the header's enums, in order: (name, value).
pub type Enums = Vec<(String, i64)>;

/// Runs bindgen on `header` of the tree at `root` and returns its enum constants.
pub fn header_enums(root: &Path, header: &str) -> Result<Enums> {
    if std::env::var_os("LIBCLANG_PATH").is_none() {
        std::env::set_var("LIBCLANG_PATH", crate::common::deps::LIBCLANG_PATH);
    }
    let path = root.join(header);
    let file_re = format!(".*/{}", regex::escape(header));
    let bindings = bindgen::Builder::default()
        .header(path.to_string_lossy())
        .clang_arg("-D__EXPORTED_HEADERS__")
        .clang_arg(format!("-I{}", root.join("include/uapi").display()))
        .clang_arg(format!(
            "-I{}",
            root.join("arch/x86/include/uapi").display()
        ))
        .allowlist_file(file_re)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .layout_tests(false)
        .generate()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("bindgen cannot parse {header}"))?;
    Ok(parse_consts(&bindings.to_string()))
}

/// `pub const NAME: type = VALUE;` items of bindgen output.
pub fn parse_consts(rust: &str) -> Enums {
    static RE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"pub const (\w+): [\w:]+ = (-?\d+);").unwrap());
    let re = &*RE;
    re.captures_iter(rust)
        .filter_map(|c| Some((c[1].to_string(), c[2].parse().ok()?)))
        .collect()
}

/// The real attributes: no UNSPEC, no `__..._MAX`, no `..._MAX`.
fn attrs(e: &Enums) -> impl Iterator<Item = &(String, i64)> {
    e.iter()
        .filter(|(n, _)| n.starts_with(PREFIX) && !n.ends_with("_UNSPEC") && !n.ends_with("_MAX"))
}

/// Existing constants a change renumbers or removes.
pub fn not_appended(before: &Enums, after: &Enums) -> Vec<String> {
    let now: BTreeMap<&str, i64> = after.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    before
        .iter()
        .filter(|(n, _)| !n.starts_with("__") && !n.ends_with("_MAX"))
        .filter_map(|(n, v)| match now.get(n.as_str()) {
            None => Some(format!("{n} (= {v}) was removed")),
            Some(w) if w != v => Some(format!("{n} changed from {v} to {w}")),
            _ => None,
        })
        .collect()
}

/// The header's enums as checked out now, when the patch touches it.
pub fn enums_at(ctx: &Ctx) -> Result<Option<Enums>> {
    if !ctx.files.iter().any(|f| f.path == HEADER) || !ctx.wt.join(HEADER).is_file() {
        return Ok(None);
    }
    header_enums(&ctx.wt, HEADER).map(Some)
}

/// Per patch: enums of if_link.h are only appended to.
pub fn append_only(ctx: &Ctx, before: Option<Enums>) -> Result<Outcome> {
    let Some(before) = before else {
        return Ok(Outcome::new(Check::UapiEnum, Status::NotApplicable));
    };
    let after = header_enums(&ctx.wt, HEADER)?;
    let text = fs_err::read_to_string(ctx.wt.join(HEADER)).unwrap_or_default();
    let findings = not_appended(&before, &after)
        .into_iter()
        .map(|m| {
            let name = m.split_whitespace().next().unwrap_or_default();
            let line = line_of(&text, name).map_or(String::new(), |l| format!(":{l}"));
            format!(
                "{}: {HEADER}{line}: uapi enums are append-only: {m}",
                ctx.name()
            )
        })
        .collect();
    Ok(Outcome::from_findings(
        Check::UapiEnum,
        Status::Fail,
        findings,
    ))
}

/// The first line (1-based) where `name` appears as a word.
pub fn line_of(text: &str, name: &str) -> Option<usize> {
    text.lines()
        .position(|l| super::style::has_word(l, name))
        .map(|i| i + 1)
}

/// YNL attributes as C names with their values, from the spec's attribute sets whose
/// name-prefix makes them IFLA_RDMABOND_* (python3 with PyYAML reads the spec).
pub fn spec_attrs(spec: &Path) -> Result<Enums> {
    const SCRIPT: &str = r#"
import sys, yaml
spec = yaml.safe_load(open(sys.argv[1]))
for s in spec.get('attribute-sets', []):
    prefix = s.get('name-prefix', s['name'] + '-')
    val = 1
    for a in s.get('attributes', []):
        val = a.get('value', val)
        c = (prefix + a['name']).upper().replace('-', '_')
        print(c, val)
        val += 1
"#;
    let sh = Shell::new()?;
    let out = cmd!(sh, "python3 -c {SCRIPT} {spec}")
        .quiet()
        .ignore_status()
        .output()
        .context("cannot run python3 (with PyYAML) to read the YNL spec")?;
    if !out.status.success() {
        anyhow::bail!(
            "cannot read {}: {}",
            spec.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(' ')?;
            Some((n.to_string(), v.trim().parse().ok()?))
        })
        .collect())
}

/// `[IFLA_RDMABOND_X] =` entries of the policy arrays.
pub fn policy_attrs(c: &str) -> Vec<String> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(&format!(r"\[\s*({}\w+)\s*\]\s*=", regex::escape(PREFIX))).unwrap()
    });
    let mut v: Vec<String> = RE.captures_iter(c).map(|m| m[1].to_string()).collect();
    v.dedup();
    v
}

/// Compares the header's attributes with the spec and the policy.
pub fn compare(header: &Enums, spec: &Enums, policy: &[String]) -> Vec<(String, String)> {
    let spec_map: BTreeMap<&str, i64> = spec.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    let mut out = Vec::new();
    for (name, value) in attrs(header) {
        match spec_map.get(name.as_str()) {
            None => out.push((
                name.clone(),
                format!("{name} is missing from the YNL spec {SPEC}"),
            )),
            Some(v) if v != value => out.push((
                name.clone(),
                format!("{name} is {value} in {HEADER} but {v} in {SPEC}"),
            )),
            _ => {}
        }
        if !policy.iter().any(|p| p == name) {
            out.push((
                name.clone(),
                format!("{name} is missing from the netlink policy in {POLICY}"),
            ));
        }
    }
    let in_header: Vec<&str> = header.iter().map(|(n, _)| n.as_str()).collect();
    for (name, _) in spec.iter().filter(|(n, _)| n.starts_with(PREFIX)) {
        if !in_header.contains(&name.as_str()) {
            out.push((
                name.clone(),
                format!("{name} is in {SPEC} but not in {HEADER}"),
            ));
        }
    }
    out
}

/// Series: the header, spec and policy agree at the tip of the range.
pub fn series_check(ctx: &SeriesCtx) -> Result<Outcome> {
    let changed = ctx.changed("AM")?;
    if ![HEADER, SPEC, POLICY]
        .iter()
        .any(|f| changed.iter().any(|c| c == f))
    {
        return Ok(Outcome::new(Check::Uapi, Status::NotApplicable));
    }
    let header = header_enums(ctx.wt, HEADER)?;
    if attrs(&header).next().is_none() {
        return Ok(Outcome::new(Check::Uapi, Status::NotApplicable));
    }
    let spec = spec_attrs(&ctx.wt.join(SPEC))?;
    let policy = fs_err::read_to_string(ctx.wt.join(POLICY)).unwrap_or_default();
    let text = fs_err::read_to_string(ctx.wt.join(HEADER))?;
    let findings = compare(&header, &spec, &policy_attrs(&policy))
        .into_iter()
        .map(|(name, msg)| {
            let line = line_of(&text, &name).map_or(String::new(), |l| format!(":{l}"));
            format!("{}: {HEADER}{line}: {msg}", patch_adding(ctx, &name))
        })
        .collect();
    Ok(Outcome::from_findings(Check::Uapi, Status::Fail, findings))
}

/// The patch that first adds `needle` to the header (`git log -S`).
fn patch_adding(ctx: &SeriesCtx, needle: &str) -> String {
    let _d = ctx.sh.push_dir(ctx.wt);
    let range = format!("{}..{}", ctx.base, ctx.tip);
    let s = format!("-S{needle}");
    let ids = cmd!(
        ctx.sh,
        "git log --reverse --format=%H {s} {range} -- {HEADER}"
    )
    .quiet()
    .read()
    .unwrap_or_default();
    ids.lines()
        .next()
        .and_then(|id| ctx.commits.iter().position(|c| c.id == id))
        .map_or("series".to_string(), |i| format!("patch {}", i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(v: &[(&str, i64)]) -> Enums {
        v.iter().map(|(n, x)| (n.to_string(), *x)).collect()
    }

    #[test]
    fn parses_bindgen_consts() {
        let rust = "pub const IFLA_RDMABOND_UNSPEC: _bindgen_ty_1 = 0;\n\
                    pub const IFLA_RDMABOND_MODE: _bindgen_ty_1 = 1;\n\
                    pub type rdmabond_mode = ::std::os::raw::c_uint;\n\
                    pub const RDMABOND_MODE_X: rdmabond_mode = 1;\n";
        assert_eq!(
            parse_consts(rust),
            e(&[
                ("IFLA_RDMABOND_UNSPEC", 0),
                ("IFLA_RDMABOND_MODE", 1),
                ("RDMABOND_MODE_X", 1)
            ])
        );
    }

    #[test]
    fn append_only() {
        let before = e(&[("A", 0), ("B", 1), ("__A_MAX", 2)]);
        assert!(
            not_appended(&before, &e(&[("A", 0), ("B", 1), ("C", 2), ("__A_MAX", 3)])).is_empty()
        );
        let moved = not_appended(&before, &e(&[("A", 0), ("C", 1), ("B", 2)]));
        assert_eq!(moved, vec!["B changed from 1 to 2"]);
        assert_eq!(
            not_appended(&before, &e(&[("A", 0)])),
            vec!["B (= 1) was removed"]
        );
    }

    #[test]
    fn compares_header_spec_policy() {
        let header = e(&[
            ("IFLA_RDMABOND_UNSPEC", 0),
            ("IFLA_RDMABOND_MODE", 1),
            ("IFLA_RDMABOND_NEW", 2),
            ("__IFLA_RDMABOND_MAX", 3),
        ]);
        let spec = e(&[("IFLA_RDMABOND_MODE", 1), ("IFLA_RDMABOND_GONE", 3)]);
        let policy = policy_attrs(
            "const struct nla_policy p[X] = {\n\t[IFLA_RDMABOND_UNSPEC] = { },\n\t[IFLA_RDMABOND_MODE]\t= { .type = NLA_U8 },\n};",
        );
        assert_eq!(policy, vec!["IFLA_RDMABOND_UNSPEC", "IFLA_RDMABOND_MODE"]);
        let msgs: Vec<String> = compare(&header, &spec, &policy)
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs[0].contains("IFLA_RDMABOND_NEW is missing from the YNL spec"));
        assert!(msgs[1].contains("IFLA_RDMABOND_NEW is missing from the netlink policy"));
        assert!(msgs[2].contains("IFLA_RDMABOND_GONE is in"));
        assert_eq!(line_of("a\n\tIFLA_X,\n", "IFLA_X"), Some(2));
    }
}
