//! patches/: the series as `git format-patch` files, the ordered list `series`,
//! and the cover letter (`cover-letter.txt` is its source, `0000-cover-letter.patch`
//! the generated mail).

pub mod apply;
pub mod generate;
pub mod send_conf;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The ordered list of patch files.
pub const SERIES_FILE: &str = "series";
/// Subject line, blank line, body: the text of the cover letter (defined by the
/// plan, whose parts may name others).
pub use crate::common::plan::COVER_SOURCE;
/// The generated cover letter mail.
pub const COVER_PATCH: &str = "0000-cover-letter.patch";
/// Placeholders git format-patch writes into a cover letter.
pub const PLACEHOLDERS: [&str; 2] = ["*** SUBJECT HERE ***", "*** BLURB HERE ***"];

/// Parses `series`: one file name per line, `#` comments and blank lines ignored.
pub fn parse_series(text: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains('/') || !line.ends_with(".patch") {
            bail!(
                "series line {}: `{line}` is not a .patch file name in patches/",
                n + 1
            );
        }
        if line == COVER_PATCH {
            bail!(
                "series line {}: the cover letter is not part of the series list",
                n + 1
            );
        }
        if out.iter().any(|l| l == line) {
            bail!("series line {}: `{line}` is listed twice", n + 1);
        }
        out.push(line.to_string());
    }
    Ok(out)
}

/// Renders `series` for a list of patch files.
pub fn render_series(files: &[String]) -> String {
    let mut s = String::from(
        "# The rdmabond series, in `git am` order. Written by `cargo xtask export`.\n",
    );
    for f in files {
        s.push_str(f);
        s.push('\n');
    }
    s
}

/// The series as stored in patches/: the list plus every file's contents.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Patch files in order.
    pub order: Vec<String>,
    /// File name -> contents, for every file export owns (patches, series, cover letter).
    pub files: BTreeMap<String, String>,
}

/// Reads patches/ and checks that `series` and the files on disk agree.
pub fn load(dir: &Path) -> Result<Stored> {
    let mut stored = Stored::default();
    if !dir.exists() {
        return Ok(stored);
    }
    let series_path = dir.join(SERIES_FILE);
    if series_path.is_file() {
        let text = fs_err::read_to_string(&series_path)
            .with_context(|| format!("cannot read {}", series_path.display()))?;
        stored.order =
            parse_series(&text).with_context(|| format!("invalid {}", series_path.display()))?;
        stored.files.insert(SERIES_FILE.to_string(), text);
    }
    for entry in walkdir::WalkDir::new(dir).min_depth(1).max_depth(1) {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".patch") || name == COVER_SOURCE {
            let text = fs_err::read_to_string(entry.path())
                .with_context(|| format!("cannot read {}", entry.path().display()))?;
            stored.files.insert(name, text);
        }
    }
    for name in &stored.order {
        if !stored.files.contains_key(name) {
            bail!(
                "patches/series lists {name}, which is not in patches/: restore it \
                 (git checkout patches/) or remove the line"
            );
        }
    }
    for name in stored.files.keys() {
        let owned = name == SERIES_FILE || name == COVER_PATCH || name == COVER_SOURCE;
        if !owned && !stored.order.contains(name) {
            bail!(
                "patches/{name} is not listed in patches/series: add it at its place in \
                 the order, or delete it"
            );
        }
    }
    Ok(stored)
}

/// Paths of the series' patches in `git am` order.
pub fn patch_paths(dir: &Path, stored: &Stored) -> Vec<PathBuf> {
    stored.order.iter().map(|n| dir.join(n)).collect()
}

/// Splits `cover-letter.txt` into (subject, body).
pub fn parse_cover(text: &str) -> Result<(String, String)> {
    let mut lines = text.lines();
    let subject = lines
        .next()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .context("the first line of cover-letter.txt must be the subject")?
        .to_string();
    let rest: Vec<&str> = lines.collect();
    if rest.first().is_some_and(|l| !l.trim().is_empty()) {
        bail!("cover-letter.txt: the subject must be followed by a blank line");
    }
    let body = rest.iter().skip(1).copied().collect::<Vec<_>>().join("\n");
    Ok((subject, body.trim_end().to_string()))
}

/// The cover letter source written when there is none yet.
pub fn default_cover() -> String {
    format!("{}\n\n{}\n", PLACEHOLDERS[0], PLACEHOLDERS[1])
}

/// Fills the placeholders of a generated cover letter and pins its date.
pub fn fill_cover(generated: &str, subject: &str, body: &str, date: &str) -> String {
    let mut out = String::with_capacity(generated.len() + body.len());
    let mut in_header = true;
    for line in generated.lines() {
        if in_header && line.starts_with("Date: ") {
            out.push_str("Date: ");
            out.push_str(date);
        } else if line.ends_with(PLACEHOLDERS[0]) && line.starts_with("Subject: ") {
            out.push_str(&line.replace(PLACEHOLDERS[0], subject));
        } else if line == PLACEHOLDERS[1] {
            out.push_str(body);
        } else {
            out.push_str(line);
        }
        if line.is_empty() {
            in_header = false;
        }
        out.push('\n');
    }
    out
}

/// Placeholders that must not be sent.
pub const UNSENDABLE: &[&str] = &[
    "*** SUBJECT HERE ***",
    "*** BLURB HERE ***",
    "TODO",
    "EDITME",
];

/// Lines of `text` holding a placeholder: `(line, placeholder)`.
pub fn placeholders(text: &str) -> Vec<(usize, &'static str)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(p) = UNSENDABLE.iter().find(|p| line.contains(**p)) {
            out.push((n + 1, *p));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_order_and_errors() {
        let s = "# c\n0001-a.patch\n\n0002-b.patch\n";
        assert_eq!(
            parse_series(s).unwrap(),
            vec!["0001-a.patch", "0002-b.patch"]
        );
        assert!(parse_series("0001-a.patch\n0001-a.patch\n").is_err());
        assert!(parse_series("../x.patch\n").is_err());
        assert!(parse_series("notes.txt\n").is_err());
        assert!(parse_series("0000-cover-letter.patch\n").is_err());
        let files = vec!["0001-a.patch".to_string()];
        assert_eq!(parse_series(&render_series(&files)).unwrap(), files);
    }

    #[test]
    fn load_checks_the_list_against_the_files() {
        let dir = std::env::temp_dir().join(format!("xtask-series-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&dir);
        fs_err::create_dir_all(&dir).unwrap();
        fs_err::write(dir.join("series"), "0001-a.patch\n").unwrap();
        let err = format!("{:#}", load(&dir).unwrap_err());
        assert!(err.contains("not in patches/"), "{err}");
        fs_err::write(dir.join("0001-a.patch"), "x").unwrap();
        fs_err::write(dir.join("0002-b.patch"), "y").unwrap();
        let err = format!("{:#}", load(&dir).unwrap_err());
        assert!(err.contains("0002-b.patch is not listed"), "{err}");
        fs_err::remove_file(dir.join("0002-b.patch")).unwrap();
        let stored = load(&dir).unwrap();
        assert_eq!(stored.order, vec!["0001-a.patch"]);
        assert_eq!(patch_paths(&dir, &stored), vec![dir.join("0001-a.patch")]);
        fs_err::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cover_letter_round_trip() {
        let (s, b) = parse_cover("rdmabond: groups\n\nLine one.\n\nLine two.\n").unwrap();
        assert_eq!(s, "rdmabond: groups");
        assert_eq!(b, "Line one.\n\nLine two.");
        assert!(parse_cover("subject\nno blank\n").is_err());
        assert!(parse_cover("\n\nbody").is_err());
        let generated = "From 0000 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\nDate: Tue, 24 Nov 2026 20:00:00 +0000\n\
                         Subject: [PATCH 0/1] *** SUBJECT HERE ***\n\n*** BLURB HERE ***\n\nA (1):\n  x\n";
        let filled = fill_cover(generated, &s, &b, "Thu, 1 Jan 2026 00:00:00 +0000");
        assert!(filled.contains("Subject: [PATCH 0/1] rdmabond: groups\n"));
        assert!(filled.contains("\nLine one.\n\nLine two.\n\nA (1):\n"));
        assert!(filled.contains("Date: Thu, 1 Jan 2026 00:00:00 +0000\n"));
        assert!(!filled.contains("***"));
    }

    #[test]
    fn finds_placeholders() {
        let t = "subject\n\nbody\n*** BLURB HERE ***\n- TODO: say\n";
        assert_eq!(
            placeholders(t),
            vec![(4, "*** BLURB HERE ***"), (5, "TODO")]
        );
        assert!(placeholders("fine\n").is_empty());
    }
}
