"""course_lib.timing and the timers that delegate to it (compress.measure_latency,
sparse.matmul_seconds, parallel.thread_scaling): shapes, types and the conditions of a
measurement only. No test here asserts a speed: timing never decides a unit test."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_lib import compress, parallel, sparse, timing


def test_measure_returns_ordered_quartiles_of_positive_seconds():
    t = timing.measure(lambda: sum(range(100)), warmup=2, repeats=7, number=3)
    assert isinstance(t, timing.Timing) and t.repeats == 7
    assert 0 < t.q1 <= t.median <= t.q3 and t.iqr == t.q3 - t.q1
    one = timing.measure(lambda: None, warmup=0, repeats=1)
    assert one.q1 == one.median == one.q3 and one.iqr == 0


def test_interleaved_alternates_arms_and_pairs_rounds():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    comparison = timing.interleaved(fns, rounds=4, warmup=0)
    assert {name: len(t) for name, t in comparison.times.items()} == {"a": 4, "b": 4}
    runs = [name for i, name in enumerate(calls) if i == 0 or calls[i - 1] != name]
    assert runs == ["a", "b", "a", "b", "a"]  # rounds A B, B A, A B, B A (A B A B … gives 8)
    assert set(comparison.timings) == set(comparison.medians) == {"a", "b"}
    assert all(m > 0 for m in comparison.medians.values())
    assert math.isfinite(comparison.ratio("a", "b")) and comparison.ratio("a", "b") > 0
    assert "a" in str(comparison) and "median" in str(comparison)
    with pytest.raises(ValueError, match="numerator must be one of"):
        comparison.ratio("c", "a")


def test_ratio_is_the_median_of_paired_per_round_ratios():
    comparison = timing.Comparison({"slow": [2.0, 4.0, 30.0], "fast": [1.0, 1.0, 10.0]})
    assert comparison.ratio("slow", "fast") == 3.0  # median of 2, 4, 3
    assert comparison.medians == {"slow": 4.0, "fast": 1.0}


def test_each_arm_runs_with_its_thread_count_and_the_count_is_restored():
    before = torch.get_num_threads()
    seen = {1: set(), 2: set()}
    fns = {n: (lambda n=n: seen[n].add(torch.get_num_threads())) for n in seen}
    timing.interleaved(fns, rounds=2, warmup=1, num_threads={1: 1, 2: 2})
    assert seen == {1: {1}, 2: {2}}
    assert torch.get_num_threads() == before


def test_measure_latency_times_the_model_in_eval_and_inference_mode():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))
    modes = []
    model.register_forward_hook(
        lambda m, i, o: modes.append((m.training, torch.is_inference_mode_enabled()))
    )
    lat = compress.measure_latency(model, torch.randn(4, 8), warmup=1, repeats=5)
    assert isinstance(lat, timing.Timing) and lat.repeats == 5
    assert lat.q1 <= lat.median <= lat.q3 and lat.median > 0
    assert set(modes) == {(False, True)}
    assert model.training  # train mode restored


def test_matmul_seconds_is_a_positive_float():
    A = sparse.random_sparse_matrix(16, 16, 0.2)
    assert sparse.matmul_seconds(sparse.to_sparse(A), torch.randn(16, 4), repeats=2) > 0


def test_thread_scaling_times_each_count_with_that_many_threads():
    model = nn.Linear(16, 16)
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(torch.get_num_threads()))
    result = parallel.thread_scaling(model, torch.randn(8, 16), (1, 2), warmup=1, repeats=3)
    assert sorted(result) == [1, 2]
    assert all(isinstance(t, timing.Timing) and t.repeats == 3 for t in result.values())
    assert set(seen) == {1, 2} and model.training


def test_inference_restores_the_mode_after_an_error():
    model = nn.Linear(2, 2).eval()
    with pytest.raises(RuntimeError), timing.inference(model):
        assert not model.training and torch.is_inference_mode_enabled()
        raise RuntimeError("boom")
    assert not model.training and not torch.is_inference_mode_enabled()


def test_stamps_print_the_timer_mark_a_number_and_a_unit():
    assert timing.stamp(0.0123) == "⏱ 12.3 ms" and timing.stamp(2.5e-5) == "⏱ 25 µs"
    assert timing.stamp(12.0) == "⏱ 12 s" and timing.stamp_ratio(1.834) == "⏱ 1.83×"
