"""Bucket matching: Lago's matching/ignored filters and their consequences (section 2)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from metering.filters import (
    DEFAULT_BUCKET,
    BucketMatchers,
    bucket_for,
    compile_buckets,
    expand_filter_values,
    matching_and_ignored,
)
from metering.models import ALL_FILTER_VALUES, BillableMetric, ChargeFilter
from tests.metering.builders import T0, charge, charge_filter, event, metric

ALL = [ALL_FILTER_VALUES]


def _as_sets(filters: list[dict[str, tuple[str, ...]]]) -> list[dict[str, set[str]]]:
    return [{k: set(v) for k, v in f.items()} for f in filters]


@pytest.fixture
def bm() -> BillableMetric:
    """The metric of Lago's matching_and_ignored_service_spec."""
    return metric(
        filters={
            "steps": ["25", "50", "75", "100"],
            "size": ["512", "1024"],
            "model": ["llama-1", "llama-2", "llama-3", "llama-4"],
        }
    )


class TestLagoSpecFiveFilters:
    """f1..f5 of api: spec/services/charge_filters/matching_and_ignored_service_spec.rb."""

    @pytest.fixture
    def filters(self) -> list[ChargeFilter]:
        return [
            charge_filter({"steps": ["25"], "size": ["512"], "model": ["llama-2"]}, id="f1"),
            charge_filter({"steps": ["25"], "size": ["512"]}, id="f2"),
            charge_filter({"steps": ALL, "size": ALL}, id="f3"),
            charge_filter({"size": ALL}, id="f4"),
            charge_filter({"size": ["512"]}, id="f5"),
        ]

    @pytest.mark.parametrize(
        ("target", "matching", "ignored"),
        [
            ("f1", {"size": {"512"}, "steps": {"25"}, "model": {"llama-2"}}, []),
            (
                "f2",
                {"size": {"512"}, "steps": {"25"}},
                [
                    {"model": {"llama-2"}, "size": {"512"}, "steps": {"25"}},
                    {"size": {"1024"}, "steps": {"50", "75", "100"}},
                ],
            ),
            (
                "f3",
                {"size": {"512", "1024"}, "steps": {"25", "50", "75", "100"}},
                [
                    {"model": {"llama-2"}, "size": {"512"}, "steps": {"25"}},
                    {"size": {"512"}, "steps": {"25"}},
                ],
            ),
            (
                "f4",
                {"size": {"512", "1024"}},
                [
                    {"model": {"llama-2"}, "size": {"512"}, "steps": {"25"}},
                    {"size": {"512"}, "steps": {"25"}},
                    {"size": {"512", "1024"}, "steps": {"25", "50", "75", "100"}},
                    {"size": {"512"}},
                ],
            ),
            (
                "f5",
                {"size": {"512"}},
                [
                    {"model": {"llama-2"}, "size": {"512"}, "steps": {"25"}},
                    {"size": {"512"}, "steps": {"25"}},
                    {"size": {"512", "1024"}, "steps": {"25", "50", "75", "100"}},
                    {"size": {"1024"}},
                ],
            ),
        ],
    )
    def test_matching_and_ignored(
        self,
        bm: BillableMetric,
        filters: list[ChargeFilter],
        target: str,
        matching: dict[str, set[str]],
        ignored: list[dict[str, set[str]]],
    ) -> None:
        ch = charge(bm, filters=filters)
        chosen = next(f for f in filters if f.id == target)
        got_matching, got_ignored = matching_and_ignored(bm, ch, chosen)
        assert {k: set(v) for k, v in got_matching.items()} == matching
        assert _as_sets(got_ignored) == ignored

    @pytest.mark.parametrize(
        ("props", "expected"),
        [
            # Most specific wins: the superset filter takes the event from every broader one.
            ({"steps": "25", "size": "512", "model": "llama-2"}, ["f1"]),
            ({"steps": "25", "size": "512", "model": "llama-1"}, ["f2"]),
            ({"steps": "50", "size": "512"}, ["f3"]),
            ({"size": "1024"}, ["f4"]),
            ({"size": "512"}, ["f5"]),
            ({"steps": "25", "size": "2048"}, [DEFAULT_BUCKET]),
            ({"model": "llama-2"}, [DEFAULT_BUCKET]),
            ({}, [DEFAULT_BUCKET]),
        ],
    )
    def test_each_event_lands_in_one_bucket(
        self,
        bm: BillableMetric,
        filters: list[ChargeFilter],
        props: dict[str, str],
        expected: list[str | None],
    ) -> None:
        assert bucket_for(bm, charge(bm, filters=filters), props) == expected


def test_default_bucket_excludes_every_filter(bm: BillableMetric) -> None:
    f1 = charge_filter({"size": ["512"]})
    f2 = charge_filter({"steps": ALL, "size": ["1024"]})
    matching, ignored = matching_and_ignored(bm, charge(bm, filters=[f1, f2]), None)
    assert matching == {}
    assert _as_sets(ignored) == [
        {"size": {"512"}},
        {"steps": {"25", "50", "75", "100"}, "size": {"1024"}},
    ]


class TestLagoSpecEdgeCases:
    def test_empty_filters_are_vacuously_identical(self, bm: BillableMetric) -> None:
        empty_a = charge_filter({}, created_at=T0 - timedelta(days=2))
        empty_b = charge_filter({}, created_at=T0 - timedelta(days=1))
        with_values = charge_filter({"size": ["512"]})
        ch = charge(bm, filters=[empty_a, empty_b, with_values])
        assert matching_and_ignored(bm, ch, empty_a) == ({}, [{"size": ("512",)}])
        assert matching_and_ignored(bm, ch, with_values) == ({"size": ("512",)}, [])

    def test_subset_child_is_kept_verbatim(self, bm: BillableMetric) -> None:
        parent = charge_filter({"size": ["512", "1024"]})
        subset = charge_filter({"size": ["512"]})
        partial = charge_filter({"size": ["512"], "steps": ["25"]})
        ch = charge(bm, filters=[parent, subset, partial])
        _, ignored = matching_and_ignored(bm, ch, parent)
        assert ignored == [{"size": ("512",)}, {"size": ("512",), "steps": ("25",)}]

    def test_mixed_child_has_the_parent_values_removed(self, bm: BillableMetric) -> None:
        parent = charge_filter({"size": ["512", "1024"], "steps": ["25", "50"]})
        mixed = charge_filter({"size": ["512"], "steps": ["25", "75"]})
        _, ignored = matching_and_ignored(bm, charge(bm, filters=[parent, mixed]), parent)
        assert ignored == [{"size": (), "steps": ("75",)}]

    @pytest.mark.parametrize(("target", "ignored_count"), [(0, 0), (1, 1), (2, 2)])
    def test_identical_filters_only_the_oldest_counts(
        self, bm: BillableMetric, target: int, ignored_count: int
    ) -> None:
        twins = [
            charge_filter({"size": ["512"], "steps": ["25"]}, created_at=T0 - timedelta(days=d))
            for d in (3, 2, 1)
        ]
        _, ignored = matching_and_ignored(bm, charge(bm, filters=twins), twins[target])
        assert ignored == [{"size": ("512",), "steps": ("25",)}] * ignored_count

    def test_identical_keys_in_another_order(self, bm: BillableMetric) -> None:
        parent = charge_filter({"size": ["512"], "steps": ["25"]}, created_at=T0)
        duplicate = charge_filter({"steps": ["25"], "size": ["512"]}, created_at=T0 + timedelta(1))
        _, ignored = matching_and_ignored(bm, charge(bm, filters=[parent, duplicate]), parent)
        assert ignored == []

    def test_same_created_at_tie_breaks_on_id(self, bm: BillableMetric) -> None:
        a = charge_filter({"size": ["512"]}, id="aaa", created_at=T0)
        b = charge_filter({"size": ["512"]}, id="bbb", created_at=T0)
        ch = charge(bm, filters=[b, a])
        assert matching_and_ignored(bm, ch, a)[1] == []
        assert matching_and_ignored(bm, ch, b)[1] == [{"size": ("512",)}]
        assert bucket_for(bm, ch, {"size": "512"}) == ["aaa"]


class TestConsequences:
    """The rules of section 2 seen from events."""

    @pytest.fixture
    def cloud(self) -> BillableMetric:
        return metric(
            filters={"region": ["africa", "europe", "usa"], "provider": ["aws", "gcp", "azure"]}
        )

    def test_narrower_value_set_wins_with_the_same_keys(self, cloud: BillableMetric) -> None:
        broad = charge_filter({"region": ALL, "provider": ALL})
        narrow = charge_filter({"region": ["africa"], "provider": ["aws"]})
        ch = charge(cloud, filters=[broad, narrow])
        assert bucket_for(cloud, ch, {"region": "africa", "provider": "aws"}) == [narrow.id]
        assert bucket_for(cloud, ch, {"region": "africa", "provider": "gcp"}) == [broad.id]

    def test_disjoint_keys_double_count(self) -> None:
        bm = metric(filters={"model": ["a", "b"], "type": ["input", "output"]})
        by_model = charge_filter({"model": ["a"]})
        by_type = charge_filter({"type": ["input"]})
        ch = charge(bm, filters=[by_model, by_type])
        assert bucket_for(bm, ch, {"model": "a", "type": "input"}) == [by_model.id, by_type.id]
        assert bucket_for(bm, ch, {"model": "a", "type": "output"}) == [by_model.id]

    def test_overlapping_values_double_count(self) -> None:
        bm = metric(filters={"m": ["a", "b", "c"]})
        ab = charge_filter({"m": ["a", "b"]})
        bc = charge_filter({"m": ["b", "c"]})
        ch = charge(bm, filters=[ab, bc])
        assert bucket_for(bm, ch, {"m": "b"}) == [ab.id, bc.id]
        assert bucket_for(bm, ch, {"m": "a"}) == [ab.id]
        assert bucket_for(bm, ch, {"m": "c"}) == [bc.id]

    def test_duplicates_only_counted_by_the_oldest(self) -> None:
        bm = metric(filters={"m": ["a"]})
        newer = charge_filter({"m": ["a"]}, created_at=T0 + timedelta(days=1))
        older = charge_filter({"m": ["a"]}, created_at=T0)
        ch = charge(bm, filters=[newer, older])
        assert bucket_for(bm, ch, {"m": "a"}) == [older.id]

    def test_matching_is_case_sensitive(self) -> None:
        bm = metric(filters={"provider": ["AWS", "aws"]})
        upper = charge_filter({"provider": ["AWS"]})
        ch = charge(bm, filters=[upper])
        assert bucket_for(bm, ch, {"provider": "AWS"}) == [upper.id]
        assert bucket_for(bm, ch, {"provider": "aws"}) == [DEFAULT_BUCKET]

    @pytest.mark.parametrize(
        "props", [{"model": "gpt-3.5", "type": "input"}, {"type": "input"}, {"model": None}]
    )
    def test_unknown_or_missing_values_go_to_the_default(self, props: dict[str, str]) -> None:
        bm = metric(filters={"model": ["gpt-4"], "type": ["input", "output"]})
        ch = charge(bm, filters=[charge_filter({"model": ["gpt-4"], "type": ["input"]})])
        assert bucket_for(bm, ch, props) == [DEFAULT_BUCKET]

    def test_missing_property_counts_as_empty_text_in_exclusions(self) -> None:
        # A metric value "" makes the default bucket exclude events lacking the property,
        # although the filter itself (which needs the property) does not count them.
        bm = metric(filters={"tier": ["", "gold"]})
        empty = charge_filter({"tier": [""]})
        ch = charge(bm, filters=[empty])
        assert bucket_for(bm, ch, {"tier": ""}) == [empty.id]
        assert bucket_for(bm, ch, {}) == []

    def test_charge_without_filters_has_only_the_default_bucket(self) -> None:
        bm = metric(filters={"model": ["a"]})
        matcher = compile_buckets(bm, charge(bm))
        assert matcher.keys == ()
        assert matcher.bucket_ids == (DEFAULT_BUCKET,)
        assert matcher.buckets_for({"model": "a"}) == (DEFAULT_BUCKET,)


def test_all_filter_values_expand_against_the_metric() -> None:
    bm = metric(filters={"model": ["b", "a"], "type": ["input"]})
    cf = charge_filter({"model": ALL, "type": ["input"]})
    assert expand_filter_values(bm, cf) == {"model": ("a", "b"), "type": ("input",)}


def test_matcher_assigns_group_rows_and_events() -> None:
    bm = metric(filters={"model": ["a", "b"], "type": ["input", "output"]})
    fa = charge_filter({"model": ["a"], "type": ALL})
    ch = charge(bm, filters=[fa])
    matcher = compile_buckets(bm, ch)
    assert matcher.keys == ("model", "type")
    assert matcher.bucket_ids == (fa.id, DEFAULT_BUCKET)
    assert matcher.buckets_for_row(("a", "input")) == (fa.id,)
    assert matcher.buckets_for_row(("a", None)) == (DEFAULT_BUCKET,)
    assert matcher.buckets_for_event(event({"model": "a", "type": "output"})) == (fa.id,)
    # JSON numbers match by their text, as Postgres ->> renders them.
    num = metric(filters={"size": ["512"]})
    sized = charge_filter({"size": ["512"]})
    assert compile_buckets(num, charge(num, filters=[sized])).buckets_for_event(
        event({"size": 512})
    ) == (sized.id,)


class TestBucketMatchers:
    """Compiled matchers are reused for the same records and never for changed ones."""

    def test_same_metric_and_charge_reuse_one_matcher(self, bm: BillableMetric) -> None:
        matchers = BucketMatchers()
        ch = charge(bm, filters=[charge_filter({"size": ["512"]}, id="f1")], id="c1")
        first = matchers.get(bm, ch)
        assert matchers.get(bm, ch) is first
        assert first.buckets_for({"size": "512"}) == ("f1",)

    def test_a_changed_charge_is_compiled_afresh(self, bm: BillableMetric) -> None:
        matchers = BucketMatchers()
        before = charge(bm, filters=[charge_filter({"size": ["512"]}, id="f1")], id="c1")
        after = charge(bm, filters=[charge_filter({"size": ["1024"]}, id="f1")], id="c1")
        assert matchers.get(bm, before).buckets_for({"size": "512"}) == ("f1",)
        assert matchers.get(bm, after).buckets_for({"size": "512"}) == (DEFAULT_BUCKET,)
        assert matchers.get(bm, after).buckets_for({"size": "1024"}) == ("f1",)

    def test_keeps_at_most_limit_matchers(self, bm: BillableMetric) -> None:
        matchers = BucketMatchers(limit=2)
        charges = [charge(bm, id=f"c{n}") for n in range(3)]
        first = matchers.get(bm, charges[0])
        matchers.get(bm, charges[1])
        assert matchers.get(bm, charges[0]) is first  # still kept
        matchers.get(bm, charges[2])  # evicts the oldest entry, charges[0]
        assert matchers.get(bm, charges[0]) is not first
