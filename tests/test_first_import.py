"""Every module of the package can be the first one a program imports.

A circular import between packages (``robustscope.probes`` registers ``robustscope.visual``'s
probes, and ``visual`` uses ``probes``) can work when one side is imported first and fail
when the other is: ``import robustscope.visual`` at the top of a notebook once raised
``ImportError: cannot import name … from partially initialized module``. The suite imports
everything in one order, so this test imports each module alone, in a forked child of a
process that has loaded only the third-party libraries: every package, and every module
its package does not import itself.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

_CHILD = textwrap.dedent(
    """
    import importlib, os, sys
    import matplotlib, numpy, pandas, scipy, sklearn, torch  # noqa: F401
    names = sys.argv[1:]
    for m in [m for m in sys.modules if m.startswith("robustscope")]:
        del sys.modules[m]
    failed = 0
    for name in names:
        pid = os.fork()
        if pid == 0:
            try:
                importlib.import_module(name)
            except Exception as e:
                print(f"{name}: {type(e).__name__}: {e}", flush=True)
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        failed += status != 0
    print(f"{len(names)} modules, {failed} failed", flush=True)
    """
)


def _firsts() -> list[str]:
    """Every package, and every module its package's ``__init__`` does not import at module
    level (importing one that it does import first runs the same imports in the same order
    as importing the package first)."""
    import robustscope

    found = list(pkgutil.walk_packages(robustscope.__path__, "robustscope."))
    by_parent: dict[str, set[str]] = {}
    for pkg in {m.name for m in found if m.ispkg} | {"robustscope"}:
        spec = importlib.util.find_spec(pkg)
        assert spec is not None and spec.origin is not None
        own = by_parent.setdefault(pkg, set())
        for node in ast.parse(Path(spec.origin).read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                own.add(node.module)
                own.update(f"{node.module}.{a.name}" for a in node.names)
    return sorted(
        m.name
        for m in found
        if not m.name.endswith("__main__")
        and (m.ispkg or m.name not in by_parent[m.name.rsplit(".", 1)[0]])
    )


def test_every_module_imports_first() -> None:
    names = _firsts()
    assert "robustscope.visual" in names and "robustscope.transfer.probe" in names
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *names],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines == [f"{len(names)} modules, 0 failed"], "\n".join(lines[-30:])
