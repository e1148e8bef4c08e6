"""Fixtures of the dashboard tests: Debian's Chromium driven by Playwright, and a served
repository with the demo's MNIST model (trained, converted, the demo's processing, plus an
int8 version from ``shipyard optimize``), a small text-embedding model and Triton's ``simple``.

The browser is the one ``scripts/install-chromium.sh`` installs (``make test`` runs it);
``SHIPYARD_CHROMIUM`` points at another. Screenshots go to ``tests/artifacts/dashboard/``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from shipyard.server.auth import hash_key, new_key
from shipyard.testing import (
    RunningServer,
    ServeProcess,
    add_sub_model,
    running_server,
    serve_process,
    write_model,
)
from shipyard.testing.processing import embedding_model, train_tokenizer
from tests.examples.conftest import (  # noqa: F401 (fixtures used by this folder's tests)
    ROOT,
    SHIPYARD,
    load_example,
    mnist_repo,
    mnist_trained,
    run,
)

CHROMIUM = Path(os.environ.get("SHIPYARD_CHROMIUM", "/usr/bin/chromium"))
#: Headless, and nothing that reaches the network by itself.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "tests" / "artifacts" / "dashboard"
PAGES = ("models", "live", "playground", "server")
#: What Chromium logs on the console for each answer of 400 or more.
FAILED_LOAD = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
#: The text model's vocabulary, and what the playground's sentences are made of.
SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
    "The new movie is awesome.",
    "the cat sat on the mat",
]
TEXT_PROCESSING = """
[[preprocess]]
input = "text"
steps = [{op = "tokenize", tokenizer = "tokenizer.json", max_length = 32, truncation = true}]

[[postprocess]]
output = "last_hidden_state"
steps = [{op = "mean_pool", mask = "attention_mask"}, {op = "l2_normalize"}]
"""


#: The keyed server's keys, one per role: name -> (role, key).
KEYS = {
    "ops": ("admin", new_key()),
    "ci-bot": ("infer", new_key()),
    "scraper": ("metrics", new_key()),
}
#: Where js/api.js keeps the key (sessionStorage).
KEY_ITEM = "shipyard.api-key"
#: The tuning report of the keyed server's ``other`` model.
TUNE_REPORT = "<!DOCTYPE html><title>tuned</title><p>the tuning report of other</p>"


class Watched:
    """A page and every problem it showed: console errors, page errors, failed requests."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        #: (status, path) answers a test provokes on purpose: not counted as problems.
        self.allowed: set[tuple[int, str]] = set()
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on(
            "requestfailed",
            lambda request: self.problems.append(
                f"request failed: {request.url} {request.failure}"
            ),
        )
        page.on(
            "response",
            lambda response: (
                self.problems.append(f"HTTP {response.status}: {response.url}")
                if response.status >= 400 and not self._allowed(response.status, response.url)
                else None
            ),
        )

    def allow(self, status: int, path: str) -> None:
        """Accept ``status`` answers to ``path`` (a refusal the test provokes on purpose), and
        the console line Chromium logs for each of them."""
        self.allowed.add((status, path))

    def _allowed(self, status: int, url: str) -> bool:
        return (status, urlsplit(url).path) in self.allowed

    def _console(self, message: Any) -> None:
        if message.type not in ("error", "warning"):
            return
        refused = FAILED_LOAD.match(message.text)
        url = message.location.get("url", "")
        if refused and self._allowed(int(refused.group(1)), url):
            return
        self.problems.append(f"console {message.type}: {message.text}")

    def open(self, base_url: str, page: str, query: str = "") -> None:
        """Go to ``/ui/<page>`` and wait until its script has mounted it."""
        self.page.goto(f"{base_url}/ui/{page}{query}")
        self.page.wait_for_selector(f"body[data-ready='{page}']", timeout=15_000)

    def screenshot(self, name: str) -> Path:
        """Save a full-page screenshot as ``tests/artifacts/dashboard/<name>.png``."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def assert_clean(self) -> None:
        """Fail with every console error, page error or failed request seen so far."""
        assert self.problems == [], "\n".join(self.problems)


@pytest.fixture(scope="package")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright.

    Package-scoped: Playwright's sync API keeps an event loop running in this thread while
    it is open, which would break later tests that run one of their own (asyncio.run)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `sh scripts/install-chromium.sh` (make test does)")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def _page(chromium: Browser, viewport: dict[str, int]) -> Iterator[Watched]:
    context = chromium.new_context(viewport=viewport, reduced_motion="reduce")
    try:
        yield Watched(context.new_page())
    finally:
        context.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Watched]:
    """A fresh page at a laptop's size, watched for errors."""
    yield from _page(chromium, LAPTOP)


@pytest.fixture
def phone_page(chromium: Browser) -> Iterator[Watched]:
    """A fresh page at a phone's size, watched for errors."""
    yield from _page(chromium, PHONE)


def add_text_model(repo: Path, name: str = "sentences") -> Path:
    """A small text-embedding model: a WordLevel tokenizer and an embedding table, with the
    same post-processing as the demo's MiniLM (mean pool over the mask, L2 normalize)."""
    folder = repo / name
    folder.mkdir(parents=True)
    tokenizer = train_tokenizer(folder / "tokenizer.json", SENTENCES)
    model, _ = embedding_model(tokenizer.get_vocab_size(), dims=16)
    write_model(repo, name, model, config=TEXT_PROCESSING)
    return folder


@pytest.fixture(scope="package")
def dashboard_repo(mnist_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """mnist (v1 fp32 from ``shipyard convert``, v2 int8-dynamic from ``shipyard optimize``,
    with the demo's processing and labels), ``sentences`` (text embeddings), ``simple``, and
    ``broken`` (its model.toml has an unknown key, so it fails to load)."""
    repo = tmp_path_factory.mktemp("dashboard") / "repo"
    shutil.copytree(mnist_repo, repo)
    demo = load_example("demo", ROOT / "examples")
    model_dir = repo / "mnist"
    shutil.copyfile(ROOT / "examples" / "mnist" / "labels.txt", model_dir / "labels.txt")
    demo.add_processing(model_dir, demo.MNIST_PROCESSING)
    # The fixture's own validation file: examples/mnist/build/validation.npz exists only
    # after `make demo`, and a clean clone's tests must not depend on it.
    _, (test_images, test_labels) = demo.load_split()
    validation = repo.parent / "validation.npz"
    np.savez(validation, input=demo.to_input(test_images[:1000]), labels=test_labels[:1000])
    result = run(
        SHIPYARD,
        "optimize",
        model_dir,
        "--quantize",
        "int8-dynamic",
        "--validation",
        validation,
        "--objective",
        "size",
        "--bench-seconds",
        "0.1",
        "--bench-rounds",
        "1",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (model_dir / "2" / "report.json").is_file(), result.stdout
    add_text_model(repo)
    write_model(repo, "simple", add_sub_model())
    write_model(repo, "broken", add_sub_model(), config="bogus = 1\n")  # fails to load
    return repo


@pytest.fixture(scope="package")
def served(dashboard_repo: Path) -> Iterator[RunningServer]:
    """A real server on 127.0.0.1 serving ``dashboard_repo``, with the dashboard on."""
    with running_server(dashboard_repo, grpc=False) as running:
        yield running


def key_of(name: str) -> str:
    """The clear key of ``name`` in :data:`KEYS`."""
    return KEYS[name][1]


def sign_in(page: Watched, name: str) -> None:
    """Enter key ``name`` from the keyboard (Tab from the last nav link, type it, Enter) and
    wait for the page to reload with it."""
    page.page.locator("nav a[data-page='server']").focus()
    page.page.keyboard.press("Tab")
    assert page.page.evaluate("document.activeElement.id") == "key-input"
    page.page.keyboard.type(key_of(name))
    with page.page.expect_navigation():
        page.page.keyboard.press("Enter")
    page.page.wait_for_selector("body[data-ready]", timeout=15_000)


@pytest.fixture(scope="package")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """``shipyard serve --api-keys FILE --metrics-auth`` with the :data:`KEYS`, logging at
    debug level with the access log on, serving ``simple`` and ``other`` (with a tuning
    report)."""
    folder = tmp_path_factory.mktemp("dashboard-keys")
    repo = folder / "repo"
    write_model(repo, "simple", add_sub_model())
    write_model(repo, "other", add_sub_model())
    (repo / "other" / "tune-report.html").write_text(TUNE_REPORT, encoding="utf-8")
    keys = folder / "keys.toml"
    keys.write_text(
        "".join(
            f'[[key]]\nname = "{name}"\nsha256 = "{hash_key(key)}"\nroles = ["{role}"]\n'
            for name, (role, key) in KEYS.items()
        ),
        encoding="utf-8",
    )
    args = ("--api-keys", str(keys), "--metrics-auth", "--log-level", "debug", "--access-log")
    with serve_process(repo, *args) as server:
        yield server
