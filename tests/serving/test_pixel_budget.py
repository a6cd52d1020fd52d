"""The pixel budget shared by all requests (vistas.serving.pixel_budget), with real threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from support.poll import wait_for
from vistas.serving.pixel_budget import PixelBudget, PixelBudgetTimeout


def _holder(budget: PixelBudget, pixels: int, release: threading.Event, log: list, name: str):
    with budget.hold(pixels, timeout_s=60):
        log.append(f"{name} in")
        release.wait(60)
        log.append(f"{name} out")


def test_holds_never_exceed_the_capacity_and_waiters_go_first_come_first_served():
    budget = PixelBudget(100)
    log: list[str] = []
    gates = {name: threading.Event() for name in "abc"}
    with ThreadPoolExecutor(3) as pool:
        a = pool.submit(_holder, budget, 60, gates["a"], log, "a")
        wait_for(lambda: log == ["a in"], "a to hold 60 of 100")
        b = pool.submit(_holder, budget, 70, gates["b"], log, "b")  # does not fit next to a
        wait_for(lambda: len(budget._waiting) == 1, "b to wait")
        c = pool.submit(_holder, budget, 10, gates["c"], log, "c")  # would fit, but b came first
        wait_for(lambda: len(budget._waiting) == 2, "c to queue behind b")
        assert budget.in_use == 60 and log == ["a in"]
        gates["a"].set()
        wait_for(lambda: "b in" in log and "c in" in log, "b, then c, to get in")
        assert log.index("b in") < log.index("c in") and budget.in_use == 80
        gates["b"].set()
        gates["c"].set()
        for f in (a, b, c):
            f.result(timeout=60)
    assert budget.in_use == 0 and not budget._waiting


def test_an_image_larger_than_the_budget_takes_all_of_it_instead_of_waiting_forever():
    budget = PixelBudget(100)
    with budget.hold(10_000, timeout_s=1):
        assert budget.in_use == 100
    assert budget.in_use == 0


def test_a_wait_past_the_timeout_raises_and_leaves_the_queue():
    budget = PixelBudget(100)
    release = threading.Event()
    log: list[str] = []
    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(_holder, budget, 100, release, log, "a")
        wait_for(lambda: log == ["a in"], "a to hold the whole budget")
        with pytest.raises(PixelBudgetTimeout, match="max_pixels_in_flight = 100"):
            with budget.hold(1, timeout_s=0.05):
                pass
        assert not budget._waiting  # the timed-out waiter does not block those after it
        release.set()
        holder.result(timeout=60)
    with budget.hold(100, timeout_s=1):
        assert budget.in_use == 100
