"""Check that the hash locks still match their inputs (`make lint`; `make lock` mends a mismatch).

- requirements-dev.lock holds each pin of requirements-dev.txt at its version;
- services/api/requirements.lock satisfies the ranges of the API's pyproject.toml and of its
  build-requirements.in;
- requirements-dev.lock holds every package of services/api/requirements.lock at the same
  version, so that the unit tests run on what the image ships.

Dependabot edits the inputs but cannot relock (README.md, "Dependencies"): this is what tells its
pull requests apart from a relocked change.
"""

import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "services/api"
DEV_INPUT, DEV_LOCK = ROOT / "requirements-dev.txt", ROOT / "requirements-dev.lock"
API_LOCK = API / "requirements.lock"
# A pinned package's line starts with `name==version`; markers and hashes may follow.
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def pins(path: Path) -> dict[str, str]:
    """Canonical package name -> version, for each `name==version` line of a requirements file."""
    return {canonicalize_name(name): version for name, version in _PIN.findall(path.read_text())}


def api_ranges() -> list[Requirement]:
    """The API's runtime requirements (pyproject.toml) and its build backend's."""
    project = tomllib.loads((API / "pyproject.toml").read_text())["project"]
    build = (API / "build-requirements.in").read_text().splitlines()
    lines = project["dependencies"] + [line for line in build if line and not line.startswith("#")]
    return [Requirement(line) for line in lines]


def problems() -> list[str]:
    dev_lock, api_lock = pins(DEV_LOCK), pins(API_LOCK)
    found = [
        f"requirements-dev.txt pins {name}=={version}, requirements-dev.lock has "
        f"{dev_lock.get(name, 'none')}"
        for name, version in pins(DEV_INPUT).items()
        if dev_lock.get(name) != version
    ]
    for requirement in api_ranges():
        locked = api_lock.get(canonicalize_name(requirement.name))
        if locked is None or not requirement.specifier.contains(locked, prereleases=True):
            found.append(f"services/api asks for {requirement}, its lock has {locked or 'none'}")
    found += [
        f"services/api/requirements.lock has {name}=={version}, requirements-dev.lock "
        f"{dev_lock.get(name, 'none')}"
        for name, version in api_lock.items()
        if dev_lock.get(name) != version
    ]
    return found


def main() -> int:
    found = problems()
    for problem in found:
        print(f"check_locks: {problem}", file=sys.stderr)
    if found:
        print("check_locks: the locks are out of date: run `make lock`", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
