//! Tidy: the xtask's own shape, checked as unit tests (in the manner of
//! rust-analyzer's tidy). The module graph is read from the sources: every
//! `crate::...` and `super::...` path of every file.
//!
//! - `crate::common` (the core) uses no subcommand, and the subcommands in
//!   `crate::cmd` are leaves: none uses another;
//! - the graph of units (`cmd::X`, `common::X`) has no cycle;
//! - every subcommand is a module of `cmd/` and is documented (`cargo xtask NAME` in
//!   README.md or Documentation/workflow.md), and every `xtask/src/...` path the
//!   documents name exists, and every unit is in the module map of
//!   Documentation/workflow.md;
//! - no `Regex::new` outside a `LazyLock`, and `std::process::Command` only where
//!   output is streamed (xshell for every short command).
//!
//! (That every seed of `check --seeds` names an existing check is the compiler's
//! job: seeds name a `check::Check`; seeds.rs tests that it is a table column.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

/// A module: its path in the crate (`["cmd", "check", "build"]`) and its text.
struct Module {
    path: Vec<String>,
    file: PathBuf,
    text: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every .rs file under `dir` (src/ for the crate) as a module.
fn modules_in(dir: &Path) -> Vec<Module> {
    let mut out: Vec<Module> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap();
            let mut path: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if path.last().is_some_and(|l| l == "mod" || l == "main") {
                path.pop();
            }
            let text = fs_err::read_to_string(e.path())
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", e.path().display()));
            Module {
                path,
                file: e.path().to_path_buf(),
                text,
            }
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Source lines without comment lines (doc links name modules without using them).
fn code(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Crate paths (from the crate root) that `text`, the code of the module at
/// `module`, refers to. `use crate::a::{b, c::d}` gives `a::b` and `a::c`.
fn references(module: &[String], text: &str) -> Vec<Vec<String>> {
    static PATH: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b(crate|super(?:::super)*)((?:::\w+)*)(::\{)?").unwrap());
    let mut out = Vec::new();
    for c in PATH.captures_iter(text) {
        let mut base: Vec<String> = if &c[1] == "crate" {
            Vec::new()
        } else {
            let ups = c[1].split("::").count();
            module[..module.len().saturating_sub(ups)].to_vec()
        };
        base.extend(
            c[2].split("::")
                .filter(|s| !s.is_empty() && *s != "self")
                .map(str::to_string),
        );
        if c.get(3).is_some() {
            // A group: its top-level items, by their first segment.
            let rest = &text[c.get(0).unwrap().end()..];
            let mut depth = 1;
            let mut item = String::new();
            let mut items = Vec::new();
            for ch in rest.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 || (depth == 1 && ch == ',') {
                    items.push(std::mem::take(&mut item));
                    if depth == 0 {
                        break;
                    }
                } else if depth == 1 {
                    item.push(ch);
                }
            }
            for i in items {
                let first = i.trim().split("::").next().unwrap_or("").trim().to_string();
                let first = first.split_whitespace().next().unwrap_or("").to_string();
                let mut p = base.clone();
                if !first.is_empty() && first != "self" && first != "*" {
                    p.push(first);
                }
                out.push(p);
            }
        } else {
            out.push(base);
        }
    }
    out
}

/// The unit a module path belongs to: `cmd::X` or `common::X`, else its first
/// segment (`cmd`, `common`, `tidy`) or `main` for the crate root.
fn unit(path: &[String]) -> String {
    match path {
        [] => "main".into(),
        [top, name, ..] if top == "cmd" || top == "common" => format!("{top}::{name}"),
        [top, ..] => top.clone(),
    }
}

/// Unit -> the units it uses. A module's `mod tests` is read as a child module
/// (its `super::` is the module itself).
fn graph(modules: &[Module]) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in modules {
        let from = unit(&m.path);
        let text = code(&m.text);
        let (main, tests) = match text.find("mod tests {") {
            Some(i) => text.split_at(i),
            None => (text.as_str(), ""),
        };
        let mut test_path = m.path.clone();
        test_path.push("tests".into());
        let refs = references(&m.path, main)
            .into_iter()
            .chain(references(&test_path, tests));
        let entry = g.entry(from.clone()).or_default();
        for r in refs {
            let to = unit(&r);
            // A path of one segment (`crate::cmd`) or to the crate root is no unit.
            if r.len() >= 2 && to != from {
                entry.insert(to);
            }
        }
    }
    g
}

/// A cycle of the graph, when there is one: `[a, b, a]`.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// Problems of the module graph: a subcommand that uses another, the core using a
/// subcommand, a cycle.
fn graph_problems(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut out = Vec::new();
    for (from, tos) in g {
        for to in tos {
            if from.starts_with("cmd::") && to.starts_with("cmd::") {
                out.push(format!(
                    "{from} uses {to}: subcommands are leaves; move what both need into common/"
                ));
            }
            if from.starts_with("common") && to.starts_with("cmd") {
                out.push(format!(
                    "{from} uses {to}: the core uses no subcommand; move the code it needs into common/"
                ));
            }
        }
    }
    if let Some(c) = find_cycle(g) {
        out.push(format!("import cycle: {}", c.join(" -> ")));
    }
    out
}

/// The subcommands of main.rs's `enum Cmd`, as typed (`test-qemu`), with the module
/// that implements each (`test_qemu`).
fn subcommands(main: &str) -> Vec<(String, String)> {
    static VARIANT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?m)^    (\w+)\(cmd::(\w+)::").unwrap());
    let body = main
        .split_once("enum Cmd {")
        .and_then(|(_, rest)| rest.split_once("\n}"))
        .map_or("", |(b, _)| b);
    VARIANT
        .captures_iter(body)
        .map(|c| {
            let mut name = String::new();
            for (i, ch) in c[1].chars().enumerate() {
                if ch.is_uppercase() && i > 0 {
                    name.push('-');
                }
                name.push(ch.to_ascii_lowercase());
            }
            (name, c[2].to_string())
        })
        .collect()
}

/// Lines (`file:line`) with a `Regex::new` that is not inside a `LazyLock::new`
/// (on its line or one of the two before, as rustfmt wraps it).
fn uncached_regexes(modules: &[Module]) -> Vec<String> {
    let mut out = Vec::new();
    for m in modules {
        let lines: Vec<&str> = m.text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.trim_start().starts_with("//") || !l.contains(concat!("Regex", "::new")) {
                continue;
            }
            let lazy = lines[i.saturating_sub(2)..=i]
                .iter()
                .any(|p| p.contains("LazyLock::new"));
            if !lazy {
                out.push(format!("{}:{}", m.file.display(), i + 1));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> Vec<String> {
        s.split("::").map(str::to_string).collect()
    }

    #[test]
    fn reads_crate_super_and_grouped_paths() {
        let text = "use crate::common::{git::{self, checkout}, project::Project};\n\
                    use super::{Ctx, Outcome};\nlet x = crate::cmd::send::am(a);\n\
                    use super::super::kbuild::Variant;";
        let refs = references(&path("common::kbuild::clippy"), text);
        assert!(refs.contains(&path("common::git")), "{refs:?}");
        assert!(refs.contains(&path("common::project")));
        assert!(refs.contains(&path("common::kbuild::Ctx")));
        assert!(refs.contains(&path("cmd::send::am")));
        assert!(refs.contains(&path("common::kbuild::Variant")));
        assert_eq!(unit(&path("cmd::check::build")), "cmd::check");
        assert_eq!(unit(&path("common")), "common");
    }

    #[test]
    fn finds_leaves_that_are_not_and_cycles() {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        g.entry("cmd::send".into())
            .or_default()
            .insert("cmd::check".into());
        g.entry("common::a".into())
            .or_default()
            .insert("common::b".into());
        g.entry("common::b".into())
            .or_default()
            .insert("common::a".into());
        g.entry("common::c".into())
            .or_default()
            .insert("cmd::vm".into());
        let p = graph_problems(&g);
        assert!(p[0].contains("cmd::send uses cmd::check"), "{p:?}");
        assert!(p[1].contains("the core uses no subcommand"), "{p:?}");
        assert!(
            p[2].contains("common::a -> common::b -> common::a"),
            "{p:?}"
        );
        let m = Module {
            path: vec![],
            file: "f.rs".into(),
            text: concat!("x\n    let r = Regex", "::new(\"a\");\n").into(),
        };
        assert_eq!(uncached_regexes(&[m]), vec!["f.rs:2"]);
    }

    #[test]
    fn subcommands_are_leaves_over_the_core_and_no_import_cycle() {
        let g = graph(&modules_in(&src_dir()));
        assert!(g.contains_key("cmd::check") && g.contains_key("common::git"));
        let problems = graph_problems(&g);
        assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    }

    #[test]
    fn every_subcommand_is_a_cmd_module_and_documented() {
        let main = fs_err::read_to_string(src_dir().join("main.rs")).unwrap();
        let subs = subcommands(&main);
        assert!(subs.len() >= 9, "{subs:?}");
        let modules: BTreeSet<String> = modules_in(&src_dir().join("cmd"))
            .into_iter()
            .filter(|m| m.path.len() == 1)
            .map(|m| m.path[0].clone())
            .collect();
        let wired: BTreeSet<String> = subs.iter().map(|(_, m)| m.clone()).collect();
        assert_eq!(
            modules, wired,
            "every module of cmd/ is one subcommand of `enum Cmd`"
        );
        let root = repo_root();
        let docs = ["README.md", "Documentation/workflow.md"]
            .map(|d| fs_err::read_to_string(root.join(d)).unwrap())
            .join("\n");
        for (name, _) in &subs {
            let named = format!("cargo xtask {name}");
            let documented = docs.match_indices(&named).any(|(i, _)| {
                !docs[i + named.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '-')
            });
            assert!(
                documented,
                "`cargo xtask {name}` is in neither README.md nor Documentation/workflow.md: document it"
            );
        }
    }

    #[test]
    fn the_paths_the_documents_name_exist() {
        static SRC_PATH: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"xtask/src/[\w/]+(?:\.rs)?").unwrap());
        let root = repo_root();
        for doc in [
            "README.md",
            "Documentation/workflow.md",
            "Documentation/design.md",
        ] {
            let text = fs_err::read_to_string(root.join(doc)).unwrap();
            for m in SRC_PATH.find_iter(&text) {
                let p = m.as_str().trim_end_matches('/');
                assert!(
                    root.join(p).exists(),
                    "{doc} names {p}, which does not exist: update the document"
                );
            }
        }
    }

    #[test]
    fn every_unit_is_in_the_module_map() {
        let doc = fs_err::read_to_string(repo_root().join("Documentation/workflow.md")).unwrap();
        let map = doc
            .split_once("## The xtask's modules")
            .map(|(_, m)| m)
            .expect("Documentation/workflow.md has a section `## The xtask's modules`");
        for top in ["cmd", "common"] {
            for e in fs_err::read_dir(src_dir().join(top)).unwrap() {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                if name == "mod.rs" {
                    continue;
                }
                let named = if e.path().is_dir() {
                    format!("xtask/src/{top}/{name}/")
                } else {
                    format!("xtask/src/{top}/{name}")
                };
                assert!(
                    map.contains(&named),
                    "{named} is not in the module map of Documentation/workflow.md: add a line with its job"
                );
            }
        }
    }

    /// The files that may run a `std::process::Command`, each for output that is
    /// streamed (or a terminal, or a pipe); every short command goes through xshell.
    const STREAMED: &[(&str, &str)] = &[
        (
            "common/kbuild/make.rs",
            "make into its log, watched for progress",
        ),
        ("common/vm/mod.rs", "QEMU's console, line by line"),
        ("common/base.rs", "the dpkg-deb | tar pipe"),
        ("common/consumer.rs", "cargo build of rbc, its output shown"),
        ("common/vng.rs", "vng's output, line by line"),
        (
            "cmd/send/mod.rs",
            "git send-email, which asks before each mail",
        ),
    ];

    #[test]
    fn std_command_only_where_output_is_streamed() {
        let mut bad = Vec::new();
        for m in modules_in(&src_dir()) {
            let rel = m
                .file
                .strip_prefix(src_dir())
                .unwrap()
                .display()
                .to_string();
            let main = code(&m.text);
            let main = main.split("mod tests {").next().unwrap_or("");
            if main.contains(concat!("Command", "::new("))
                && !STREAMED.iter().any(|(f, _)| *f == rel)
            {
                bad.push(rel);
            }
        }
        assert!(
            bad.is_empty(),
            "std::process::Command in {bad:?}: use xshell's cmd! for a short command, or add the file to STREAMED with why"
        );
    }

    #[test]
    fn every_regex_is_compiled_once() {
        let bad = uncached_regexes(&modules_in(&src_dir()));
        assert!(
            bad.is_empty(),
            "a regex compiled outside a LazyLock (compile it once, in a static):\n{}",
            bad.join("\n")
        );
    }
}
