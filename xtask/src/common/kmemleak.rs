//! kmemleak reports read by the test payload after each selftest.
//!
//! The payload (see `test_qemu`) writes `scan` to /sys/kernel/debug/kmemleak after a
//! test, prints the file between [`BEGIN`] and [`END`] lines on its output, and clears
//! it, so every block holds the objects that became unreferenced during that test.

/// Line before a block: `XTASK-KMEMLEAK-BEGIN <section>`.
pub const BEGIN: &str = "XTASK-KMEMLEAK-BEGIN ";
/// Line after a block.
pub const END: &str = "XTASK-KMEMLEAK-END";

/// Backtrace frames that make a leak the series' own: its driver and the helpers it
/// adds to net/ipv4, net/ipv6 and RDMA CM.
const OURS: &[&str] = &[
    "rdmabond",
    "inet_addr_move",
    "inet6_addr_move",
    "rdma_notify_addr_change",
];

/// One unreferenced object.
#[derive(Debug, Clone, PartialEq)]
pub struct Leak {
    /// `unreferenced object 0x... (size N):`
    pub header: String,
    /// `comm "...", pid N, jiffies N`
    pub comm: String,
    /// Backtrace frames, innermost first, without offsets.
    pub frames: Vec<String>,
}

impl Leak {
    /// Whether the allocation comes from the series' code.
    pub fn ours(&self) -> bool {
        self.frames
            .iter()
            .any(|f| OURS.iter().any(|o| f.contains(o)))
    }

    /// Whether the object was allocated while the kernel booted (by `start_kernel()`
    /// or an initcall): no test leaked it. kmemleak reports an object only once it
    /// is old enough and was not found referenced in a scan, so a boot leak can show
    /// up in the scan after the first test rather than in the one before it.
    pub fn at_boot(&self) -> bool {
        self.frames
            .iter()
            .any(|f| f == "start_kernel" || f == "do_initcalls" || f == "kernel_init_freeable")
    }

    /// The first frames that are not the allocator's own, for a one-line summary.
    pub fn summary(&self) -> String {
        let skip = [
            "kmemleak_",
            "kmalloc",
            "kmem_cache_",
            "__kmalloc",
            "kasan_",
            "slab_",
        ];
        let frames: Vec<&str> = self
            .frames
            .iter()
            .map(String::as_str)
            .filter(|f| !skip.iter().any(|s| f.starts_with(s)))
            .take(4)
            .collect();
        let size = self
            .header
            .split_once("(size ")
            .and_then(|(_, r)| r.split_once(')'))
            .map_or("?", |(n, _)| n);
        format!("{size} bytes from {}", frames.join(" < "))
    }
}

/// The leaks of one section.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub section: String,
    pub leaks: Vec<Leak>,
}

/// Parses the kmemleak file's text.
pub fn parse_leaks(lines: &[&str]) -> Vec<Leak> {
    let mut out: Vec<Leak> = Vec::new();
    let mut in_trace = false;
    for raw in lines {
        let line = raw.trim();
        if line.starts_with("unreferenced object ") {
            out.push(Leak {
                header: line.to_string(),
                comm: String::new(),
                frames: Vec::new(),
            });
            in_trace = false;
            continue;
        }
        let Some(leak) = out.last_mut() else { continue };
        if line.starts_with("comm ") {
            leak.comm = line.to_string();
        } else if line.starts_with("backtrace") {
            in_trace = true;
        } else if in_trace && !line.is_empty() {
            // `[<ffffffff81234567>] func+0x12/0x34` (older) or `func+0x12/0x34 [mod]`.
            let l = match line.split_once("] ") {
                Some((a, b)) if a.starts_with("[<") => b,
                _ => line,
            };
            let name = l.split('+').next().unwrap_or(l).trim();
            let module = l
                .rsplit_once(" [")
                .map(|(_, m)| format!(" [{}", m))
                .unwrap_or_default();
            leak.frames.push(format!("{name}{module}"));
        }
    }
    out
}

/// Every block in the payload's output lines.
pub fn blocks<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<Block> {
    let mut out = Vec::new();
    let mut cur: Option<(String, Vec<&str>)> = None;
    for line in lines {
        let line = line.trim_end_matches('\r');
        if let Some(section) = line.strip_prefix(BEGIN) {
            cur = Some((section.trim().to_string(), Vec::new()));
        } else if line == END {
            if let Some((section, body)) = cur.take() {
                out.push(Block {
                    section,
                    leaks: parse_leaks(&body),
                });
            }
        } else if let Some((_, body)) = cur.as_mut() {
            body.push(line);
        }
    }
    out
}

/// The payload lines that are not part of a kmemleak block: the KTAP stream.
pub fn filter_ktap(lines: &[(f64, String)]) -> Vec<(f64, &str)> {
    let mut inside = false;
    let mut out = Vec::new();
    for (t, l) in lines {
        if l.starts_with(BEGIN) {
            inside = true;
        } else if l.trim_end() == END {
            inside = false;
        } else if !inside {
            out.push((*t, l.as_str()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "\
unreferenced object 0xffff888012345600 (size 64):
  comm \"kworker/0:1\", pid 42, jiffies 4294937296
  hex dump (first 32 bytes):
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................
  backtrace (crc 1a2b3c4d):
    kmemleak_alloc+0x4a/0x80
    __kmalloc_cache_noprof+0x2b3/0x3a0
    rdmabond_addr_record+0x55/0x1f0 [rdmabond]
    rdmabond_engine_work+0x3c1/0x9a0 [rdmabond]
    process_one_work+0x5f3/0xd40
unreferenced object 0xffff888012345700 (size 32):
  comm \"swapper/0\", pid 1, jiffies 4294892296
  backtrace (crc 0):
    [<ffffffff81234567>] kmemleak_alloc+0x4a/0x80
    [<ffffffff81234568>] ramfs_get_inode+0x12/0x40
";

    #[test]
    fn leaks_are_parsed_and_classified() {
        let lines: Vec<&str> = REPORT.lines().collect();
        let leaks = parse_leaks(&lines);
        assert_eq!(leaks.len(), 2);
        assert!(leaks[0].ours());
        assert!(!leaks[1].ours());
        assert_eq!(leaks[0].frames[2], "rdmabond_addr_record [rdmabond]");
        assert_eq!(leaks[1].frames[1], "ramfs_get_inode");
        assert_eq!(
            leaks[0].summary(),
            "64 bytes from rdmabond_addr_record [rdmabond] < rdmabond_engine_work [rdmabond] \
             < process_one_work"
        );
        assert!(leaks[0].comm.contains("kworker/0:1"));
        assert!(!leaks[0].at_boot());
    }

    #[test]
    fn boot_leaks_are_recognised() {
        let boot = "unreferenced object 0xff11000004865580 (size 8):\n  \
                    comm \"swapper/0\", pid 0, jiffies 4294892348\n  backtrace (crc bea23b04):\n    \
                    __kmalloc_cache_noprof+0x2da/0x520\n    ramfs_init_fs_context+0x27/0x70\n    \
                    mnt_init+0x21f/0x830\n    start_kernel+0x296/0x300\n";
        let lines: Vec<&str> = boot.lines().collect();
        let leaks = parse_leaks(&lines);
        assert_eq!(leaks.len(), 1);
        assert!(leaks[0].at_boot());
    }

    #[test]
    fn blocks_are_split_by_section_and_kept_out_of_ktap() {
        let mut lines = vec![(0.0, "ok 1 selftests: x: a.sh".to_string())];
        lines.push((1.0, format!("{BEGIN}x:a.sh")));
        lines.extend(REPORT.lines().map(|l| (1.0, l.to_string())));
        lines.push((1.0, END.to_string()));
        lines.push((2.0, format!("{BEGIN}x:b.sh")));
        lines.push((2.0, END.to_string()));
        let b = blocks(lines.iter().map(|(_, l)| l.as_str()));
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].section.as_str(), b[0].leaks.len()), ("x:a.sh", 2));
        assert!(b[1].leaks.is_empty());
        let ktap = filter_ktap(&lines);
        assert_eq!(ktap.len(), 1);
    }
}
