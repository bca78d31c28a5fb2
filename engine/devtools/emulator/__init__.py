"""A local emulator of the CodePipeline job API, and the HTTP server every emulator runs on.

They let cpworker (and anyone writing a custom action) run real boto3, AWS CLI and requests
clients over real HTTP on 127.0.0.1, with no AWS account. An action's own emulator (Travis CI's
is in actions.travis.emulator) is built on the same `EmulatorServer`, `Request` and `Response`.
"""

from engine.devtools.emulator._http import (
    DEFAULT_HOST,
    App,
    EmulatorServer,
    Faults,
    Request,
    Response,
    real_sleep,
)
from engine.devtools.emulator.codepipeline import CodePipelineEmulator

__all__ = [
    "DEFAULT_HOST",
    "App",
    "CodePipelineEmulator",
    "EmulatorServer",
    "Faults",
    "Request",
    "Response",
    "real_sleep",
]
