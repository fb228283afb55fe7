"""How the suite shares two cores (conftest.py): pytest-xdist hands out the xdist groups with the most tests
first, so that the storm group starts beside the two groups of tests that mostly wait."""

from __future__ import annotations

from collections import Counter

import pytest


def test_the_storm_group_is_handed_out_first_and_the_waiting_groups_next(request: pytest.FixtureRequest) -> None:
    groups = Counter(
        next((marker.args[0] for marker in item.iter_markers("xdist_group")), None) for item in request.session.items
    )
    if not (groups["storm"] and groups["waits"] and groups["waits-2"]):
        return  # a selection of the suite (`-k`, a file): these groups are not all in it
    others = max((n for group, n in groups.items() if group not in (None, "storm", "waits", "waits-2")), default=0)
    assert groups["storm"] > max(groups["waits"], groups["waits-2"]), groups
    assert min(groups["waits"], groups["waits-2"]) > others, groups
