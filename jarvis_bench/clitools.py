"""What every entry point shares: logging setup and turning errors into one line + exit code."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from .errors import EXIT_INTERRUPTED, JarvisBenchError


def positive(value: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return n


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s" if verbose else "%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("jarvis_bench").setLevel(level)
    for noisy in ("bitsandbytes", "transformers", "peft", "accelerate", "sentence_transformers", "httpx",
                  "huggingface_hub", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # Through the environment when transformers is not imported yet: importing it here cost ~0.6 s on
    # every run, including the ones that never need it (a rerun whose answers are all cached).
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if quiet:  # plain tqdm bars too (the one-time GGUF conversion), read when tqdm is first imported
        os.environ.setdefault("TQDM_DISABLE", "1")
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        import transformers.utils.logging as tl

        tl.set_verbosity_error()
        tl.disable_progress_bar()


def _sigterm_as_interrupt() -> Callable[[], None]:
    """SIGTERM (a CI timeout, `kill`, a closing terminal) stops like Ctrl-C: finished answers are kept.
    Returns what puts the previous handler back (a caller that runs a door in-process, a test or the
    launcher, must not be left with SIGTERM turned into KeyboardInterrupt after the door returned)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return lambda: None

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def guarded(body: Callable[[], int], *, debug: bool = False) -> int:
    """Run `body`; a user-facing error becomes one line on stderr and its exit code."""
    restore = _sigterm_as_interrupt()
    try:
        return body()
    except JarvisBenchError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        restore()
