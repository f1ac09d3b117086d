//! apt-get with a private sources list and state directory under the cache: it reads
//! the machine's apt configuration (for the Debian archive URI) but never changes it.
//! Used for the kernel pin (trixie-backports) and for tools newer than the host's
//! release has (sparse from sid).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::common::util::write_atomic;

/// One private apt state: `cache/<name>/{sources.list,lists/}`.
pub struct PrivateApt {
    opts: Vec<String>,
    /// "URI suite component", for messages.
    pub source: String,
}

impl PrivateApt {
    /// Writes the sources list and runs `apt-get update` for one suite.
    pub fn update(
        sh: &Shell,
        cache: &Path,
        name: &str,
        uri: &str,
        suite: &str,
        component: &str,
    ) -> Result<PrivateApt> {
        let apt = cache.join(name);
        let lists = apt.join("lists");
        fs_err::create_dir_all(lists.join("partial"))
            .with_context(|| format!("cannot create {}", lists.display()))?;
        let list = apt.join("sources.list");
        let source = format!("{uri} {suite} {component}");
        write_atomic(&list, format!("deb {source}\n").as_bytes())?;
        let opts = vec![
            format!("-oDir::Etc::SourceList={}", list.display()),
            "-oDir::Etc::SourceParts=/dev/null".to_string(),
            format!("-oDir::State::Lists={}", lists.display()),
            "-oAPT::Sandbox::User=root".to_string(),
            "-oAPT::Get::List-Cleanup=0".to_string(),
        ];
        eprintln!("apt-get update ({suite} {component})");
        let o = &opts;
        cmd!(sh, "apt-get {o...} -q update")
            .run()
            .with_context(|| {
                format!(
                    "apt-get update of {uri} {suite} failed; check the network or pass --mirror"
                )
            })?;
        Ok(PrivateApt { opts, source })
    }

    /// `apt-get download SPECS` into `dir`; the raw output, so that callers can
    /// explain a failure in their own terms.
    pub fn download(
        &self,
        sh: &Shell,
        specs: &[String],
        dir: &Path,
    ) -> Result<std::process::Output> {
        fs_err::create_dir_all(dir)?;
        let _d = sh.push_dir(dir);
        let o = &self.opts;
        Ok(cmd!(sh, "apt-get {o...} -q download {specs...}")
            .ignore_status()
            .output()?)
    }
}

/// The Debian archive URI from the machine's own apt configuration.
pub fn archive_uri(sources: &[(PathBuf, String)]) -> Option<String> {
    for (path, text) in sources {
        let deb822 = path.extension().is_some_and(|e| e == "sources");
        for uri in source_uris(text, deb822) {
            let trimmed = uri.trim_end_matches('/');
            if trimmed.ends_with("/debian") {
                return Some(trimmed.to_string());
            }
        }
    }
    None
}

fn source_uris(text: &str, deb822: bool) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        if deb822 {
            if let Some(rest) = line.strip_prefix("URIs:") {
                out.extend(rest.split_whitespace().map(str::to_string));
            }
        } else if let Some(rest) = line.strip_prefix("deb ") {
            // deb [options] URI suite components
            let mut words = rest.split_whitespace().peekable();
            if words.peek().is_some_and(|w| w.starts_with('[')) {
                for w in words.by_ref() {
                    if w.ends_with(']') {
                        break;
                    }
                }
            }
            if let Some(uri) = words.next() {
                out.push(uri.to_string());
            }
        }
    }
    out
}

/// /etc/apt/sources.list and sources.list.d/*, with their text.
pub fn read_apt_sources() -> Vec<(PathBuf, String)> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs_err::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    files
        .into_iter()
        .filter_map(|p| fs_err::read_to_string(&p).ok().map(|t| (p, t)))
        .collect()
}

/// The archive URI: `mirror` when given, else the machine's.
pub fn uri(mirror: Option<&str>) -> Result<String> {
    match mirror {
        Some(m) => Ok(m.trim_end_matches('/').to_string()),
        None => archive_uri(&read_apt_sources()).context(
            "no Debian archive URI in /etc/apt/sources.list{,.d}; pass --mirror URI \
             (or set RDMABOND_DEBIAN_MIRROR)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_archive_uri_in_deb822_and_one_line_sources() {
        let deb822 = "Types: deb\n# http://snapshot.example/x\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n\
                      Types: deb\nURIs: http://mirror.example/debian-security\n";
        let srcs = vec![
            (
                PathBuf::from("/etc/apt/sources.list.d/other.list"),
                "deb [arch=amd64] https://x.example/apt stable main\n".to_string(),
            ),
            (
                PathBuf::from("/etc/apt/sources.list.d/debian.sources"),
                deb822.to_string(),
            ),
        ];
        assert_eq!(
            archive_uri(&srcs).as_deref(),
            Some("http://mirror.example/debian")
        );
        let one = vec![(
            PathBuf::from("/etc/apt/sources.list"),
            "# deb http://old.example/debian x\ndeb http://m.example/debian/ bookworm main\n"
                .to_string(),
        )];
        assert_eq!(
            archive_uri(&one).as_deref(),
            Some("http://m.example/debian")
        );
        assert_eq!(archive_uri(&[]), None);
    }
}
