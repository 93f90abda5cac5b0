"""The booted Debian 12 container, shared by the system tests of one module."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rig import nspawn


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests under qemu-user take many minutes and go online: only when `-m` names qemu."""
    if "qemu" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow, under qemu-user: run with -m qemu (see README)")
    for item in items:
        if item.get_closest_marker("qemu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def box() -> Iterator[nspawn.Container]:
    """A booted container with the cached wheels, a fresh project wheel and the checkout."""
    why = nspawn.missing_tools()
    if why:
        pytest.skip(f"booted-systemd rig unavailable: {why}")
    root = nspawn.ensure_rootfs()
    wheels = nspawn.ensure_wheels()
    project = Path(tempfile.mkdtemp(prefix="appliance-wheel-"))
    try:
        nspawn.build_project_wheel(project)
        binds = {wheels: "/mnt/wheels", project: "/mnt/project", nspawn.REPO: "/mnt/src"}
        with nspawn.Container(root, binds=binds) as container:
            yield container
    finally:
        shutil.rmtree(project, ignore_errors=True)
