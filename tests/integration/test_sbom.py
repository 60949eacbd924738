"""SBOMs: `make images` writes a CycloneDX SBOM of each image it builds (scripts/sbom.py), valid
against the CycloneDX schema, listing the image's Debian packages and, for the API, the locked
Python packages, each at the version the image really has. The versions are checked against
sources the SBOM script does not read: dpkg's status file in the image, the `*.dist-info`
directories of its virtual environment, and services/api/requirements.lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packaging.markers import Marker
from packaging.utils import canonicalize_name

from tests.support.containers import LABELS, REPO, RUN_ID

API_LOCK = REPO / "services" / "api" / "requirements.lock"
# In the lock to build the API's wheel, removed from the image once it is built (Dockerfile).
BUILD_ONLY = {"flit-core", "pip"}
VERSION = f"itest-sbom-{RUN_ID}"  # the version `make images` tags here (not the project's)
DEBIAN_SAMPLES = {
    "flask-stack-api": ("python3.13", "libssl3t64", "libc6"),
    "flask-stack-nginx": ("nginx-light", "openssl", "libc6"),
}


def run_in(client: docker.DockerClient, image: str, *command: str) -> str:
    """The output of a command in a short-lived, locked-down container of `image`."""
    output = client.containers.run(
        image,
        list(command[1:]),
        entrypoint=[command[0]],
        remove=True,
        network_mode="none",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        mem_limit="128m",
        pids_limit=32,
        labels=dict(LABELS),
    )
    return output.decode()


def dpkg_installed(client: docker.DockerClient, image: str) -> dict[str, str]:
    """Package -> version for every installed package in the image's /var/lib/dpkg/status."""
    installed = {}
    for stanza in run_in(client, image, "cat", "/var/lib/dpkg/status").split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", stanza, re.MULTILINE))
        if fields.get("Status") == "install ok installed":
            installed[fields["Package"]] = fields["Version"]
    return installed


# The image's platform, for the lock's environment markers (it is a --universal lock).
IMAGE_PLATFORM = {
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "python_version": "3.13",
    "python_full_version": "3.13.5",
}


def locked(path: Path) -> dict[str, str]:
    """Package -> version of each pin of a hash lock that applies to the image's platform."""
    pins = {}
    for name, version, marker in re.findall(
        r"^([A-Za-z0-9._-]+)==([^\s;\\]+)(?: ; ([^\\\n]+))?", path.read_text(), re.M
    ):
        if not marker or Marker(marker.strip()).evaluate(IMAGE_PLATFORM):
            pins[canonicalize_name(name)] = version
    return pins


def components(bom: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """The BOM's components of one kind (deb, python), by name."""
    return {
        c["name"]: c
        for c in bom["components"]
        if {"name": "flask-stack:package:type", "value": kind} in c["properties"]
    }


@pytest.fixture(scope="module")
def sboms(docker_client, tmp_path_factory) -> Iterator[dict[str, dict[str, Any]]]:
    """`make images` as the README gives it, its version tags ours, its SBOMs in a temporary
    directory; the tags are removed afterwards."""
    out = tmp_path_factory.mktemp("sbom")
    env = {**os.environ, "IMAGE_TAG": "itest"}
    done = subprocess.run(
        ["make", "images", f"VERSION={VERSION}", f"SBOM_DIR={out}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    try:
        assert done.returncode == 0, f"make images:\n{done.stdout}\n{done.stderr}"
        yield {
            path.name.removesuffix(".cdx.json"): json.loads(path.read_text())
            for path in out.iterdir()
        }
    finally:
        for image in docker_client.images.list(filters={"reference": f"flask-stack-*:{VERSION}*"}):
            for tag in image.tags:
                if f":{VERSION}" in tag:
                    with contextlib.suppress(docker.errors.APIError):
                        docker_client.images.remove(tag, noprune=True)


def test_make_images_writes_a_schema_valid_sbom_of_each_image(sboms, docker_client):
    assert set(sboms) == {"flask-stack-api", "flask-stack-nginx"}, set(sboms)
    for name, bom in sboms.items():
        error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom))
        assert error is None, f"{name}: {error}"
        assert bom["bomFormat"] == "CycloneDX"
        assert bom["specVersion"] == "1.6"
        subject = bom["metadata"]["component"]
        assert subject["type"] == "container"
        assert subject["name"] == name
        image = docker_client.images.get(f"{name}:{subject['version']}")
        properties = {p["name"]: p["value"] for p in subject["properties"]}
        assert properties["flask-stack:image:id"] == image.id, name


def test_the_sboms_list_every_debian_package_at_the_installed_version(sboms, docker_client):
    for name, bom in sboms.items():
        image = f"{name}:{bom['metadata']['component']['version']}"
        installed = dpkg_installed(docker_client, image)
        listed = components(bom, "deb")
        assert {n: c["version"] for n, c in listed.items()} == installed, name
        for package in DEBIAN_SAMPLES[name]:
            assert listed[package]["version"] == installed[package], (name, package)
            purl = listed[package]["purl"]
            assert purl.startswith(f"pkg:deb/debian/{package}@"), purl


def test_the_api_sbom_lists_the_locked_python_packages_as_installed(sboms, docker_client):
    bom = sboms["flask-stack-api"]
    image = f"flask-stack-api:{bom['metadata']['component']['version']}"
    listing = run_in(docker_client, image, "sh", "-c", "ls /opt/venv/lib/python3*/site-packages")
    installed = {
        canonicalize_name(m.group(1)): m.group(2)
        for m in re.finditer(r"^(.+)-([^-]+)\.dist-info$", listing, re.M)
    }
    listed = {canonicalize_name(n): c for n, c in components(bom, "python").items()}
    assert {n: c["version"] for n, c in listed.items()} == installed
    lock = locked(API_LOCK)
    for package, version in lock.items():
        if package in BUILD_ONLY:
            assert package not in listed, package
            continue
        assert listed[package]["version"] == version, (package, listed[package], version)
        assert listed[package]["purl"] == f"pkg:pypi/{package}@{version}"
    # Besides the lock: only the API itself, built from this repository, with no PyPI purl.
    assert set(listed) - set(lock) == {"api"}, set(listed) - set(lock)
    assert listed["api"]["type"] == "application"
    assert "purl" not in listed["api"], listed["api"]
    assert listed["flask"]["version"] == lock["flask"]
