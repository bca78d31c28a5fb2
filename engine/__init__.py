"""cpworker's engine: durable, event-sourced job machines for CodePipeline custom actions."""

from engine.clock import Clock, FakeClock, SystemClock

__version__ = "0.1.0"

__all__ = ["Clock", "FakeClock", "SystemClock", "__version__"]
