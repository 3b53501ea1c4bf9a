"""The web view in headless Chromium: each page against a seeded store, checked the way a
person would look at it, with a screenshot of each."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.ui._seed import HOSTILE
from tests.ui.conftest import Served

pytestmark = pytest.mark.e2e


def test_browser_runs_page_lists_runs_and_shows_a_hostile_objective_as_text(
    served: Served, page: Any, screenshots: Path
) -> None:
    response = page.goto(served.base + "/ui/")
    assert response.status == 200
    assert "script-src" not in response.headers["content-security-policy"]
    assert "default-src 'none'" in response.headers["content-security-policy"]
    rows = page.locator("#runs tbody tr")
    assert rows.count() == 2
    hostile_row = rows.filter(has_text="run_ui_hostile")
    text = hostile_row.locator("td.objective").inner_text()
    assert "<script>alert(1)</script>" in text
    assert "\\x1b[31mred" in text  # the escape is shown, not obeyed
    assert page.locator("script").count() == 0
    page.screenshot(path=str(screenshots / "runs.png"), full_page=True)


def test_browser_run_page_shows_timeline_plot_markers_and_checkpoints(
    served: Served, page: Any, screenshots: Path
) -> None:
    seeded = served.seeded
    page.goto(f"{served.base}/ui/runs/{seeded.run_id}")
    assert page.locator("#objective").inner_text() == "Fix the flaky login test"
    steps = page.locator("#timeline-table tbody tr")
    assert steps.count() == seeded.steps
    assert steps.first.get_attribute("id") == f"step-{seeded.steps}"  # newest first
    error_row = page.locator("#step-7")
    assert "error" in error_row.inner_text()
    error_row.locator("summary").click()
    assert "the login timed out" in error_row.locator("pre").nth(1).inner_text()
    markers = page.locator("#token-plot g.cp-marker")
    assert markers.count() == len(seeded.checkpoint_ids)
    assert page.locator("#budget-line").count() == 1
    points = page.locator("#working-curve").get_attribute("points").split()
    assert len(points) >= seeded.steps  # every step of a short run is a point
    assert page.locator("#checkpoint-table tbody tr").count() == len(seeded.checkpoint_ids)
    page.screenshot(path=str(screenshots / "run.png"), full_page=True)


def test_browser_hostile_run_page_renders_stored_markup_as_text(
    served: Served, page: Any, screenshots: Path
) -> None:
    page.goto(f"{served.base}/ui/runs/{served.seeded.hostile_run_id}")
    objective = page.locator("#objective").inner_text()
    assert objective.startswith("<script>alert(1)</script>")
    assert page.locator("img").count() == 0
    assert page.locator("#step-1 td.tool").inner_text() == "<b>bold</b>"
    page.locator("#step-1 summary").click()
    assert "</pre><script>alert(3)</script>" in page.locator("#step-1 pre").nth(1).inner_text()
    page.screenshot(path=str(screenshots / "hostile.png"), full_page=True)


def test_browser_diff_of_two_checkpoints_shows_what_changed(
    served: Served, page: Any, screenshots: Path
) -> None:
    seeded = served.seeded
    page.goto(f"{served.base}/ui/runs/{seeded.run_id}")
    page.check(f"#cp-{seeded.checkpoint_ids[0]} input[name=a]")
    page.check(f"#cp-{seeded.checkpoint_ids[2]} input[name=b]")
    page.click("#diff-button")
    page.wait_for_url(re.compile(r"/diff\?"))
    added = page.locator("#diff-decisions li.added").all_inner_texts()
    assert any("decision 20" in line for line in added)
    assert any("decision 30" in line for line in added)
    assert "look at case 11" in page.locator("#diff-next_actions li.removed").inner_text()
    page.screenshot(path=str(screenshots / "diff.png"), full_page=True)


def test_browser_context_page_shows_the_rehydrate_text_within_the_chosen_budget(
    served: Served, page: Any, screenshots: Path
) -> None:
    page.goto(f"{served.base}/ui/runs/{served.seeded.run_id}/context")
    page.fill("input[name=budget]", "300")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"budget=300"))
    stats = page.locator("#context-stats").inner_text()
    used = int(stats.split(" of ")[0])
    assert 0 < used <= 300
    text = page.locator("#context-text").inner_text()
    assert text.startswith("# Resume: run run_ui_main")
    assert "Objective: Fix the flaky login test" in text
    page.screenshot(path=str(screenshots / "context.png"), full_page=True)


def test_browser_verify_page_reports_an_intact_chain(served: Served, page: Any) -> None:
    page.goto(f"{served.base}/ui/runs/{served.seeded.run_id}")
    page.click("#verify-link")
    assert page.locator("#verify-status").inner_text().startswith("OK")


def test_browser_memory_page_links_provenance_and_the_supersession_chain(
    served: Served, page: Any, screenshots: Path
) -> None:
    seeded = served.seeded
    page.goto(f"{served.base}/ui/memories?status=any")
    assert page.locator("#memories tbody tr").count() == 3
    page.click(f"a:text('{seeded.superseded_id}')")
    assert "5 s timeout" in page.locator("#memory-content").inner_text()
    chain = page.locator("#supersession li")
    assert chain.count() == 2
    assert seeded.memory_id in chain.nth(1).inner_text()
    page.screenshot(path=str(screenshots / "memory.png"), full_page=True)
    page.click("#provenance a:text('step 7 of run')")
    page.wait_for_url(re.compile(r"#step-7$"))
    assert page.locator("#step-7").is_visible()


def test_browser_memories_page_shows_hostile_content_as_text(
    served: Served, page: Any
) -> None:
    page.goto(f"{served.base}/ui/memories?kind=lesson")
    rows = page.locator("#memories tbody tr")
    assert rows.count() == 1
    assert HOSTILE.split(" ")[0] in rows.first.inner_text()


def test_browser_reviewing_a_batch_commits_the_accepted_items_only(
    tmp_path: Path, browser: Any, screenshots: Path
) -> None:
    from tests.ui.conftest import seeded_settings, serve

    settings, seeded = seeded_settings(tmp_path)
    context = browser.new_context()
    page = context.new_page()
    with serve(settings) as base:
        page.goto(f"{base}/ui/batches")
        listed = page.locator("#batches tbody tr")
        assert listed.count() == 1  # the pending one; the two committed are not listed
        assert seeded.batch_id in listed.inner_text()
        listed.locator("a.mono").first.click()
        assert page.locator("#batch-status").inner_text() == "pending"
        assert "Near duplicates" in page.locator("#item-1").inner_text()
        page.screenshot(path=str(screenshots / "batch-pending.png"), full_page=True)
        page.uncheck("#item-1 input[name=accept]")
        page.click("#commit-button")
        page.wait_for_load_state()
        assert page.locator("#batch-status").inner_text() == "committed"
        assert "accepted" in page.locator("#item-0").inner_text()
        assert "rejected" in page.locator("#item-1").inner_text()
        page.screenshot(path=str(screenshots / "batch-committed.png"), full_page=True)
        page.locator("#item-0 a.mono").first.click()
        assert "staging database" in page.locator("#memory-content").inner_text()
    context.close()
