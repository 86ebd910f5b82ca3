"""The hypothesis profiles of the property suites (registered by tests/conftest.py).

``ci`` (the default) is CI-sized and derandomized: the same examples on every run, the whole
property suite well under two minutes on a 2-core machine.  ``long`` runs ten times the examples
with longer sequences and fresh randomness each run (``HGMVIZ_HYPOTHESIS_PROFILE=long``; the
old names ``default`` and ``ci-long`` still select them).  A property test sizes itself with
:func:`examples` and :func:`steps`, which scale its CI-sized numbers by the profile.
"""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

ALIASES = {"default": "ci", "ci-long": "long"}
SCALE = {"ci": (1, 1.0), "long": (10, 1.5)}          # (examples x, steps x)


def active() -> str:
    name = os.environ.get("HGMVIZ_HYPOTHESIS_PROFILE", "ci")
    name = ALIASES.get(name, name)
    if name not in SCALE:
        raise ValueError("HGMVIZ_HYPOTHESIS_PROFILE must be one of %s (or %s), not %r"
                         % (sorted(SCALE), sorted(ALIASES), name))
    return name


def register() -> None:
    common = dict(deadline=None, print_blob=True, suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    settings.register_profile("ci", derandomize=True, max_examples=100, **common)
    settings.register_profile("long", derandomize=False, max_examples=1000, **common)
    settings.load_profile(active())


def examples(ci: int) -> int:
    return int(ci * SCALE[active()][0])


def steps(ci: int) -> int:
    return int(ci * SCALE[active()][1])


def for_test(ci_examples: int, ci_steps: int | None = None) -> settings:
    """Settings for one test: the active profile with its examples (and steps) scaled."""
    kw = {"max_examples": examples(ci_examples)}
    if ci_steps is not None:
        kw["stateful_step_count"] = steps(ci_steps)
    return settings(settings.get_profile(active()), **kw)
