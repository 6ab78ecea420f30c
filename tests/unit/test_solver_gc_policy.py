"""The cache policy as a user writes it: sizes, shares of the disk, durations, and the
`DIRK_GC_*` variables an engine reads; errors name the setting and the forms it takes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dirk.errors import CachePolicyError, InvalidArgumentError
from dirk.solver.gc_policy import (
    DEFAULT_INTERVAL,
    ENV_INTERVAL,
    ENV_KEEP,
    ENV_MAX_USED,
    ENV_MIN_FREE,
    ENV_RESERVED,
    ENV_TARGET,
    CachePolicy,
    background_interval,
    human_duration,
    human_size,
    parse_duration,
    parse_space,
)

DISK = 1_000_000


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("500MB", 500 * 1000**2),
        ("20GiB", 20 * 1024**3),
        ("1.5TB", 1_500_000_000_000),
        ("75%", 750_000),
        ("12.5%", 125_000),
        ("100%", DISK),
        ("0", 0),
        (" 10 kb ", 10_000),
        ("4096", 4096),
        ("7B", 7),
        ("3k", 3000),
        ("2M", 2_000_000),
        ("1g", 10**9),
        ("5KiB", 5 * 1024),
        ("2MiB", 2 * 1024**2),
        ("1TiB", 1024**4),
    ],
)
def test_parse_space_reads_sizes_as_dagger_writes_them(text: str, size: int) -> None:
    assert parse_space(text, DISK, "max used space") == size


@pytest.mark.parametrize("text", ["lots", "", "-5GB", "1e9", "10 GB extra", "%"])
def test_a_size_that_is_not_one_says_which_setting_and_the_forms(text: str) -> None:
    with pytest.raises(CachePolicyError) as caught:
        parse_space(text, DISK, "max used space")
    message = str(caught.value)
    assert "max used space" in message
    assert "500MB" in message and "75%" in message


def test_an_unknown_unit_is_named_with_the_units_there_are() -> None:
    with pytest.raises(CachePolicyError) as caught:
        parse_space("10XB", DISK, "reserved space")
    message = str(caught.value)
    assert "reserved space" in message
    assert "'XB'" in message
    assert "GiB" in message and "GB" in message


def test_more_than_the_whole_disk_is_refused() -> None:
    with pytest.raises(CachePolicyError) as caught:
        parse_space("120%", DISK, "min free space")
    assert "min free space" in str(caught.value)
    assert "100%" in str(caught.value)


def test_a_policy_error_is_an_invalid_argument() -> None:
    # Callers (the API, the CLI) report it as the user's mistake, not the engine's.
    assert issubclass(CachePolicyError, InvalidArgumentError)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 10**6),
    st.sampled_from(
        [("", 1), ("B", 1), ("kB", 1000), ("MB", 1000**2), ("GB", 1000**3), ("GiB", 1024**3)]
    ),
    st.sampled_from(["", " "]),
)
def test_whole_numbers_with_any_unit_are_exact(
    number: int, unit: tuple[str, int], space: str
) -> None:
    suffix, factor = unit
    assert parse_space(f"{number}{space}{suffix}", DISK, "x") == number * factor


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 100), st.integers(0, 10**9))
def test_a_share_of_the_disk_never_exceeds_it(percent: int, disk: int) -> None:
    size = parse_space(f"{percent}%", disk, "x")
    assert 0 <= size <= disk
    assert size == disk * percent // 100


def test_a_decimal_size_is_read_to_the_byte() -> None:
    assert parse_space("1.005KB", DISK, "x") == 1005


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("30m", 1800.0),
        ("48h", 172_800.0),
        ("7d", 604_800.0),
        ("2w", 1_209_600.0),
        ("3600", 3600.0),
        (" 1.5h ", 5400.0),
        ("12H", 43_200.0),
        ("0", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text, "keep duration") == seconds


@pytest.mark.parametrize("text", ["soon", "", "5y", "-1h", "1.5hours", "2 days", "h"])
def test_a_duration_that_is_not_one_says_which_setting_and_the_forms(text: str) -> None:
    with pytest.raises(CachePolicyError) as caught:
        parse_duration(text, "keep duration")
    message = str(caught.value)
    assert "keep duration" in message
    assert "48h" in message


def test_the_default_is_dagger_s() -> None:
    policy = CachePolicy.default(DISK)
    assert policy == CachePolicy(
        max_used_space=750_000, min_free_space=200_000, reserved_space=0, target_space=0
    )
    assert policy.keep_duration == 0


def test_the_environment_overrides_the_default() -> None:
    env = {
        ENV_MAX_USED: "50%",
        ENV_MIN_FREE: "10KB",
        ENV_RESERVED: "1KiB",
        ENV_TARGET: "40%",
        ENV_KEEP: "2d",
        "UNRELATED": "x",
    }
    policy = CachePolicy.from_environment(env, DISK)
    assert policy == CachePolicy(
        max_used_space=500_000,
        min_free_space=10_000,
        reserved_space=1024,
        target_space=400_000,
        keep_duration=172_800.0,
    )


def test_empty_variables_keep_the_default() -> None:
    env = {ENV_MAX_USED: "", ENV_KEEP: "  "}
    assert CachePolicy.from_environment(env, DISK) == CachePolicy.default(DISK)
    assert CachePolicy.from_environment({}, DISK) == CachePolicy.default(DISK)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        (ENV_MAX_USED, "lots"),
        (ENV_MIN_FREE, "10XB"),
        (ENV_RESERVED, "120%"),
        (ENV_TARGET, "big"),
        (ENV_KEEP, "forever"),
    ],
)
def test_a_bad_variable_is_named_in_the_error(variable: str, value: str) -> None:
    with pytest.raises(CachePolicyError) as caught:
        CachePolicy.from_environment({variable: value}, DISK)
    assert variable in str(caught.value)
    assert repr(value) in str(caught.value)


def test_overridden_replaces_only_what_is_given() -> None:
    base = CachePolicy(max_used_space=1, min_free_space=2, reserved_space=3, keep_duration=4.0)
    changed = base.overridden(disk_total=DISK, reserved_space="10%", keep_duration="1m")
    assert changed == CachePolicy(
        max_used_space=1, min_free_space=2, reserved_space=100_000, keep_duration=60.0
    )
    assert base.overridden(disk_total=DISK) == base


def test_overridden_names_api_arguments_in_its_errors() -> None:
    with pytest.raises(CachePolicyError, match="maxUsedSpace"):
        CachePolicy().overridden(disk_total=DISK, max_used_space="lots")
    with pytest.raises(CachePolicyError, match="keepDuration"):
        CachePolicy().overridden(disk_total=DISK, keep_duration="lots")
    with pytest.raises(CachePolicyError, match="--keep"):
        CachePolicy().overridden(
            disk_total=DISK,
            keep_duration="lots",
            names={
                "max_used_space": "--max",
                "min_free_space": "--free",
                "reserved_space": "--reserved",
                "target_space": "--target",
                "keep_duration": "--keep",
            },
        )


@pytest.mark.parametrize(
    ("max_used", "target", "goal"),
    [(100, 60, 60), (100, 200, 100), (100, 0, 100), (0, 60, 60), (0, 0, 0)],
)
def test_goal_is_the_lower_of_target_and_max_used(max_used: int, target: int, goal: int) -> None:
    assert CachePolicy(max_used_space=max_used, target_space=target).goal() == goal


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({}, DEFAULT_INTERVAL),
        ({ENV_INTERVAL: " "}, DEFAULT_INTERVAL),
        ({ENV_INTERVAL: "0"}, 0.0),
        ({ENV_INTERVAL: "10m"}, 600.0),
        ({ENV_INTERVAL: "45"}, 45.0),
    ],
)
def test_background_interval(env: dict[str, str], interval: float) -> None:
    assert background_interval(env) == interval


def test_a_bad_interval_names_its_variable() -> None:
    with pytest.raises(CachePolicyError, match=ENV_INTERVAL):
        background_interval({ENV_INTERVAL: "often"})


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (12, "12 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (340_000, "340.0 kB"),
        (1_500_000_000, "1.5 GB"),
        (2 * 10**12, "2.0 TB"),
        (5 * 10**15, "5000.0 TB"),
    ],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (60, "1m"), (720, "12m"), (5 * 3600, "5h"), (3 * 86400, "3d")],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text
