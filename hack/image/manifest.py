#!/usr/bin/env python3
"""The image's package manifest: `pip inspect` and `dpkg-query -W` in one JSON file,
and the Python distributions in the image checked against constraints.txt.

Every distribution in the image's venv must be pinned in constraints.txt at exactly the
version installed, except flox-isa itself and the venv's own pip and setuptools (from
the base's ensurepip). Exit 1, with one line per mismatch, if any is not.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

# The venv's own tooling (python -m venv puts them there) and the package itself.
UNPINNED = frozenset({"flox-isa", "pip", "setuptools"})


def canonical(name: str) -> str:
    """PEP 503 normalised name: `PyYAML` and `pyyaml`, `typing_extensions` and
    `typing-extensions` are the same distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(text: str) -> dict[str, str]:
    """`name==version` lines of a constraints file (comments and blanks skipped)."""
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise ValueError(f"constraints: '{line}' is not an exact pin (name==version)")
        pins[canonical(name)] = version.strip()
    return pins


def installed(pip_inspect: dict[str, Any]) -> dict[str, str]:
    """Distribution name -> version from `pip inspect` output."""
    return {
        canonical(item["metadata"]["name"]): item["metadata"]["version"]
        for item in pip_inspect["installed"]
    }


def mismatches(found: dict[str, str], pins: dict[str, str]) -> list[str]:
    """One line per distribution that is not at its pin (or not pinned at all)."""
    problems = []
    for name, version in sorted(found.items()):
        if name in UNPINNED:
            continue
        pinned = pins.get(name)
        if pinned is None:
            problems.append(f"{name} {version} is in the image but not in constraints.txt")
        elif pinned != version:
            problems.append(f"{name} is {version} in the image, constraints.txt pins {pinned}")
    return problems


def debian_packages(text: str) -> list[dict[str, str]]:
    rows = (line.split("\t") for line in text.splitlines() if line.strip())
    return [{"package": p, "version": v, "architecture": a} for p, v, a in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pip-inspect", type=Path, required=True, help="pip inspect JSON")
    parser.add_argument("--dpkg", type=Path, required=True, help="dpkg-query -W output (TSV)")
    parser.add_argument("--constraints", type=Path, required=True, help="constraints.txt")
    parser.add_argument("--image", required=True, help="the image reference")
    parser.add_argument("--output", type=Path, required=True, help="manifest JSON to write")
    args = parser.parse_args(argv)
    try:
        pins = read_pins(args.constraints.read_text())
        found = installed(json.loads(args.pip_inspect.read_text()))
        debian = debian_packages(args.dpkg.read_text())
    except (OSError, ValueError, KeyError) as exc:
        print(f"manifest: {exc}", file=sys.stderr)
        return 2
    manifest = {
        "image": args.image,
        "python": [{"name": n, "version": v} for n, v in sorted(found.items())],
        "debian": debian,
    }
    args.output.write_text(json.dumps(manifest, indent=2) + "\n")
    problems = mismatches(found, pins)
    for problem in problems:
        print(f"{args.output}: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(
        f"  {args.output}: {len(found)} Python distributions (all at the pins of "
        f"{args.constraints}), {len(debian)} Debian packages"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
