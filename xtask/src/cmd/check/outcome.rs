//! What a check finds: its status and details, per patch and for the series.

use super::Check;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Nothing to check in this patch.
    NotApplicable,
    Pass,
    /// Could not run here; the reason is in the details.
    Skip,
    Warn,
    Fail,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::NotApplicable => "-",
            Status::Pass => "ok",
            Status::Skip => "skip",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "-" => Status::NotApplicable,
            "ok" => Status::Pass,
            "skip" => Status::Skip,
            "WARN" => Status::Warn,
            "FAIL" => Status::Fail,
            _ => return None,
        })
    }
}

/// The result of one check on one patch (or on the series).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Which check (its name is the column).
    pub check: Check,
    pub status: Status,
    /// One line per finding: `file:line: message`, or the reason of a skip.
    pub details: Vec<String>,
}

impl Outcome {
    pub fn new(check: Check, status: Status) -> Outcome {
        Outcome {
            check,
            status,
            details: Vec::new(),
        }
    }

    pub fn skip(check: Check, reason: impl Into<String>) -> Outcome {
        Outcome {
            check,
            status: Status::Skip,
            details: vec![format!("skip: {}", reason.into())],
        }
    }

    /// Pass when there are no findings, `bad` otherwise.
    pub fn from_findings(check: Check, bad: Status, details: Vec<String>) -> Outcome {
        Outcome {
            check,
            status: if details.is_empty() {
                Status::Pass
            } else {
                bad
            },
            details,
        }
    }
}

/// One patch of the range and what the checks found.
#[derive(Debug, Clone)]
pub struct PatchReport {
    /// 1-based position in the range.
    pub index: usize,
    pub commit: String,
    pub subject: String,
    pub cached: bool,
    pub outcomes: Vec<Outcome>,
    /// Every build warning seen at this patch (`file: message` keys), so later
    /// patches do not count them as new.
    pub build_keys: Vec<String>,
}
