"""The small JSON files in the state directory, read validated.

They are written by the daemon, but a power cut, a full disk, a hand edit or another
version can leave anything in them, and a start that dies on one of them restarts into
the same death until someone logs in. So each is validated on load (pydantic, as the
config is); one that does not validate is logged once, moved aside to `<name>.bad` (kept
for a look, never read again) and the defaults apply.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


def load(path: Path, model: type[M]) -> M | None:
    """The file's content as `model`, or None when it is missing or bad."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read %s (%s); using defaults", path, exc)
        return None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        aside = path.with_name(path.name + ".bad")
        try:
            os.replace(path, aside)
            where = f"moved aside to {aside}"
        except OSError as move_exc:
            where = f"could not move it aside ({move_exc})"
        problem = exc.errors()[0]
        field = ".".join(str(p) for p in problem["loc"]) or "(the file)"
        log.warning(
            "%s is not valid (%s: %s): %s; using defaults", path, field, problem["msg"], where
        )
        return None


def save(path: Path, model: BaseModel) -> bool:
    """Write `model` as JSON, atomically (a power cut leaves the old file or the new one,
    never half of one); False, logged, when the disk refuses."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(model.model_dump_json())
        os.replace(tmp, path)
    except OSError as exc:
        log.error("cannot save %s: %s", path, exc)
        return False
    return True
