"""
Run trial, pass its output through, and end with one plain line of counts:
C{N passed, N failed} (and C{, N skipped} when tests were skipped).

Usage: python .ci/summarize.py TRIAL_COMMAND...

The exit status is non-zero when trial fails, when a test failed or
errored, or when no test ran.
"""

from __future__ import annotations

import re
import subprocess
import sys

# trial's last line: "PASSED (successes=12)", "PASSED (skips=1, successes=12)",
# "FAILED (failures=1, errors=2, successes=9)"; a run with nothing to count
# prints only "PASSED" or "FAILED".
RESULT = re.compile(r"^(PASSED|FAILED)(?: \((?P<counts>[^)]*)\))?\s*$")


def count(line: str) -> dict[str, int] | None:
    """
    Parse trial's result line into its counts, or return C{None} when
    C{line} is not one.
    """
    match = RESULT.match(line)
    if match is None:
        return None
    counts: dict[str, int] = {}
    for item in (match.group("counts") or "").split(","):
        name, _, value = item.strip().partition("=")
        if value.isdigit():
            counts[name] = int(value)
    return counts


def main(command: list[str]) -> int:
    if not command:
        sys.stderr.write("usage: summarize.py TRIAL_COMMAND...\n")
        return 2

    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    counts = None
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        parsed = count(line)
        if parsed is not None:
            counts = parsed
    status = process.wait()

    if counts is None:
        print("0 passed, 0 failed")
        sys.stderr.write(f"trial printed no result line (exit status {status})\n")
        return status or 1

    passed = counts.get("successes", 0) + counts.get("expectedFailures", 0)
    failed = (
        counts.get("failures", 0)
        + counts.get("errors", 0)
        + counts.get("unexpectedSuccesses", 0)
    )
    skipped = counts.get("skips", 0)
    summary = f"{passed} passed, {failed} failed"
    if skipped:
        summary += f", {skipped} skipped"
    print(summary)

    if status != 0 or failed:
        return status or 1
    if passed == 0:
        sys.stderr.write("no test ran\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
