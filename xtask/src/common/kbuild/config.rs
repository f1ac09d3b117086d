//! Kernel config fragments: merging them and checking that Kconfig kept every option.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use anyhow::{bail, Result};
use regex::Regex;

/// One option a fragment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// `CONFIG_FOO`.
    pub name: String,
    /// `y`, `m`, `n`, a number or a quoted string.
    pub value: String,
    /// `file:line` that asked for it.
    pub origin: String,
}

/// Parses one fragment. `origin` names the file in messages.
pub fn parse_fragment(text: &str, origin: &str) -> Result<Vec<Want>> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let at = format!("{origin}:{}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                if name.starts_with("CONFIG_") {
                    out.push(Want {
                        name: name.to_string(),
                        value: "n".into(),
                        origin: at,
                    });
                }
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        // Selftest config files sometimes list bare option names: they mean "=y".
        let (name, value) = line.split_once('=').unwrap_or((line, "y"));
        let name = name.trim();
        if !name.starts_with("CONFIG_")
            || !name[7..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            bail!("{at}: `{line}` is not a CONFIG_FOO=value line");
        }
        out.push(Want {
            name: name.to_string(),
            value: value.trim().to_string(),
            origin: at,
        });
    }
    Ok(out)
}

/// Merges fragments in order; later ones override earlier ones, as merge_config.sh does.
pub fn merge(fragments: &[Vec<Want>]) -> Vec<Want> {
    let mut merged: BTreeMap<String, Want> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for want in fragments.iter().flatten() {
        if !merged.contains_key(&want.name) {
            order.push(want.name.clone());
        }
        merged.insert(want.name.clone(), want.clone());
    }
    order
        .into_iter()
        .filter_map(|n| merged.remove(&n))
        .collect()
}

/// Renders a merged fragment for KCONFIG_ALLCONFIG.
pub fn render(wants: &[Want]) -> String {
    let mut s = String::new();
    for w in wants {
        if w.value == "n" {
            s.push_str(&format!("# {} is not set\n", w.name));
        } else {
            s.push_str(&format!("{}={}\n", w.name, w.value));
        }
    }
    s
}

/// Parses a .config into name -> value (unset options are absent).
pub fn parse_dotconfig(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| l.starts_with("CONFIG_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every option that Kconfig did not keep as asked: (want, what .config has).
pub fn dropped<'a>(
    wants: &'a [Want],
    dotconfig: &BTreeMap<String, String>,
) -> Vec<(&'a Want, String)> {
    wants
        .iter()
        .filter_map(|w| {
            let have = dotconfig.get(&w.name);
            let ok = match (w.value.as_str(), have) {
                ("n", None) => true,
                ("n", Some(v)) => v == "n",
                (want, Some(v)) => want == v,
                (_, None) => false,
            };
            (!ok).then(|| (w, have.cloned().unwrap_or_else(|| "not set".into())))
        })
        .collect()
}

/// The error for dropped options: one line per option, and the fix.
pub fn dropped_error(dropped: &[(&Want, String)], build_dir: &str) -> String {
    let mut msg = String::from("Kconfig dropped options the config fragments ask for:");
    for (w, have) in dropped {
        msg.push_str(&format!(
            "\n  {}={} (from {}) is {} in .config",
            w.name, w.value, w.origin, have
        ));
    }
    msg.push_str(&format!(
        "\nfix: add the options they depend on to a fragment in ci/ (see `Depends on:` for \
         each in `make O={build_dir} menuconfig`, search with /), or drop them from the fragment"
    ));
    msg
}

/// Options of a Kconfig file that can only be enabled when one of `options` is
/// built in: their `depends on` says `OPTION=y`. (With the series' drivers as
/// modules, Kconfig drops them, which is right, not a configuration error.)
pub fn needs_builtin(kconfig: &str, options: &[&str]) -> Vec<String> {
    let names: Vec<&str> = options
        .iter()
        .map(|o| o.strip_prefix("CONFIG_").unwrap_or(o))
        .collect();
    // `NAME=y` (or `NAME = y`) for one of the names.
    static DEP: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b(\w+)\s*=\s*y\b").unwrap());
    let needs = |deps: &str| DEP.captures_iter(deps).any(|c| names.contains(&&c[1]));
    let mut out = Vec::new();
    let mut current: Option<&str> = None;
    for line in kconfig.lines() {
        let t = line.trim();
        if let Some(name) = t
            .strip_prefix("config ")
            .or_else(|| t.strip_prefix("menuconfig "))
        {
            current = Some(name.trim());
        } else if t.starts_with("endmenu") || t.starts_with("menu ") || t.starts_with("choice") {
            current = None;
        } else if let (Some(name), Some(deps)) = (current, t.strip_prefix("depends on")) {
            let option = format!("CONFIG_{name}");
            if needs(deps) && !out.contains(&option) {
                out.push(option);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_that_need_a_series_option_built_in() {
        let k = "config A\n\ttristate \"a\"\n\tdepends on X=y && DEBUG_FS\n\thelp\n\t  X=y here is help\n\
                 config B\n\ttristate \"b\"\n\tdepends on X\n\
                 menuconfig C\n\tbool \"c\"\n\tdepends on NET && (X = y)\n\
                 config D\n\tdepends on XY=y\n";
        assert_eq!(
            needs_builtin(k, &["CONFIG_X"]),
            vec!["CONFIG_A", "CONFIG_C"]
        );
        assert!(needs_builtin(k, &["CONFIG_Q"]).is_empty());
    }

    #[test]
    fn parses_fragments_and_selftest_configs() {
        let text = "# comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\nCONFIG_D\n\n";
        let w = parse_fragment(text, "f").unwrap();
        let got: Vec<(&str, &str, &str)> = w
            .iter()
            .map(|w| (w.name.as_str(), w.value.as_str(), w.origin.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("CONFIG_A", "y", "f:2"),
                ("CONFIG_B", "n", "f:3"),
                ("CONFIG_C", "\"x y\"", "f:4"),
                ("CONFIG_D", "y", "f:5")
            ]
        );
        assert!(parse_fragment("FOO=y\n", "f").is_err());
        assert!(parse_fragment("CONFIG_A B=y\n", "f").is_err());
    }

    #[test]
    fn later_fragments_win() {
        let a = parse_fragment("CONFIG_A=y\nCONFIG_B=y\n", "a").unwrap();
        let b = parse_fragment("CONFIG_A=m\n", "b").unwrap();
        let m = merge(&[a, b]);
        assert_eq!(render(&m), "CONFIG_A=m\nCONFIG_B=y\n");
        assert_eq!(m[0].origin, "b:1");
    }

    #[test]
    fn finds_dropped_options() {
        let wants = parse_fragment(
            "CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=y\nCONFIG_E=n\n",
            "ci/x.config",
        )
        .unwrap();
        let dot = parse_dotconfig("CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=y\n# CONFIG_D is not set\n");
        let d = dropped(&wants, &dot);
        let names: Vec<&str> = d.iter().map(|(w, _)| w.name.as_str()).collect();
        assert_eq!(names, vec!["CONFIG_B", "CONFIG_C", "CONFIG_D"]);
        let msg = dropped_error(&d, "target/kbuild-y");
        assert!(
            msg.contains("CONFIG_D=y (from ci/x.config:4) is not set in .config"),
            "{msg}"
        );
        assert!(msg.contains("fix:"));
    }
}
