"""The usability engineering summary (IEC 62366-1): its data and what it shows of the device.

``use.yaml`` (package data) holds what neither the profile nor the claim says: the user groups
besides the readers, their use environments, the workflow's steps, the known use problems of
similar devices (from the manufacturer's literature review, marked as a draft to complete), the
critical tasks with the hazards of the risk file they lead to, and the summative evaluation plan
(a plan: nothing says it was run). :func:`usability_record` adds the user interface as the
locked device produces it (:mod:`.interface`): the SR of an accepted and a refused synthetic
image, the Secondary Capture's fixed text, and the administrator's commands' help. The record is
plain data, kept in ``derived.json`` (``usability``) and derived again by ``--verify``.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from cxr_device.validated import SETTINGS, build
from cxr_device.yaml_io import load_yaml

from ..profile import safe_text

USE_FILE = "use.yaml"
Text = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(**SETTINGS)


class UserGroup(_Model):
    id: Text
    name: Text
    who: Text
    tasks: Text
    training: Text


class Environment(_Model):
    user_group: Text
    text: Text


class Step(_Model):
    step: Text
    actor: Text


class UseProblem(_Model):
    id: Text
    problem: Text
    description: Text
    references: list[Text]
    hazards: list[Text] = Field(min_length=1)


class UseProblems(_Model):
    status: Text
    items: list[UseProblem] = Field(min_length=1)


class CriticalTask(_Model):
    id: Text
    user_group: Text
    task: Text
    use_error: Text
    interface: Text
    hazards: list[Text] = Field(min_length=1)


class Summative(_Model):
    objective: Text
    participants: Text
    environment: Text
    tasks: Text
    data: Text
    acceptance: Text


class UseFile(_Model):
    user_groups: list[UserGroup] = Field(min_length=1)
    environments: list[Environment] = Field(min_length=1)
    workflow: list[Step] = Field(min_length=1)
    use_problems: UseProblems
    critical_tasks: list[CriticalTask] = Field(min_length=1)
    summative: Summative


def use_path() -> Path:
    return Path(str(resources.files("fda_submission") / "usability" / USE_FILE))


def load_use_file(path: str | Path | None = None) -> dict:
    """``use.yaml`` validated (a wrong or missing key names the file and the key)."""
    path = Path(path or use_path())
    return safe_text(build(UseFile, str(path), load_yaml(path, "usability file")).model_dump())


def usability_record(bundle_dir: str | Path) -> dict:
    """The usability summary's derived record: ``use.yaml``, and the user interface produced by
    the run's locked bundle (:func:`.interface.result_examples`) and the command's parsers
    (:func:`.interface.admin_commands`)."""
    from .interface import admin_commands, result_examples

    data = load_use_file()
    groups = {g["id"] for g in data["user_groups"]}
    for item in data["environments"] + data["critical_tasks"]:
        if item["user_group"] not in groups:
            from cxr_device.errors import CxrDeviceError

            raise CxrDeviceError(f"{use_path()}: user group {item['user_group']!r} is not one of {sorted(groups)}")
    return {**data, "file": "fda_submission/usability/use.yaml (package data)",
            "interface": result_examples(Path(bundle_dir)), "commands": admin_commands()}
