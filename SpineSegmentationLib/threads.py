"""The CPU thread count of torch for one piece of work.

``torch.set_num_threads`` is process-wide: a command run in the caller's process (``cli.main``, a local cohort
run, ``training.train``) would otherwise leave its own setting behind for everything that runs after it.

Also the types of the commands' ``--threads`` option (:func:`thread_count`) and other whole-number options
(:func:`whole_number`). torch is imported only when :func:`torch_threads` runs, so that building the command line's
parser does not import it.
"""

from __future__ import annotations

import argparse
import os
import warnings
from contextlib import contextmanager
from typing import Iterator, Optional


def whole_number(text: str) -> int:
    """The whole number an ``argparse`` option's text states: ``"4"`` -> 4, ``"-1"`` -> -1 (the caller checks the
    range).

    Raises:
        argparse.ArgumentTypeError: ``text`` is not a whole number (argparse makes it a usage error naming the
            option).
    """
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def thread_count(text: str) -> int:
    """The ``argparse`` type of a count of 1 or more (``--threads`` of spineseg segment, train and batch, and batch's
    ``--workers``): ``"4"`` -> 4.

    Raises:
        argparse.ArgumentTypeError: ``text`` is not a whole number, or is below 1 (argparse makes it a usage error
            naming the option).
    """
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def usable_cores() -> int:
    """The number of CPU cores (logical) this process may run on: its CPU affinity where the system reports one
    (Linux), else ``os.cpu_count()``; at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@contextmanager
def torch_threads(count: Optional[int]) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(count)`` and give the caller back its own count afterwards.

    Args:
        count: threads for the block (1 or more); None or 0 leaves torch's setting as it is. More than
            :func:`usable_cores` is allowed, but warned about (a ``UserWarning``, shown on stderr by the command
            line): the threads then share cores and the networks run slower, not faster.
    """
    import torch

    previous = torch.get_num_threads()
    if count:
        cores = usable_cores()
        if int(count) > cores:
            warnings.warn(f"{int(count)} CPU threads were asked for, more than the {cores} CPU "
                          f"core{'s' if cores != 1 else ''} this process can use: the threads share cores and run "
                          f"slower, not faster. Ask for {cores} or fewer (--threads; 1 per job when running several "
                          "jobs side by side).", UserWarning, stacklevel=3)
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
