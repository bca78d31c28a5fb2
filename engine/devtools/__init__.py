"""Developer tools: the emulators, the sandbox and the testing kit.

Nothing the worker runs (`cpworker run` and what it imports) imports this package; the
`emulator` and `sandbox` commands are attached to the command line on demand.
"""
