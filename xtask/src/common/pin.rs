//! The kernel pin: kernel-src/kernel.toml names the exact base kernel.
//!
//! The file is TOML (two sections of strings), read with the `toml` crate.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The pin, relative to the checkout.
pub const PIN_FILE: &str = "kernel-src/kernel.toml";

/// The pinned base kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// Upstream version, e.g. `7.3.4`.
    pub version: String,
    /// Debian binary package that carries the source tarball.
    pub package: String,
    /// Exact Debian version of that package.
    pub deb_version: String,
    /// Debian suite that serves it, e.g. `trixie-backports`.
    pub suite: String,
    /// Archive component, e.g. `main`.
    pub component: String,
    /// sha256 of the .deb, lowercase hex.
    pub sha256: String,
    /// Path of the source tarball inside the package.
    pub tarball: String,
}

impl Pin {
    /// Reads and validates the pin file.
    pub fn load(path: &Path) -> Result<Pin> {
        let text = fs_err::read_to_string(path)
            .with_context(|| format!("cannot read the kernel pin {}", path.display()))?;
        Pin::parse(&text).with_context(|| format!("invalid kernel pin {}", path.display()))
    }

    /// Parses the text of a pin file and validates it.
    pub fn parse(text: &str) -> Result<Pin> {
        let pin = Pin::parse_unchecked(text)?;
        pin.validate()?;
        Ok(pin)
    }

    /// Reads the pin file without validating the values (for `kernel bump`, which
    /// repairs them).
    pub fn load_unchecked(path: &Path) -> Result<Pin> {
        let text = fs_err::read_to_string(path)
            .with_context(|| format!("cannot read the kernel pin {}", path.display()))?;
        Pin::parse_unchecked(&text)
            .with_context(|| format!("invalid kernel pin {}", path.display()))
    }

    /// Parses the text of a pin file: every key present, every value a string.
    fn parse_unchecked(text: &str) -> Result<Pin> {
        let table = parse_table(text)?;
        let get = |key: &str| -> Result<String> {
            table
                .get(key)
                .cloned()
                .with_context(|| format!("missing key `{key}`"))
        };
        let pin = Pin {
            version: get("kernel.version")?,
            package: get("debian.package")?,
            deb_version: get("debian.version")?,
            suite: get("debian.suite")?,
            component: get("debian.component")?,
            sha256: get("debian.sha256")?,
            tarball: get("debian.tarball")?,
        };
        Ok(pin)
    }

    fn validate(&self) -> Result<()> {
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "debian.sha256 must be 64 hex digits, got `{}` (run `cargo xtask kernel bump` to recompute it)",
                self.sha256
            );
        }
        if self.sha256.bytes().any(|b| b.is_ascii_uppercase()) {
            bail!("debian.sha256 must be lowercase hex");
        }
        let ok_version = |v: &str| {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-+~:".contains(&b))
        };
        if !ok_version(&self.version) || self.version.split('.').count() < 2 {
            bail!(
                "kernel.version `{}` is not a kernel version like 7.3.4",
                self.version
            );
        }
        if !ok_version(&self.deb_version) || !ok_version(&self.package) {
            bail!("debian.package/debian.version contain characters apt does not accept");
        }
        if !self.deb_version.starts_with(&self.version) {
            bail!(
                "debian.version `{}` does not start with kernel.version `{}`: bump both together",
                self.deb_version,
                self.version
            );
        }
        Ok(())
    }

    /// `package=version`, as apt-get wants it.
    pub fn apt_spec(&self) -> String {
        format!("{}={}", self.package, self.deb_version)
    }

    /// The git tag that marks the imported base tree.
    pub fn base_tag(&self) -> String {
        format!("base-{}", self.version)
    }

    /// File name apt-get download gives the .deb (epoch colons are escaped as %3a).
    pub fn deb_file_name(&self) -> String {
        format!(
            "{}_{}_all.deb",
            self.package,
            self.deb_version.replace(':', "%3a")
        )
    }

    /// Renders the pin file (used by `kernel bump`).
    pub fn render(&self) -> String {
        format!(
            "# The kernel the rdmabond series is based on.\n\
             # `cargo xtask kernel fetch` downloads, verifies and extracts exactly this;\n\
             # `cargo xtask kernel bump --deb-version VERSION` moves the pin (see README.md).\n\
             \n\
             [kernel]\n\
             # Upstream version of the base tree.\n\
             version = \"{}\"\n\
             \n\
             [debian]\n\
             # Debian's binary package carrying the source tarball (Debian serves no source packages here).\n\
             package = \"{}\"\n\
             version = \"{}\"\n\
             suite = \"{}\"\n\
             component = \"{}\"\n\
             sha256 = \"{}\"\n\
             # The tarball inside the package.\n\
             tarball = \"{}\"\n",
            self.version,
            self.package,
            self.deb_version,
            self.suite,
            self.component,
            self.sha256,
            self.tarball
        )
    }
}

/// Parses the TOML into `section.key` -> value; every value must be a string.
fn parse_table(text: &str) -> Result<BTreeMap<String, String>> {
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("not valid TOML: {e}"))?;
    let mut table = BTreeMap::new();
    for (name, value) in &doc {
        let toml::Value::Table(section) = value else {
            bail!("`{name}` must be a [{name}] section");
        };
        for (key, value) in section {
            let toml::Value::String(v) = value else {
                bail!("the value of `{name}.{key}` must be a quoted string");
            };
            table.insert(format!("{name}.{key}"), v.clone());
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const GOOD: &str = r#"
# comment
[kernel]
version = "7.3.4"

[debian]
package = "linux-source-7.3"
version = "7.3.4-1~bpo13+1"   # trailing comment
suite = "trixie-backports"
component = "main"
sha256 = "703e369ddd4cce971452f5a593ee55df3a5c10c83caf0fa0df039633ed181ee3"
tarball = "usr/src/linux-source-7.3.tar.xz"
"#;

    #[test]
    fn parses_the_pin() {
        let pin = Pin::parse(GOOD).unwrap();
        assert_eq!(pin.version, "7.3.4");
        assert_eq!(pin.deb_version, "7.3.4-1~bpo13+1");
        assert_eq!(pin.apt_spec(), "linux-source-7.3=7.3.4-1~bpo13+1");
        assert_eq!(pin.base_tag(), "base-7.3.4");
        assert_eq!(
            pin.deb_file_name(),
            "linux-source-7.3_7.3.4-1~bpo13+1_all.deb"
        );
    }

    #[test]
    fn render_round_trips() {
        let pin = Pin::parse(GOOD).unwrap();
        assert_eq!(Pin::parse(&pin.render()).unwrap(), pin);
    }

    #[test]
    fn the_committed_pin_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel-src/kernel.toml");
        let pin = Pin::load(&path).unwrap();
        assert_eq!(fs_err::read_to_string(&path).unwrap(), pin.render());
    }

    #[test]
    fn rejects_bad_checksum() {
        let text = GOOD.replace("703e369d", "zz3e369d");
        let err = format!("{:#}", Pin::parse(&text).unwrap_err());
        assert!(err.contains("64 hex digits"), "{err}");
        let text = GOOD.replace("703e369d", "703e36");
        assert!(Pin::parse(&text).is_err());
    }

    #[test]
    fn rejects_missing_key_and_garbage() {
        let text = GOOD.replace("suite = \"trixie-backports\"\n", "");
        let err = format!("{:#}", Pin::parse(&text).unwrap_err());
        assert!(err.contains("debian.suite"), "{err}");
        assert!(Pin::parse("[debian]\nversion = 7\n").is_err());
        assert!(Pin::parse("[debian\n").is_err());
        let dup = GOOD.replace(
            "component = \"main\"",
            "component = \"main\"\ncomponent = \"x\"",
        );
        assert!(Pin::parse(&dup).is_err());
    }

    #[test]
    fn rejects_mismatched_versions() {
        let text = GOOD.replace("version = \"7.3.4\"", "version = \"7.2.1\"");
        let err = format!("{:#}", Pin::parse(&text).unwrap_err());
        assert!(err.contains("bump both together"), "{err}");
    }

    #[test]
    fn a_typographic_quote_is_an_error_not_a_panic() {
        let text = GOOD.replace("\"main\"", "\u{201c}main\u{201d}");
        let err = format!("{:#}", Pin::parse(&text).unwrap_err());
        assert!(err.contains("not valid TOML"), "{err}");
    }

    #[test]
    fn bump_reads_a_pin_whose_checksum_is_wrong() {
        let text = GOOD.replace("703e369d", "zz3e369d");
        assert!(Pin::parse(&text).is_err());
        assert!(Pin::parse_unchecked(&text)
            .unwrap()
            .sha256
            .starts_with("zz"));
    }
}
