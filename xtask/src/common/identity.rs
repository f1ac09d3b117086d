//! The sender's identity (DCO): `cargo xtask send` writes the series as the person who
//! sends it, like b4. The committed patches keep a neutral identity ([`NEUTRAL`]); the
//! sent mails get git's user.name and user.email in From:, Signed-off-by: and the
//! MAINTAINERS `M:` line the series adds. Everything here is a pure function over
//! text, so it is unit tested without git.

use std::sync::LazyLock;

use regex::Regex;

/// The neutral identity of the committed patches (also what `cargo xtask kernel
/// fetch` configures in a kernel tree that has no identity of its own).
pub const NEUTRAL_NAME: &str = "rdmabond developers";
/// The neutral identity's address: a placeholder, never sent.
pub const NEUTRAL_EMAIL: &str = "rdmabond@example.org";

/// A name and an email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Identity {
    pub fn new(name: &str, email: &str) -> Identity {
        Identity {
            name: name.to_string(),
            email: email.to_string(),
        }
    }

    /// The neutral identity of patches/.
    pub fn neutral() -> Identity {
        Identity::new(NEUTRAL_NAME, NEUTRAL_EMAIL)
    }

    /// `Name <email>`.
    pub fn mailbox(&self) -> String {
        format!("{} <{}>", self.name, self.email)
    }
}

/// Why `email` cannot be a sender's address (a reserved or local domain), or None.
pub fn placeholder_reason(email: &str) -> Option<String> {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Some(format!("`{email}` has no '@'"));
    };
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if local.is_empty() || domain.is_empty() {
        return Some(format!("`{email}` is not an address"));
    }
    let reserved = ["example.org", "example.com", "example.net"];
    if let Some(r) = reserved
        .iter()
        .find(|r| domain == **r || domain.ends_with(&format!(".{r}")))
    {
        return Some(format!("`{email}` is a placeholder address ({r})"));
    }
    // RFC 2606 / 6761 / 6762 names that never reach anyone.
    let tld = domain.rsplit('.').next().unwrap_or_default();
    let local_tlds = [
        "example",
        "invalid",
        "test",
        "localhost",
        "local",
        "localdomain",
    ];
    if local_tlds.contains(&tld) || domain.contains("invalid") {
        return Some(format!(
            "`{email}` is a placeholder address (reserved domain .{tld})"
        ));
    }
    if !domain.contains('.') {
        return Some(format!(
            "`{email}` has no domain anyone can mail (`{domain}` is a host name)"
        ));
    }
    None
}

/// The identity git reports, if it may sign and send patches; else the one-line cause.
pub fn validate(name: Option<&str>, email: Option<&str>) -> Result<Identity, String> {
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    let email = email.map(str::trim).filter(|e| !e.is_empty());
    let (Some(name), Some(email)) = (name, email) else {
        let missing: Vec<&str> = [
            ("user.name", name.is_none()),
            ("user.email", email.is_none()),
        ]
        .iter()
        .filter(|(_, m)| *m)
        .map(|(k, _)| *k)
        .collect();
        return Err(format!(
            "git identity not set (no {})",
            missing.join(", no ")
        ));
    };
    let email = email.trim_start_matches('<').trim_end_matches('>');
    if let Some(why) = placeholder_reason(email) {
        return Err(format!(
            "git identity `{name} <{email}>` is not a real one: {why}"
        ));
    }
    if name == NEUTRAL_NAME {
        return Err(format!(
            "git identity `{name} <{email}>` is the series' neutral name, not a person's"
        ));
    }
    Ok(Identity::new(name, email))
}

/// The refusal `send` prints: the cause and the fix, on one line. `local` is true
/// when the kernel tree's own config sets the identity (which wins over --global).
pub fn refusal(cause: &str, tree: &str, local: bool) -> String {
    let unset = if local {
        format!(
            " (the kernel tree's own config sets it, `cargo xtask kernel fetch` does when there is none: \
             `git -C {tree} config --unset user.name; git -C {tree} config --unset user.email` first)"
        )
    } else {
        String::new()
    };
    format!(
        "{cause}: run `git config --global user.name \"Your Name\"` and \
         `git config --global user.email <your address>`{unset}; \
         send writes the series under that identity (From:, Signed-off-by:, MAINTAINERS)"
    )
}

/// Rewrites a `git format-patch` mail from `from` to `to`: the From: header, every
/// trailer naming `from` (Signed-off-by: and the like) and `M:` lines naming `from` in
/// the MAINTAINERS diff (added, removed and context lines alike, so later patches that
/// touch the same section still apply).
pub fn rewrite(mail: &str, from: &Identity, to: &Identity) -> String {
    let (old, new) = (from.mailbox(), to.mailbox());
    let mut out = String::with_capacity(mail.len());
    let mut in_header = true;
    let mut in_diff = false;
    let mut in_maintainers = false;
    for line in mail.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let eol = &line[body.len()..];
        let rewritten = if in_header {
            if body.is_empty() {
                in_header = false;
            }
            body.strip_prefix("From: ")
                .filter(|m| *m == old)
                .map(|_| format!("From: {new}"))
        } else if let Some(rest) = body.strip_prefix("diff --git ") {
            in_diff = true;
            in_maintainers = rest.ends_with(" b/MAINTAINERS");
            None
        } else if in_diff {
            if in_maintainers && body.len() > 1 && body[1..] == format!("M:\t{old}") {
                Some(format!("{}M:\t{new}", &body[..1]))
            } else {
                None
            }
        } else {
            // The message: `Key: Name <email>` trailers.
            body.split_once(": ")
                .filter(|(k, v)| {
                    *v == old
                        && !k.is_empty()
                        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
                .map(|(k, _)| format!("{k}: {new}"))
        };
        match rewritten {
            Some(r) => {
                out.push_str(&r);
                out.push_str(eol);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// MAINTAINERS with the `M:` lines of `from` given to `to` (what [`rewrite`] does to
/// the file through the patches).
pub fn rewrite_maintainers(text: &str, from: &Identity, to: &Identity) -> String {
    let old = format!("M:\t{}", from.mailbox());
    let new = format!("M:\t{}", to.mailbox());
    text.split_inclusive('\n')
        .map(|l| {
            if l.trim_end_matches('\n') == old {
                format!("{new}{}", &l[old.len()..])
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// Adds a trailer (`Cc: stable@vger.kernel.org`) to a format-patch mail's message,
/// before its first Signed-off-by: (after Fixes:, as the stable rules put it), or at
/// the end of the trailer block. A mail that has it already is returned as is.
pub fn add_trailer(mail: &str, trailer: &str) -> String {
    let lines: Vec<&str> = mail.split_inclusive('\n').collect();
    let header_end = lines.iter().position(|l| l.trim_end().is_empty());
    let end = lines
        .iter()
        .position(|l| l.trim_end() == "---")
        .or_else(|| lines.iter().position(|l| l.starts_with("diff --git ")));
    let (Some(h), Some(end)) = (header_end, end) else {
        return mail.to_string();
    };
    let message = &lines[h..end];
    if message.iter().any(|l| l.trim_end() == trailer) {
        return mail.to_string();
    }
    let sign_off = message
        .iter()
        .position(|l| l.starts_with("Signed-off-by: "))
        .map(|i| h + i);
    // Without a sign-off: a trailer block of its own after the message's last line.
    let at = sign_off.unwrap_or_else(|| {
        (h..end)
            .rev()
            .find(|i| !lines[*i].trim().is_empty())
            .map_or(end, |i| i + 1)
    });
    let mut out: String = lines[..at].concat();
    if sign_off.is_none() {
        out.push('\n');
    }
    out.push_str(trailer);
    out.push('\n');
    out.push_str(&lines[at..].concat());
    out
}

/// Email addresses in `text` that no one can receive mail at: `(line, address)`.
pub fn placeholder_addresses(text: &str) -> Vec<(usize, String)> {
    static RE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+").unwrap());
    let re = &*RE;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for m in re.find_iter(line) {
            if placeholder_reason(m.as_str()).is_some() {
                out.push((n + 1, m.as_str().to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_that_may_send() {
        let ok = validate(Some("Ada Lovelace"), Some("ada@kernel.org")).unwrap();
        assert_eq!(ok.mailbox(), "Ada Lovelace <ada@kernel.org>");
        assert!(validate(Some(" A "), Some(" a@b.de ")).is_ok());
        for (name, email, want) in [
            (None, None, "not set (no user.name, no user.email)"),
            (Some("A"), None, "not set (no user.email)"),
            (Some(""), Some("a@b.de"), "not set (no user.name)"),
            (Some("A"), Some("a"), "has no '@'"),
            (
                Some("A"),
                Some("a@example.org"),
                "placeholder address (example.org)",
            ),
            (Some("A"), Some("a@EXAMPLE.COM"), "(example.com)"),
            (Some("A"), Some("a@mail.example.net"), "(example.net)"),
            (Some("A"), Some("root@localhost"), ".localhost"),
            (Some("A"), Some("a@x.invalid"), ".invalid"),
            (Some("A"), Some("a@invalid-domain.de"), "placeholder"),
            (
                Some("A"),
                Some("m@users.noreply.r-seed.example"),
                ".example",
            ),
            (Some("A"), Some("a@mybox"), "host name"),
            (Some(NEUTRAL_NAME), Some("a@b.de"), "neutral"),
            (Some(NEUTRAL_NAME), Some(NEUTRAL_EMAIL), "example.org"),
        ] {
            let e = validate(name, email).unwrap_err();
            assert!(e.contains(want), "{name:?} {email:?}: {e}");
            assert!(!e.contains('\n'));
        }
        let r = refusal("git identity not set (no user.name)", "linux", false);
        assert!(r.starts_with("git identity not set"));
        assert!(r.contains("git config --global user.name") && r.contains("user.email"));
        assert!(!r.contains('\n') && !r.contains("--unset"));
        assert!(refusal("x", "linux", true).contains("git -C linux config --unset user.email"));
    }

    const MAIL: &str = "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n\
From: rdmabond developers <rdmabond@example.org>\n\
Date: Tue, 24 Nov 2026 21:57:03 +0000\n\
Subject: [PATCH 08/15] Documentation: networking: add rdmabond\n\
\n\
Text naming rdmabond developers <rdmabond@example.org> stays.\n\
\n\
Fixes: 8700e3e7c485 (\"Soft RoCE driver\")\n\
Signed-off-by: rdmabond developers <rdmabond@example.org>\n\
---\n\
\x20MAINTAINERS | 2 ++\n\
\n\
diff --git a/MAINTAINERS b/MAINTAINERS\n\
index 1..2 100644\n\
--- a/MAINTAINERS\n\
+++ b/MAINTAINERS\n\
@@ -1,3 +1,5 @@\n\
\x20RDMABOND\n\
\x20M:\trdmabond developers <rdmabond@example.org>\n\
-M:\trdmabond developers <rdmabond@example.org>\n\
+M:\trdmabond developers <rdmabond@example.org>\n\
+R:\trdmabond developers <rdmabond@example.org>\n\
diff --git a/doc.rst b/doc.rst\n\
+M:\trdmabond developers <rdmabond@example.org>\n\
+Signed-off-by: rdmabond developers <rdmabond@example.org>\n";

    #[test]
    fn rewrites_from_sign_off_and_maintainers() {
        let to = Identity::new("Ada Lovelace", "ada@kernel.org");
        let out = rewrite(MAIL, &Identity::neutral(), &to);
        assert!(out.contains("\nFrom: Ada Lovelace <ada@kernel.org>\n"));
        assert!(out.contains("\nSigned-off-by: Ada Lovelace <ada@kernel.org>\n---\n"));
        assert!(out.contains("\n M:\tAda Lovelace <ada@kernel.org>\n"));
        assert!(out.contains("\n-M:\tAda Lovelace <ada@kernel.org>\n"));
        assert!(out.contains("\n+M:\tAda Lovelace <ada@kernel.org>\n"));
        // Only From:, trailers and MAINTAINERS M: lines change.
        assert!(out.contains("\nText naming rdmabond developers <rdmabond@example.org> stays.\n"));
        assert!(out.contains("\n+R:\trdmabond developers <rdmabond@example.org>\n"));
        assert!(out.contains("\ndiff --git a/doc.rst b/doc.rst\n+M:\trdmabond developers"));
        assert!(out.contains("\n+Signed-off-by: rdmabond developers <rdmabond@example.org>\n"));
        assert_eq!(out.lines().count(), MAIL.lines().count());
        // Rewriting back gives the original.
        assert_eq!(rewrite(&out, &to, &Identity::neutral()), MAIL);
        let found = placeholder_addresses(&out);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(
            placeholder_addresses("To: netdev@vger.kernel.org, Ada <ada@kernel.org>\n").is_empty()
        );
        assert_eq!(
            placeholder_addresses("a\nM:\tX <x@example.com>\n"),
            vec![(2, "x@example.com".to_string())]
        );

        let m = "X\nM:\trdmabond developers <rdmabond@example.org>\nM:\tB <b@c.de>\n";
        assert_eq!(
            rewrite_maintainers(m, &Identity::neutral(), &to),
            "X\nM:\tAda Lovelace <ada@kernel.org>\nM:\tB <b@c.de>\n"
        );
    }

    #[test]
    fn stable_trailer_goes_before_the_sign_off() {
        let out = add_trailer(MAIL, "Cc: stable@vger.kernel.org");
        assert!(out.contains(
            "\nFixes: 8700e3e7c485 (\"Soft RoCE driver\")\nCc: stable@vger.kernel.org\nSigned-off-by: rdmabond"
        ));
        assert_eq!(out.matches("Cc: stable").count(), 1);
        assert_eq!(add_trailer(&out, "Cc: stable@vger.kernel.org"), out);
        let bare = "From: A <a@b.de>\nSubject: x\n\nBody.\n\n---\n a | 1 +\n";
        assert_eq!(
            add_trailer(bare, "Cc: stable@vger.kernel.org"),
            "From: A <a@b.de>\nSubject: x\n\nBody.\n\nCc: stable@vger.kernel.org\n\n---\n a | 1 +\n"
        );
    }
}
