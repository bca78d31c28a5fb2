"""Custom actions shipped with cpworker, one package per action."""
