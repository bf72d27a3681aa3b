"""jarvis-bench."""
