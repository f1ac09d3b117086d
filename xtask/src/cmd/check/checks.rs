//! The checks of the gate, typed: one enum, and one ordered list of them that the
//! table (its columns and the series line), the cache (the names it stores) and the
//! seeds (the check that must catch each) all use. Renaming a check is a compile
//! error; its name is written in one place, [`Check::name`].

use std::fmt;

/// One check: a column of the patch table, or a cell of the series line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// Not a check: the one cell of a patch that was not checked (`--patch`).
    All,
    // Per patch, in column order.
    Checkpatch,
    Build,
    Sparse,
    Kdoc,
    ExportDoc,
    Inline,
    HdrStatic,
    Deprecated,
    Signoff,
    Shellcheck,
    Yamllint,
    Rust,
    UapiEnum,
    Clippy,
    // The series, in the order of its line.
    Count,
    Cover,
    Prefix,
    Plan,
    Maintainers,
    SelftestList,
    Ynl,
    Uapi,
    Iproute2Checkpatch,
    Iproute2Build,
    Headers,
    Selftests,
    /// Both series builds, skipped together by `--fast`.
    HeadersSelftests,
}

impl Check {
    /// Every check, in table order: the per-patch columns, then the series line.
    pub const ORDER: [Check; 28] = [
        Check::All,
        Check::Checkpatch,
        Check::Build,
        Check::Sparse,
        Check::Kdoc,
        Check::ExportDoc,
        Check::Inline,
        Check::HdrStatic,
        Check::Deprecated,
        Check::Signoff,
        Check::Shellcheck,
        Check::Yamllint,
        Check::Rust,
        Check::UapiEnum,
        Check::Clippy,
        Check::Count,
        Check::Cover,
        Check::Prefix,
        Check::Plan,
        Check::Maintainers,
        Check::SelftestList,
        Check::Ynl,
        Check::Uapi,
        Check::Iproute2Checkpatch,
        Check::Iproute2Build,
        Check::Headers,
        Check::Selftests,
        Check::HeadersSelftests,
    ];

    /// The short name: the column header, the cache's key, the details' tag.
    pub fn name(self) -> &'static str {
        match self {
            Check::All => "all",
            Check::Checkpatch => "checkpatch",
            Check::Build => "build",
            Check::Sparse => "sparse",
            Check::Kdoc => "kdoc",
            Check::ExportDoc => "export-doc",
            Check::Inline => "inline",
            Check::HdrStatic => "hdr-static",
            Check::Deprecated => "deprecated",
            Check::Signoff => "signoff",
            Check::Shellcheck => "shellcheck",
            Check::Yamllint => "yamllint",
            Check::Rust => "rust",
            Check::UapiEnum => "uapi-enum",
            Check::Clippy => "clippy",
            Check::Count => "count",
            Check::Cover => "cover",
            Check::Prefix => "prefix",
            Check::Plan => "plan",
            Check::Maintainers => "maintainers",
            Check::SelftestList => "selftest-list",
            Check::Ynl => "ynl",
            Check::Uapi => "uapi",
            Check::Iproute2Checkpatch => "iproute2-checkpatch",
            Check::Iproute2Build => "iproute2-build",
            Check::Headers => "headers",
            Check::Selftests => "selftests",
            Check::HeadersSelftests => "headers+selftests",
        }
    }

    /// The check of a name (as the cache stores it).
    pub fn parse(name: &str) -> Option<Check> {
        Check::ORDER.into_iter().find(|c| c.name() == name)
    }

    /// Its place in [`Check::ORDER`].
    pub fn position(self) -> usize {
        Check::ORDER
            .iter()
            .position(|c| *c == self)
            .unwrap_or(usize::MAX)
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_has_every_check_once_and_names_parse_back() {
        let mut seen = std::collections::BTreeSet::new();
        for c in Check::ORDER {
            assert!(seen.insert(c.name()), "{c} twice");
            assert_eq!(Check::parse(c.name()), Some(c));
        }
        assert_eq!(Check::parse("colour"), None);
        assert!(Check::Checkpatch.position() < Check::Clippy.position());
        assert!(Check::Clippy.position() < Check::Count.position());
    }
}
