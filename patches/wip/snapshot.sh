#!/bin/sh
# Saves the in-progress kernel work of issue 3 (branch wip/dev of the kernel tree,
# worktree kernel-src/wt-dev) into patches/wip/issue-3/. These patches are NOT part
# of the series (patches/series); the next session rebases them onto base-7.3.4 with
#   git -C kernel-src/linux checkout -b wip/dev base-7.3.4 && git am -3 patches/wip/issue-3/*.patch
set -eu
top=$(git rev-parse --show-toplevel)
out=$top/patches/wip/issue-3
tree=$top/kernel-src/linux
mkdir -p "$out" && rm -f "$out"/*.patch "$out"/uncommitted.diff
base=$(git -C "$tree" merge-base wip/dev base-7.3.4 2>/dev/null || true)
# wip/dev was started on an earlier import of the same tree; find its root commit.
[ -n "$base" ] || base=$(git -C "$tree" rev-list --max-parents=0 wip/dev)
git -C "$tree" format-patch --quiet --zero-commit --no-signature -o "$out" "$base..wip/dev"
if [ -d "$top/kernel-src/wt-dev" ]; then
	# Read-only: tracked edits as a diff, new files appended whole (no index changes).
	git -C "$top/kernel-src/wt-dev" diff HEAD > "$out/uncommitted.diff"
	git -C "$top/kernel-src/wt-dev" ls-files --others --exclude-standard |
		while read -r f; do
			git -C "$top/kernel-src/wt-dev" diff --no-index /dev/null "$f" >> "$out/uncommitted.diff" || true
		done
	[ -s "$out/uncommitted.diff" ] || rm -f "$out/uncommitted.diff"
fi
ls "$out"
