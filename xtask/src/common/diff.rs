//! The files a patch touches and the lines it adds (new-side line numbers).

/// One file of a unified diff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileDiff {
    /// Path after the patch (before it, for a deleted file).
    pub path: String,
    pub added_file: bool,
    pub deleted: bool,
    /// Added lines: (line number in the new file, text without the `+`).
    pub added: Vec<(usize, String)>,
}

/// Parses `git show`/`git diff` output (a/ b/ prefixes, no renames).
pub fn parse(text: &str) -> Vec<FileDiff> {
    let mut out: Vec<FileDiff> = Vec::new();
    let mut line_no = 0usize;
    let mut in_hunk = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("diff --git a/") {
            let path = rest
                .rsplit_once(" b/")
                .map(|(_, b)| b)
                .unwrap_or(rest)
                .to_string();
            out.push(FileDiff {
                path,
                ..FileDiff::default()
            });
            in_hunk = false;
            continue;
        }
        let Some(f) = out.last_mut() else { continue };
        if !in_hunk {
            if line.starts_with("new file mode") {
                f.added_file = true;
            } else if line.starts_with("deleted file mode") {
                f.deleted = true;
            } else if let Some(p) = line.strip_prefix("+++ b/") {
                f.path = p.to_string();
            }
        }
        if let Some(h) = line.strip_prefix("@@ ") {
            // @@ -a,b +c,d @@
            line_no = h
                .split_whitespace()
                .find_map(|w| w.strip_prefix('+'))
                .and_then(|w| w.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            in_hunk = true;
            continue;
        }
        if !in_hunk {
            continue;
        }
        if let Some(added) = line.strip_prefix('+') {
            f.added.push((line_no, added.to_string()));
            line_no += 1;
        } else if line.starts_with(' ') || line.is_empty() {
            line_no += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_lines_have_new_numbers() {
        let text = "\
diff --git a/net/a.c b/net/a.c
index 1..2 100644
--- a/net/a.c
+++ b/net/a.c
@@ -10,3 +10,4 @@ int f(void)
 ctx
-old
+new one
+new two
 ctx
@@ -40 +41,2 @@
+late
 x
diff --git a/inc/b.h b/inc/b.h
new file mode 100644
--- /dev/null
+++ b/inc/b.h
@@ -0,0 +1,2 @@
+static int g(void);
+
diff --git a/gone.c b/gone.c
deleted file mode 100644
--- a/gone.c
+++ /dev/null
@@ -1 +0,0 @@
-bye
";
        let f = parse(text);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].path, "net/a.c");
        assert_eq!(
            f[0].added,
            vec![
                (11, "new one".to_string()),
                (12, "new two".to_string()),
                (41, "late".to_string())
            ]
        );
        assert!(f[1].added_file);
        assert_eq!(f[1].added[0], (1, "static int g(void);".to_string()));
        assert_eq!(f[1].added[1], (2, String::new()));
        assert!(f[2].deleted);
        assert_eq!(f[2].path, "gone.c");
    }
}
