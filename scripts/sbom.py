"""A CycloneDX SBOM of each image, from what the image really contains (`make images`).

    python scripts/sbom.py --out build/sbom flask-stack-api:0.1.0 flask-stack-nginx:0.1.0 ...

For each image, one short container (no network, read-only, no capabilities) reports:
- every Debian package dpkg has installed (`dpkg-query`): name, version, architecture, source;
- when the image has a Python virtual environment on its PATH (the API's /opt/venv), every
  distribution installed in it (`importlib.metadata`), i.e. the hash-locked packages as installed,
  and the application built from this repository (no PyPI package URL); the Debian-packaged
  Python modules are not counted twice.

The BOM (CycloneDX 1.6 JSON, written to OUT/<image name>.cdx.json) names the image as its subject
(metadata.component, with the image id) and lists each package as a component with its package
URL: pkg:deb/debian/NAME@VERSION?arch=...&distro=debian-13 and pkg:pypi/NAME@VERSION. It is
checked against the CycloneDX JSON schema before it is written (cyclonedx-python-lib's validator,
whose schemas ship with it: nothing is downloaded). Needs the docker CLI and the image present.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from packaging.utils import canonicalize_name

SCHEMA = SchemaVersion.V1_6
TOOL = "flask-stack scripts/sbom.py"
SEPARATOR = "----flask-stack-sbom----"

# Run inside the image by the image's own python3, if it has one: the distributions of the virtual
# environment it belongs to (none for a system Python, whose modules are Debian packages).
PYTHON_PROBE = """
import importlib.metadata, json, sys, sysconfig
found = []
if sys.prefix != sys.base_prefix:
    paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    for dist in importlib.metadata.distributions(path=paths):
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
        found.append({"name": dist.metadata["Name"], "version": dist.version,
                      "local": direct.get("url", "").startswith("file:")})
print(json.dumps({"prefix": sys.prefix, "python": sys.version.split()[0], "packages": found}))
"""

# dpkg-query's fields, tab-separated: status, name, version, architecture, source and its version.
DPKG_FIELDS = ("db:Status-Abbrev", "Package", "Version", "Architecture", "source:Package")
DPKG_FORMAT = "\\t".join(f"${{{field}}}" for field in (*DPKG_FIELDS, "source:Version")) + "\\n"
# One shell in the image prints three sections: os-release, dpkg's installed packages, Python's.
PROBE = f"""
cat /etc/os-release
echo {SEPARATOR}
dpkg-query -W -f '{DPKG_FORMAT}'
echo {SEPARATOR}
if command -v python3 >/dev/null 2>&1; then python3 -c "$1"; else echo '{{}}'; fi
"""


def run_probe(image: str) -> tuple[dict[str, str], list[dict[str, str]], dict[str, Any]]:
    """os-release fields, the installed Debian packages and the Python environment of `image`."""
    done = subprocess.run(
        [
            "docker", "run", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges:true", "--memory", "256m", "--pids-limit", "32",
            "--entrypoint", "/bin/sh", image, "-c", PROBE, "sh", PYTHON_PROBE,
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"sbom: probing {image} failed ({done.returncode}):\n{done.stderr}")
    sections = done.stdout.split(SEPARATOR + "\n")
    if len(sections) != 3:
        raise SystemExit(f"sbom: unexpected output from {image}:\n{done.stdout[:2000]}")
    os_release = {
        key: value.strip('"')
        for key, _, value in (line.partition("=") for line in sections[0].splitlines())
        if key
    }
    debs = []
    for line in sections[1].splitlines():
        status, name, version, arch, source, source_version = line.split("\t")
        if status.strip() == "ii":  # installed (not merely configured files left behind)
            debs.append(
                {
                    "name": name,
                    "version": version,
                    "arch": arch,
                    "source": source or name,
                    "source_version": source_version or version,
                }
            )
    python = json.loads(sections[2]) if sections[2].strip() else {}
    return os_release, debs, python


def inspect_image(image: str) -> dict[str, Any]:
    done = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"sbom: no image {image}: {done.stderr.strip()}")
    return json.loads(done.stdout)[0]


def build_bom(image: str) -> Bom:
    attrs = inspect_image(image)
    os_release, debs, python = run_probe(image)
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
    distro = f"{os_release.get('ID', 'debian')}-{os_release.get('VERSION_ID', 'unknown')}"

    subject = Component(
        type=ComponentType.CONTAINER,
        name=name,
        version=tag,
        bom_ref=f"image:{name}:{tag}",
        description=f"{os_release.get('PRETTY_NAME', 'Debian')} image",
        properties=[
            Property(name="flask-stack:image:id", value=attrs["Id"]),
            Property(name="flask-stack:image:created", value=attrs["Created"]),
            Property(name="flask-stack:image:architecture", value=attrs["Architecture"]),
            Property(name="flask-stack:image:os-release", value=os_release.get("PRETTY_NAME", "")),
        ],
    )
    bom = Bom()
    bom.metadata.timestamp = datetime.now(UTC)
    bom.metadata.component = subject
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name=TOOL))

    components = []
    for deb in debs:
        qualifiers = {"arch": deb["arch"], "distro": distro}
        if deb["source"] != deb["name"] or deb["source_version"] != deb["version"]:
            upstream = deb["source"]
            if deb["source_version"] != deb["version"]:
                upstream += f"@{deb['source_version']}"
            qualifiers["upstream"] = upstream
        components.append(
            Component(
                type=ComponentType.LIBRARY,
                name=deb["name"],
                version=deb["version"],
                bom_ref=f"deb:{deb['name']}:{deb['arch']}",
                purl=PackageURL("deb", "debian", deb["name"], deb["version"], qualifiers),
                properties=[Property(name="flask-stack:package:type", value="deb")],
            )
        )
    for package in python.get("packages", []):
        pypi_name = canonicalize_name(package["name"])
        local = package.get("local", False)
        components.append(
            Component(
                # Built from this repository (pip recorded a file: URL), not fetched from PyPI:
                # the image's own application, with no package URL that would name PyPI's.
                type=ComponentType.APPLICATION if local else ComponentType.LIBRARY,
                name=package["name"],
                version=package["version"],
                bom_ref=f"python:{pypi_name}",
                purl=None if local else PackageURL("pypi", None, pypi_name, package["version"]),
                properties=[
                    Property(name="flask-stack:package:type", value="python"),
                    Property(name="flask-stack:python:prefix", value=python["prefix"]),
                    Property(
                        name="flask-stack:python:source", value="local build" if local else "PyPI"
                    ),
                ],
            )
        )
    for component in components:
        bom.components.add(component)
    bom.register_dependency(subject, components)
    return bom


def write_bom(bom: Bom, path: Path) -> None:
    text = make_outputter(bom, OutputFormat.JSON, SCHEMA).output_as_string(indent=1)
    error = JsonStrictValidator(SCHEMA).validate_str(text)
    if error is not None:
        raise SystemExit(f"sbom: {path.name} is not valid CycloneDX {SCHEMA.to_version()}: {error}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + "\n")
    tmp.replace(path)


def output_path(out: Path, image: str) -> Path:
    name = image.rpartition(":")[0] if ":" in image.split("/")[-1] else image
    return out / f"{name.replace('/', '_')}.cdx.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="image references, e.g. flask-stack-api:0.1.0")
    parser.add_argument("--out", type=Path, default=Path("build/sbom"), help="output directory")
    args = parser.parse_args(argv)
    for image in args.images:
        bom = build_bom(image)
        path = output_path(args.out, image)
        write_bom(bom, path)
        kinds = [p.value for c in bom.components for p in c.properties if p.name.endswith(":type")]
        print(
            f"==> {path}: {image}, {kinds.count('deb')} Debian and {kinds.count('python')} "
            f"Python packages (CycloneDX {SCHEMA.to_version()}, schema-valid)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
