"""Progress bars for long runs: shown on a terminal, silent in CI and in redirected output.

Every long loop of the package (fits_to_zarr's time steps, calibration frames, a night's
alerts, downloads) takes a ``progress`` flag and draws its bar with :func:`bar` on stderr.
The ``astropipe`` command resolves ``--progress`` / ``--no-progress`` / neither (auto) with
:func:`wanted`; library functions default to no bar, so DVC stages and tests stay quiet unless
asked. A bar only ever goes to stderr: never into an output file, a metric or stdout (where
the command prints its JSON summary).

Example
-------
>>> from astropipe.progress import bar
>>> for item in bar(range(3), enabled=False, desc="frames", unit="frame"):
...     pass
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

from tqdm.auto import tqdm

__all__ = ["CI_VARIABLES", "wanted", "bar", "dask_bar"]

T = TypeVar("T")

#: Environment variables set by CI services (GitHub Actions, GitLab, Jenkins, Buildkite, …):
#: with any of them set, auto mode draws no bar even if the runner allocates a TTY.
CI_VARIABLES: tuple[str, ...] = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE")


def wanted(flag: bool | None = None, *, stream: IO[str] | None = None) -> bool:
    """Whether to draw progress bars.

    Parameters
    ----------
    flag
        ``True`` (``--progress``) or ``False`` (``--no-progress``) decide; ``None`` (auto) means
        yes only when ``stream`` is a terminal and no CI variable is set.
    stream
        Where bars are drawn (default: ``sys.stderr``).

    Returns
    -------
    bool
    """
    if flag is not None:
        return bool(flag)
    stream = sys.stderr if stream is None else stream
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams (pytest's capture)
        tty = False
    return tty and not any(os.environ.get(name) for name in CI_VARIABLES)


def bar(
    iterable: Iterable[T] | None = None,
    *,
    enabled: bool,
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    unit_scale: bool = False,
) -> Any:
    """A tqdm bar on stderr, or a silent stand-in with the same API (``update``, ``close``).

    Parameters
    ----------
    iterable
        Items to iterate over (or None and call ``update(n)`` yourself).
    enabled
        Draw the bar (resolve it with :func:`wanted`); False costs nothing and prints nothing.
    total, desc, unit, unit_scale
        As for :class:`tqdm.tqdm` (``unit="B", unit_scale=True`` for bytes).
    """
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit_scale,
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
    )


@contextmanager
def dask_bar(*, enabled: bool) -> Iterator[None]:
    """Show dask's own progress bar for ``dask.compute`` calls inside the block.

    It covers the local schedulers (synchronous, threads, processes); a ``distributed``
    cluster reports progress on its dashboard instead.
    """
    if not enabled:
        yield
        return
    from dask.diagnostics import ProgressBar

    with ProgressBar(out=sys.stderr):
        yield
