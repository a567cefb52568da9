"""Shared test fixtures."""
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# The longest test files, longest first (by `pytest --durations`, 2026-12-04). `make test` runs files in parallel
# processes (pytest-xdist, a file whole in one process), handed out in collection order: the long ones go first, so no
# process is left with a long file while the others have finished.
LONG_FILES = ("test_crash.py", "test_learning.py", "test_schedule.py", "test_significance.py", "test_native.py",
              "test_surrogate.py", "test_user_child.py", "test_confirm.py", "test_dashboard.py",
              "test_shipped_tables.py", "test_inspect.py", "test_cluster.py", "test_fidelity.py")


def pytest_collection_modifyitems(items):
    rank = {name: k for k, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))  # stable: each file keeps its order


@pytest.fixture(scope="module")
def address():
    """One local Ray per test module (it takes ~10 s to start here); yields its address for `resources.address`."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=2, include_dashboard=False)  # its own, whatever else runs
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module: a controller's tensors are tiny, extra threads only spin against other
    processes on a shared machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Page(HTMLParser):
    """An HTML page as tests read it: the tags used, every (tag, attribute, value), the links and sources, and the
    tables (rows of cell texts, white space folded)."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: list[tuple[str, str, str]] = []
        self.urls: list[str] = []
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``actsearch ARGV`` in this process: (exit code, stdout, stderr). Arguments may be paths or numbers."""
    from search.cli import main

    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def finish_in_process(run_dir, config, capacity: int = 1) -> None:
    """Create ``run_dir`` for ``config`` and run its search to the end in this process (the engine on a
    ``LocalExecutor``, no Ray), checkpoint included, as ``actsearch run`` leaves a finished run."""
    import io

    from search.loop.driver import Driver
    from search.loop.engine import Engine
    from search.loop.executor import LocalExecutor
    from search.loop.progress import Progress, StopSignal
    from search.loop.rundir import create_run
    from search.loop.store import Store

    create_run(run_dir, config)
    with Store.open(run_dir) as store:
        progress = Progress(io.StringIO(), io.StringIO(), 60)
        driver = Driver(run_dir, config, store, progress)
        driver.restore()
        with StopSignal(lambda text: None) as stop:
            assert Engine(LocalExecutor(config, capacity), driver, progress, config.rewards).run(stop) == "finished"
        driver.checkpoint()
