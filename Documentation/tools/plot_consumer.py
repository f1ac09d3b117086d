#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Plot a report of the Rust consumer (rbc) as a timeline.

usage: plot_consumer.py REPORT.json OUT.png

`cargo xtask test-qemu` writes the report to target/consumer-report.json. For each
address family the plot shows, per connection (stream), when it was established,
when it failed, and the faults, address moves and ADDR_CHANGE events of the run.
Needs matplotlib (`pip install matplotlib`).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MARKERS = {
    "established": ("o", "tab:green", "connection established"),
    "conn_error": ("x", "tab:red", "connection error"),
    "addr_change": ("v", "tab:purple", "RDMA_CM_EVENT_ADDR_CHANGE"),
    "flowing": ("|", "tab:blue", "traffic flowing again"),
}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        report = json.load(f)
    families = [k for k in ("ipv4", "ipv6") if k in report]
    fig, axes = plt.subplots(len(families), 1, figsize=(9, 2.6 * len(families)),
                             sharex=True, squeeze=False)
    for ax, fam in zip(axes[:, 0], families):
        run = report[fam]
        seen = set()
        for ev in run["events"]:
            kind = ev["event"]
            if kind == "fault":
                ax.axvline(ev["t"], color="black", linestyle="--", linewidth=1)
                ax.text(ev["t"], run["connections"] - 0.4, " " + ev["cmd"],
                        fontsize=7)
                continue
            if kind == "addr_move":
                label = None if "addr_move" in seen else "address moved"
                seen.add("addr_move")
                ax.axvline(ev["t"], color="tab:orange", linewidth=1, label=label)
                continue
            if kind not in MARKERS or "stream" not in ev:
                continue
            marker, color, text = MARKERS[kind]
            label = None if kind in seen else text
            seen.add(kind)
            ax.scatter([ev["t"]], [ev["stream"]], marker=marker, color=color,
                       label=label, zorder=3)
        ax.set_ylabel(f"{fam}\nstream")
        ax.set_yticks(range(run["connections"]))
        ax.set_ylim(-0.5, run["connections"] - 0.2)
        ax.grid(axis="x", alpha=0.3)
        lost, dup = run["lost"], run["duplicated"]
        ax.set_title(f"{fam}: {run['delivered']} of {run['messages']} messages "
                     f"delivered, {lost} lost, {dup} duplicated", fontsize=9)
    axes[-1, 0].set_xlabel("seconds since the client started")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
