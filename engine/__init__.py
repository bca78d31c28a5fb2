"""cpworker's engine: durable, event-sourced job machines for CodePipeline custom actions.

The public API is what an action author needs: the Action base class and what it returns.
"""

from engine.action import Action, ActionDefinition, ActionTypeId, ArtifactCredentials, JobContext
from engine.clock import Clock, FakeClock, SystemClock
from engine.errors import CpworkerError
from engine.outcomes import (
    Cancelled,
    Done,
    Failed,
    FailureType,
    InProgress,
    RetryLater,
    RunDetails,
)

__version__ = "0.1.0"

__all__ = [
    "Action",
    "ActionDefinition",
    "ActionTypeId",
    "ArtifactCredentials",
    "Cancelled",
    "Clock",
    "CpworkerError",
    "Done",
    "Failed",
    "FailureType",
    "FakeClock",
    "InProgress",
    "JobContext",
    "RetryLater",
    "RunDetails",
    "SystemClock",
    "__version__",
]
