"""The action interface: what a custom action implements, and how its type is defined.

An action does three things to its external system (submit, check, cancel) and answers each with
an outcome the machine understands. It never talks to CodePipeline, never stores anything and
never sleeps: the engine does all of that, durably, around it.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from importlib.resources import files
from typing import TYPE_CHECKING, Any, ClassVar

from engine import defaults
from engine.clock import Clock
from engine.errors import ConfigurationProblem, CpworkerError
from engine.outcomes import JSON, ActionOutcome, Cancelled, RetryLater, RunDetails

if TYPE_CHECKING:
    from pathlib import Path

    from engine.artifacts import JobArtifacts, Upload

ENTRY_POINT_GROUP = "cpworker.actions"


@dataclass(frozen=True, order=True)
class ActionTypeId:
    category: str
    owner: str
    provider: str
    version: str

    def __str__(self) -> str:
        return f"{self.category}/{self.owner}/{self.provider}/{self.version}"

    def to_api(self) -> dict[str, str]:
        return {"category": self.category, "owner": self.owner, "provider": self.provider,
                "version": self.version}

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ActionTypeId:
        return cls(str(data["category"]), str(data["owner"]), str(data["provider"]),
                   str(data["version"]))


@dataclass(frozen=True)
class ConfigurationProperty:
    name: str
    required: bool
    key: bool
    secret: bool
    queryable: bool = False
    description: str = ""
    type: str = "String"


@dataclass(frozen=True)
class ActionDefinition:
    """An action type as CreateCustomActionType takes it (the JSON file in the action's package)."""

    type_id: ActionTypeId
    properties: tuple[ConfigurationProperty, ...]
    document: Mapping[str, Any] = field(compare=False)
    """The file as written: what `cpworker register` sends."""

    @property
    def secret_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.properties if p.secret)

    @property
    def queryable(self) -> ConfigurationProperty | None:
        return next((p for p in self.properties if p.queryable), None)

    def problems(self, configuration: Mapping[str, str]) -> list[str]:
        """What is wrong with a job's configuration, in words an operator can act on."""
        found: list[str] = []
        known = {p.name for p in self.properties}
        for prop in self.properties:
            value = configuration.get(prop.name)
            if prop.required and (value is None or value == ""):
                found.append(f"the required property {prop.name} is missing")
            elif value is not None and prop.type == "Number":
                try:
                    float(value)
                except ValueError:
                    found.append(f"the property {prop.name} must be a number")
            elif value is not None and prop.type == "Boolean" and value.lower() not in (
                "true", "false"
            ):
                found.append(f"the property {prop.name} must be true or false")
        unknown = sorted(set(configuration) - known)
        if unknown:
            found.append(f"unknown properties {', '.join(unknown)} (this action knows "
                         f"{', '.join(sorted(known))})")
        return found

    @classmethod
    def from_document(cls, document: Mapping[str, Any], source: str = "") -> ActionDefinition:
        where = f" in {source}" if source else ""
        try:
            type_id = ActionTypeId(
                str(document["category"]), str(document.get("owner", "Custom")),
                str(document["provider"]), str(document["version"]),
            )
            props = tuple(
                ConfigurationProperty(
                    name=str(p["name"]), required=bool(p["required"]), key=bool(p["key"]),
                    secret=bool(p["secret"]), queryable=bool(p.get("queryable", False)),
                    description=str(p.get("description", "")), type=str(p.get("type", "String")),
                )
                for p in document.get("configurationProperties", [])
            )
        except (KeyError, TypeError) as error:
            raise ConfigurationProblem(
                f"the action type definition{where} lacks {error}",
                fix="write it in CreateCustomActionType's input format (category, provider, "
                "version, configurationProperties, inputArtifactDetails, outputArtifactDetails)",
            ) from error
        return cls(type_id, props, document)

    @classmethod
    def load(cls, package: str, resource: str) -> ActionDefinition:
        """Read the definition file shipped in an action's package."""
        path = files(package) / resource
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ConfigurationProblem(
                f"cannot read the action type definition {package}/{resource}: {error}",
                fix="ship the JSON file in the package (package_data) and check its syntax",
            ) from error
        return cls.from_document(document, f"{package}/{resource}")


class ArtifactCredentials:
    """Temporary S3 credentials for the job's artifacts. Never printed, never stored."""

    __slots__ = ("access_key_id", "secret_access_key", "session_token")

    def __init__(self, access_key_id: str, secret_access_key: str, session_token: str) -> None:
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token

    def __repr__(self) -> str:
        return "ArtifactCredentials(****)"


@dataclass(frozen=True)
class JobContext:
    """What an action sees of one job when it is asked to act.

    `configuration` includes secret properties: it lives in memory only, fetched again from
    CodePipeline after a restart. `run` is the action's own durable data (ids of the external
    run). `resumed` is True when this effect may have reached the external system before (a
    crash, a retry): a careful action looks for its earlier work before doing it again.
    """

    job_id: str
    execution_id: str
    pipeline: Mapping[str, JSON]
    configuration: Mapping[str, str] = field(repr=False)
    run: Mapping[str, JSON]
    details: RunDetails | None
    attempt: int
    resumed: bool
    clock: Clock
    artifact_credentials: ArtifactCredentials | None = field(default=None, repr=False)
    input_artifacts: tuple[Mapping[str, JSON], ...] = ()
    output_artifacts: tuple[Mapping[str, JSON], ...] = ()
    intended_at: float | None = None
    """When this execution's submission was first intended (recorded): nothing an earlier
    attempt started can be older, so a lookup of earlier runs may stop reading there."""
    deadline: float | None = None
    """For submit(): anything this call sends must have landed by then (clock time), because
    other workers wait exactly that long before looking for it. A submit that could not finish
    a side effect in time must not start it: return RetryLater (a new window opens)."""
    artifacts: JobArtifacts | None = field(default=None, repr=False, compare=False)
    """The engine's S3 access for this job (engine.artifacts); use download() and upload()."""

    def download(self, name: str, dest: str | os.PathLike[str], *, extract: bool = True) -> Path:
        """Fetch input artifact `name` from S3 with the job's credentials: unpacked into the
        directory `dest` (extract), or kept as the archive file `dest`. Returns the path."""
        return self._artifacts().download(name, dest, extract=extract)

    def upload(self, name: str, source: str | os.PathLike[str], *,
               archive: bool = True) -> Upload:
        """Put output artifact `name` (a file or a directory, zipped unless archive=False) in
        S3 with the job's credentials and the pipeline's KMS key. Recorded at once: a check()
        run again after a crash gets the recorded upload back and uploads nothing."""
        return self._artifacts().upload(name, source, archive=archive)

    def _artifacts(self) -> JobArtifacts:
        if self.artifacts is None:
            raise CpworkerError(f"job {self.job_id}: no artifact access in this context",
                                fix="artifacts are given to contexts the engine makes; a test "
                                    "builds one with engine.artifacts.JobArtifacts")
        return self.artifacts


class Action(ABC):
    """Base class of a custom action.

    Subclasses set `name`, `definition_package` and `definition_file` (the type's JSON, shipped
    with the package), implement submit() and check(), and override cancel() when the external
    system can stop a run. Each method is called from a worker thread, one job at a time per call;
    keep per-job state in the returned outcomes' `data`, never on the instance.
    """

    name: ClassVar[str]
    definition_package: ClassVar[str]
    definition_file: ClassVar[str]
    check_interval: float | None = None
    """Seconds between checks of a running job; None: the engine's setting."""
    time_budget: float | None = None
    """Seconds an external run may take before it is cancelled and failed; None: the engine's."""
    submit_grace: float = defaults.SUBMIT_GRACE
    """Seconds a submit() call may run, and so land, after it started: at least its calls' own
    timeouts (and JobContext.deadline tells submit() when that time is up). A worker resuming
    another's submission waits until that worker's call window (recorded in the log) closed
    plus this grace before submit() looks for the earlier run, or a call still in flight could
    land after the look and a second run be started.

    These three may be set on the class, or on the instance when they depend on settings the
    action reads as it is made (when the worker starts, never at import)."""

    _definition: ClassVar[ActionDefinition | None] = None

    @classmethod
    def definition(cls) -> ActionDefinition:
        if cls.__dict__.get("_definition") is None:
            cls._definition = ActionDefinition.load(cls.definition_package, cls.definition_file)
        assert cls._definition is not None
        return cls._definition

    @abstractmethod
    def submit(self, job: JobContext) -> ActionOutcome:
        """Start the external run (once: see JobContext.resumed)."""

    @abstractmethod
    def check(self, job: JobContext) -> ActionOutcome:
        """Look at the external run and say how it is going."""

    def find(self, job: JobContext) -> ActionOutcome | None:
        """The run an earlier submit() of this execution started, without starting one.

        Called for a resumed submission while another worker's call may still land: an outcome
        (InProgress with the run's ids, Done, Failed) ends the wait at once; None means "not
        found, or cannot tell yet", and the engine waits until that call can no longer land
        before submit() is called (which must look again). It must change nothing outside.
        The default finds nothing: the engine always waits.
        """
        return None

    def cancel(self, job: JobContext) -> Cancelled | RetryLater:
        """Stop the external run because nobody wants its result any more.

        RetryLater asks to be called again (a run that does not show yet, a cancel that did not
        take): the machine retries within its attempts, then reports regardless."""
        return Cancelled(True, "this action has nothing to cancel")

    def close(self) -> None:  # noqa: B027 - optional hook, most actions hold nothing
        """Release connections at shutdown."""


def load_action(name: str) -> type[Action]:
    """An action class by entry-point name (group cpworker.actions) or by 'module:Class' path."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            found = getattr(import_module(module_name), attr)
        except (ImportError, AttributeError) as error:
            raise ConfigurationProblem(
                f"cannot load action {name!r}: {error}",
                fix="give an installed action's name (see `cpworker actions`) or module:Class",
            ) from error
    else:
        matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not matches:
            known = ", ".join(sorted(available_actions())) or "none installed"
            raise ConfigurationProblem(
                f"no action named {name!r} (known: {known})",
                fix=f"install the package that provides it (entry point group {ENTRY_POINT_GROUP})"
                " or pass module:Class",
            )
        found = matches[0].load()
    if not (isinstance(found, type) and issubclass(found, Action)):
        raise ConfigurationProblem(f"{name!r} is not an engine.Action subclass",
                                   fix="point at a class deriving from engine.Action")
    return found


def available_actions() -> dict[str, str]:
    """Installed actions: entry-point name -> 'module:Class'."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
