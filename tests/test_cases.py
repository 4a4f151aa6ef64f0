"""The exactly defined data of chapter 5's case studies (course_lib.cases)."""

from __future__ import annotations

import collections

import pytest
import torch
from torch import nn

from course_lib import cases
from course_lib.data import Split, Splits

# --- games ---------------------------------------------------------------------------------------


def test_tictactoe_has_5478_positions_in_765_symmetry_classes():
    positions = cases.tictactoe_positions()
    assert positions.boards.shape == (5478, 9)
    classes = cases.board_codes(cases.canonical(positions.boards)).unique()
    assert len(classes) == 765  # the well-known counts
    assert len(cases.board_codes(positions.boards).unique()) == 5478


def test_minimax_values_of_known_positions():
    assert cases.minimax_value((0,) * 9) == 0  # perfect play draws
    # X to move with two in a row and the third cell free: a win
    assert cases.minimax_value((1, 1, 0, 2, 2, 0, 0, 0, 0)) == 1
    assert cases.minimax_value((1, 2, 0, 0, 1, 0, 0, 0, 2)) == 1  # X to move: X forks and wins
    # finished games: the player to move has lost, or it is a draw
    assert cases.minimax_value((1, 1, 1, 2, 2, 0, 0, 0, 0)) == -1
    assert cases.minimax_value((1, 2, 1, 1, 2, 2, 2, 1, 1)) == 0


def test_value_distribution_from_the_side_to_move():
    values = collections.Counter(cases.tictactoe_positions().values.tolist())
    assert sum(values.values()) == 5478 and set(values) == {-1, 0, 1}


def test_every_symmetry_preserves_the_minimax_value():
    positions = cases.tictactoe_positions()
    images = cases.board_symmetries(positions.boards)
    assert images.shape == (8, 5478, 9)
    for g in range(8):
        values = [cases.minimax_value(tuple(b)) for b in images[g].tolist()]
        assert torch.equal(torch.tensor(values), positions.values)
    assert torch.equal(images[0], positions.boards)  # the identity comes first
    assert len({tuple(p.tolist()) for p in cases.SYMMETRIES}) == 8


def test_encoding_is_from_the_side_to_move():
    boards = torch.tensor([[1, 0, 0, 0, 0, 0, 0, 0, 0], [2, 1, 1, 0, 0, 0, 0, 0, 0]])
    x = cases.encode_boards(boards)
    assert x.shape == (2, 18)
    # first board: O to move, X's mark is "theirs"; second: O to move again (2 X, 1 O)
    assert x[0, :9].sum() == 0 and x[0, 9] == 1
    assert x[1, 0] == 1 and x[1, 9 + 1] == 1 and x[1, 9 + 2] == 1


def test_random_games_are_legal_and_reproducible():
    games = cases.random_games(20, seed=3)
    assert games == cases.random_games(20, seed=3)
    for game in games:
        assert game[0] == (0,) * 9 and cases.is_terminal(game[-1])
        for before, after in zip(game, game[1:]):
            changed = [i for i in range(9) if before[i] != after[i]]
            assert len(changed) == 1 and before[changed[0]] == 0
            assert after[changed[0]] == cases.to_move(before)


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_random_games_rejects_bad_counts(bad):
    with pytest.raises((ValueError, TypeError), match="num_games"):
        cases.random_games(bad)


# --- translation ---------------------------------------------------------------------------------

NUMERALS = {
    0: "零", 7: "七", 10: "十", 15: "十五", 20: "二十", 110: "一百一十", 123: "一百二十三",
    1001: "一千零一", 1010: "一千零一十", 1100: "一千一百", 10000: "一万", 10001: "一万零一",
    20500: "二万零五百", 45678: "四万五千六百七十八", 100000: "十万", 150000: "十五万",
    100010: "十万零一十", 1000100: "一百万零一百", 99999999: "九千九百九十九万九千九百九十九",
}  # fmt: skip


@pytest.mark.parametrize("n", sorted(NUMERALS))
def test_chinese_numerals(n):
    assert cases.chinese_numeral(n) == NUMERALS[n]


@pytest.mark.parametrize("bad", [-1, 10**8, 2.0, True])
def test_chinese_numeral_rejects_out_of_range(bad):
    with pytest.raises((ValueError, TypeError), match="n must be"):
        cases.chinese_numeral(bad)


def test_numeral_task_round_trips():
    numbers = [0, 7, 123, 10001, 99999]
    task = cases.numeral_task(numbers, digits=5)
    assert task.prompts.shape == (5, 6) and task.targets.shape == (5, 10)
    for n, prompt, target in zip(numbers, task.prompts, task.targets):
        assert cases.decode_numeral(prompt).replace("=", "") == str(n)
        assert cases.decode_numeral(target) == cases.chinese_numeral(n)
    with pytest.raises(ValueError, match="numbers"):
        cases.numeral_task([100000], digits=5)


# --- bioinformatics ------------------------------------------------------------------------------


def test_reverse_complement_matches_the_strings():
    sequences = ["GATTACA", "ACGTTGC", "CCCAAAG"]
    x = cases.one_hot_dna(sequences)
    expected = cases.one_hot_dna([cases.reverse_complement_text(s) for s in sequences])
    assert torch.equal(cases.reverse_complement(x), expected)
    assert cases.reverse_complement_text("GATTACA") == "TGTAATC"
    assert torch.equal(cases.reverse_complement(cases.reverse_complement(x)), x)


def test_planted_motif_labels_and_their_reverse_complements():
    X, y, sequences = cases.planted_motif_dataset(300, length=30, motif="GATTACA", seed=1)
    assert X.shape == (300, 4, 30) and y.float().mean() == 0.5
    rc = "TGTAATC"
    for s, label in zip(sequences, y.tolist()):
        assert ("GATTACA" in s or rc in s) == bool(label)
        flipped = cases.reverse_complement_text(s)
        assert ("GATTACA" in flipped or rc in flipped) == bool(label)  # label-preserving
    assert torch.equal(X, cases.one_hot_dna(sequences))


def test_planted_motif_rejects_a_bad_motif():
    with pytest.raises(ValueError, match="motif must be"):
        cases.planted_motif_dataset(10, length=5, motif="GATTACA")
    with pytest.raises(ValueError, match="motif must be"):
        cases.planted_motif_dataset(10, motif="GATXACA")


def _motif_splits(seed, n=64):
    X, y, _ = cases.planted_motif_dataset(n + 40, length=20, seed=seed)
    parts = [(0, n), (n, n + 20), (n + 20, n + 40)]
    return Splits(*[Split(X[a:b], y[a:b]) for a, b in parts])


def test_stacked_motif_cnns_match_torch_adam_one_model_at_a_time():
    splits, seeds, lrs, epochs = [_motif_splits(0), _motif_splits(1)], [3, 4], [1e-2, 3e-3], 3
    run = cases.train_motif_cnns(splits, seeds, lrs, epochs=epochs, batch_size=16, filters=4)
    for k in range(2):
        torch.manual_seed(seeds[k])
        model = cases.motif_cnn(filters=4)
        opt = torch.optim.Adam(model.parameters(), lr=lrs[k])
        train = splits[k].train
        for epoch in range(epochs):
            generator = torch.Generator().manual_seed(seeds[k] + 1000 * epoch)
            order = torch.randperm(len(train.y), generator=generator)
            for start in range(0, len(order), 16):
                i = order[start : start + 16]
                loss = nn.functional.cross_entropy(model(train.X[i]), train.y[i])
                opt.zero_grad()
                loss.backward()
                opt.step()
        for name, p in model.named_parameters():
            torch.testing.assert_close(run.state[name][k], p.detach(), rtol=1e-4, atol=1e-5)
        with torch.no_grad():
            test = splits[k].test
            accuracy = (model(test.X).argmax(1) == test.y).double().mean()
        assert run.test_accuracy[k].item() == pytest.approx(accuracy.item())


def test_stacked_motif_cnns_reject_mismatched_arguments():
    with pytest.raises(ValueError, match="one entry per seed"):
        cases.train_motif_cnns([_motif_splits(0)], [0, 1], [1e-2, 1e-2], epochs=1)
    with pytest.raises(ValueError, match="one size"):
        cases.train_motif_cnns([_motif_splits(0), _motif_splits(1, n=60)], [0, 1], [1e-2] * 2, 1)


# --- finance -------------------------------------------------------------------------------------


def test_macro_series_is_the_real_statsmodels_data():
    frame = cases.load_macro_series()
    assert len(frame) == 203
    assert str(frame.index[0]) == "1959Q1" and str(frame.index[-1]) == "2009Q3"
    assert {"infl", "tbilrate", "unemp", "gdp_growth"} <= set(frame.columns)


def test_lagged_features_use_only_the_past():
    frame = cases.load_macro_series()
    X, y = cases.lagged_features(frame, ["infl", "unemp"], "infl", lags=3)
    t = X.index[10]
    position = frame.index.get_loc(t)
    assert X.loc[t, "infl[t]"] == frame["infl"].iloc[position]
    assert X.loc[t, "unemp[t-2]"] == frame["unemp"].iloc[position - 2]
    assert y.loc[t] == frame["infl"].iloc[position + 1]  # the target is the next quarter
    assert not X.isna().any().any() and len(X) == len(y) == 203 - 2 - 1
    with pytest.raises(ValueError, match="columns"):
        cases.lagged_features(frame, ["nope"], "infl")


def test_walk_forward_split_is_ordered_and_disjoint():
    train, val, test = cases.walk_forward_split(100)
    assert train.max() < val.min() and val.max() < test.min()
    assert len(train) + len(val) + len(test) == 100 and len(test) == 20
    with pytest.raises(ValueError, match="val_fraction"):
        cases.walk_forward_split(3, 0.5, 0.5)


def test_stacked_regressors_match_torch_adam_one_model_at_a_time():
    torch.manual_seed(0)
    splits = []
    for _ in range(2):
        X = torch.randn(30, 5)
        y = X @ torch.randn(5) + 0.1 * torch.randn(30)
        parts = [(0, 20), (20, 25), (25, 30)]
        splits.append(Splits(*[Split(X[a:b], y[a:b]) for a, b in parts]))
    seeds, lrs = [5, 6], [1e-2, 3e-3]
    run = cases.train_regressors(splits, seeds, lrs, steps=25, hidden=8, weight_decay=1e-2)
    for k in range(2):
        torch.manual_seed(seeds[k])
        model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))
        opt = torch.optim.Adam(model.parameters(), lr=lrs[k])
        train = splits[k].train
        for _ in range(25):
            loss = ((model(train.X).squeeze(1) - train.y) ** 2).mean()
            loss = loss + 1e-2 / 2 * (model[0].weight.pow(2).sum() + model[2].weight.pow(2).sum())
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            test = splits[k].test
            mse = ((model(test.X).squeeze(1) - test.y) ** 2).mean().item()
        assert run.test_mse[k].item() == pytest.approx(mse, rel=1e-4)
