#!/usr/bin/env python3
"""Run the shell blocks of every tracked Markdown file that are marked as runnable, from the repository root.

Each ```sh block must be preceded by a marker line, so that no command goes unclassified:
  <!-- ci: run -->             this step runs the block as pasted (bash -euo pipefail) and fails if it fails;
  <!-- ci: skip: <why> -->     not run here (needs a cloud account, or another CI step runs it): the reason.
A block without a marker fails the step.
"""
import re
import subprocess
import sys
import time

MARKER = re.compile(r"^<!-- ci: (run|skip: .+) -->$")


def blocks(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            start = i
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            marker = lines[start - 1].strip() if start > 0 else ""
            yield start + 1, MARKER.match(marker), "\n".join(lines[start + 1 : j])
            i = j
        i += 1


def main():
    files = subprocess.run(["git", "ls-files", "*.md"], check=True, capture_output=True, text=True).stdout.split()
    failures, ran, skipped = [], 0, 0
    for path in files:
        for line, marker, script in blocks(path):
            where = f"{path}:{line}"
            if not marker:
                failures.append(f"{where}: a sh block without a <!-- ci: run --> or <!-- ci: skip: why --> marker")
                continue
            if marker.group(1) != "run":
                skipped += 1
                continue
            print(f"== {where}\n{script}", flush=True)
            started = time.monotonic()
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True)
            took = time.monotonic() - started
            tail = "\n".join((done.stdout + done.stderr).strip().split("\n")[-5:])
            print(f"   exit {done.returncode} after {took:.0f} s; last lines:\n{tail}\n", flush=True)
            ran += 1
            if done.returncode != 0:
                failures.append(f"{where}: exit {done.returncode}")
    print(f"README commands: {ran} blocks run, {skipped} skipped with a reason, {len(failures)} failed")
    for failure in failures:
        print(f"  {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
