"""Local emulators of the CodePipeline job API and the Travis CI API v3.

They let cpworker (and anyone writing a custom action) run real boto3, AWS CLI and requests
clients over real HTTP on 127.0.0.1, with no AWS account and no Travis token.
"""

from engine.emulator._http import DEFAULT_HOST, EmulatorServer, Faults, Request, Response
from engine.emulator.codepipeline import CodePipelineEmulator
from engine.emulator.travis import TravisEmulator

__all__ = [
    "DEFAULT_HOST",
    "CodePipelineEmulator",
    "EmulatorServer",
    "Faults",
    "Request",
    "Response",
    "TravisEmulator",
]
