"""Rename the sample resource, in place, to start your own from it: `make rename-resource`.

    .venv/bin/python scripts/rename_resource.py items notes [--singular-from/--singular-to]

This is step 1 of docs/customize.md: it renames the resource's modules (route, schemas,
repository, unit test) and every mention of it in the files that make up a resource:

- services/api/src/api/tables.py, routes/, schemas/, repositories/;
- services/api/tests/ (the unit tests);
- tests/support/domain.py (how the Docker suites and the bench reach the domain);
- scripts/seed.py.

Nothing else should need it: the HTTP machinery (api/web/), the suites and the bench reach the
resource only through those files; tests/customize/test_swap.py checks that on every `make test`.
Applied migrations are history and are left alone: write the next one with
`make migration m="..."` (the script prints the command). The page key `"items"` of every list
response is part of the page shape, not of the resource, and is left alone too.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API = Path("services/api/src/api")

# The files that make up a resource (relative to the repository root). Globs, in one place: the
# swap test reads this list as the allow-list of what a swap may change.
RESOURCE_FILES = [
    f"{API}/tables.py",
    f"{API}/routes/*.py",
    f"{API}/schemas/*.py",
    f"{API}/repositories/*.py",
    "services/api/tests/*.py",
    "tests/support/domain.py",
    "scripts/seed.py",
]
# Modules named after the resource, renamed with it ({} is the resource's plural name).
RESOURCE_MODULES = [
    f"{API}/routes/{{}}.py",
    f"{API}/schemas/{{}}.py",
    f"{API}/repositories/{{}}.py",
    "services/api/tests/test_{}.py",
]


# Mentions of "items" that are not the sample resource: the page key and ``dict.items()``.
_NOT_THE_RESOURCE = re.compile(r"""\[(["'])items\1\]|\.get\((["'])items\2|\.items\(""")


def rename_text(text: str, old: str, new: str, old_one: str, new_one: str) -> str:
    """``text`` with the resource renamed in every spelling: items, item_id, Item, ITEMS, ..."""
    kept: list[str] = []

    def hide(match: re.Match[str]) -> str:
        kept.append(match.group(0))
        return f"\0{len(kept) - 1}\0"

    text = _NOT_THE_RESOURCE.sub(hide, text)
    for before, after in ((old, new), (old_one, new_one)):
        for case in (str.lower, str.capitalize, str.upper):
            text = text.replace(case(before), case(after))
    return re.sub(r"\0(\d+)\0", lambda m: kept[int(m.group(1))], text)


def rename_resource(
    root: Path, old: str, new: str, old_one: str, new_one: str
) -> tuple[list[Path], list[Path]]:
    """Rename in the tree at ``root``; returns (modules moved, files edited), root-relative."""
    moved = []
    for pattern in RESOURCE_MODULES:
        source, target = root / pattern.format(old), root / pattern.format(new)
        if source.exists():
            if target.exists():
                raise SystemExit(f"{target.relative_to(root)} exists already")
            source.rename(target)
            moved.append(target.relative_to(root))
    edited = []
    for pattern in RESOURCE_FILES:
        for path in sorted(root.glob(pattern)):
            text = path.read_text()
            renamed = rename_text(text, old, new, old_one, new_one)
            if renamed != text:
                path.write_text(renamed)
                edited.append(path.relative_to(root))
    return moved, edited


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", help="the resource's plural name today, e.g. items")
    parser.add_argument("new", help="its new plural name, e.g. notes")
    parser.add_argument("--singular-from", help="default: OLD without its final s")
    parser.add_argument("--singular-to", help="default: NEW without its final s")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in (args.old, args.new):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            parser.error(f"{name!r}: use a lower-case Python identifier, e.g. notes")
    old_one = args.singular_from or args.old.removesuffix("s")
    new_one = args.singular_to or args.new.removesuffix("s")
    moved, edited = rename_resource(args.root, args.old, args.new, old_one, new_one)
    if not edited:
        print(f"nothing mentions {args.old!r}", file=sys.stderr)
        return 1
    for path in moved:
        print(f"moved  {path}")
    for path in edited:
        print(f"edited {path}")
    print(f'next: make migration m="replace {args.old} with {args.new}", then make test-unit')
    return 0


if __name__ == "__main__":
    sys.exit(main())
