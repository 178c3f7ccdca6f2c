"""Early exit: thresholds against hand-computed exits, the budget solver, the CLI end to end."""
import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from archs import create_model, measure_gmacs
from ops.evaluation.early_exit import (Split, apply_thresholds, best_under_budget, confidence, curve, exit_costs,
                            exit_proportions, exited_logits, fit_thresholds, holdout_split, metric, static_points)
from ops.common.errors import UserError
from ops.evaluation.metrics import mean_average_precision
from ops.evaluation.scores import ScoreFile, write_scores
from videorec_cli.main import app

runner = CliRunner()


def two_class_logits(conf: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """(N, E) max logits and predicted classes -> (N, E, 2) logits: [c, c-1] or [c-1, c]."""
    conf, preds = np.asarray(conf, float), np.asarray(preds)
    return np.stack([np.where(preds == 0, conf, conf - 1), np.where(preds == 1, conf, conf - 1)], axis=-1)


def test_fit_and_apply_against_hand_computed_exits():
    # fitting split: 6 videos, 3 exits; q = (0.5, 0.3, 0.2) -> 3 leave at exit 0, floor(1.8) = 1 at exit 1
    fit_conf = np.array([[5, 9, 0], [1, 2, 0], [4, 9, 0], [2, 7, 0], [3, 9, 0], [0, 1, 0]], float)
    thresholds = fit_thresholds(fit_conf, [0.5, 0.3, 0.2])
    # exit 0: videos 0, 2, 4 (conf 5, 4, 3) -> T0 = 3; exit 1 among 1, 3, 5 (2, 7, 1): video 3 -> T1 = 7
    np.testing.assert_array_equal(thresholds, [3, 7, -np.inf])
    # applied to another split
    eval_conf = np.array([[3.5, 0, 0], [1, 8, 0], [2.9, 7, 0], [0, 6.9, 5]], float)
    exits = apply_thresholds(eval_conf, thresholds)
    np.testing.assert_array_equal(exits, [0, 1, 1, 2])
    # labels 0; video 1 is wrong at exit 1, video 3 right at exit 2 -> 3 of 4 right
    preds = np.array([[0, 1, 1], [1, 1, 0], [1, 0, 1], [1, 1, 0]])
    evaluation = Split.make(two_class_logits(eval_conf, preds), np.zeros(4, int), "logit")
    fit = Split.make(two_class_logits(fit_conf, np.zeros((6, 3), int)), np.zeros(6, int), "logit")
    costs = exit_costs(2.0, 3)
    value, gflops, shares = evaluation.evaluate(thresholds, costs)
    assert value == pytest.approx(75.0)
    assert gflops == pytest.approx((2 + 4 + 4 + 6) / 4)
    np.testing.assert_allclose(shares, [0.25, 0.5, 0.25])
    point = curve(fit, evaluation, costs, ps=[1.0])[0]  # q = 1/3 each: 2 leave at exit 0, 2 at exit 1
    np.testing.assert_array_equal(point.thresholds, [4, 7, -np.inf])
    assert point.fit_gflops == pytest.approx((2 * 2 + 2 * 4 + 2 * 6) / 6)


def test_nobody_leaves_when_the_count_rounds_to_zero():
    thresholds = fit_thresholds(np.random.default_rng(0).normal(size=(5, 4)), [0.1, 0.1, 0.1, 0.7])
    np.testing.assert_array_equal(thresholds, [np.inf, np.inf, np.inf, -np.inf])


def test_proportions_costs_and_confidences():
    np.testing.assert_allclose(exit_proportions(2.0, 3), np.array([2, 4, 8]) / 14)
    np.testing.assert_allclose(exit_proportions(0.5, 2), [2 / 3, 1 / 3])
    np.testing.assert_allclose(exit_costs(1.5, 4), [1.5, 3, 4.5, 6])
    logits = np.array([[2.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(confidence(logits, "logit"), [2, 0])
    np.testing.assert_allclose(confidence(logits, "softmax"), [np.exp(2) / (np.exp(2) + 1), 0.5])
    p = np.exp(2) / (np.exp(2) + 1)
    np.testing.assert_allclose(confidence(logits, "entropy"), [p * np.log(p) + (1 - p) * np.log(1 - p), np.log(0.5)])
    with pytest.raises(ValueError):
        confidence(logits, "margin")


def random_split(n: int, e: int, k: int, seed: int, multi_label: bool = False) -> Split:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, e, k))
    logits[np.arange(n), :, labels] += np.linspace(0.2, 2.5, e)  # later exits are better
    if multi_label:
        labels = (rng.random((n, k)) < 0.2) | (np.arange(k) == labels[:, None])
    return Split.make(logits, labels.astype(np.int64))


def test_top1_table_and_map_agree_with_the_metrics_on_exited_logits():
    for multi_label in (False, True):
        split = random_split(200, 5, 6, seed=1, multi_label=multi_label)
        thresholds = fit_thresholds(split.conf, exit_proportions(1.3, 5))
        exits = apply_thresholds(split.conf, thresholds)
        expected = metric(exited_logits(split.logits, exits), split.labels)
        assert split.evaluate(thresholds, exit_costs(1.0, 5))[0] == pytest.approx(expected)
    assert metric(split.logits[:, -1], split.labels) == pytest.approx(mean_average_precision(split.logits[:, -1], split.labels))


def test_budget_solver_never_exceeds_the_budget():
    fit, evaluation = random_split(300, 8, 10, seed=2), random_split(250, 8, 10, seed=3)
    costs = exit_costs(1.7, 8)
    for budget in (1.8, 3.0, 5.5, 8.0, 11.0, 13.6, 20.0):
        best = best_under_budget(fit, evaluation, costs, budget)
        assert best is not None
        assert best.fit_gflops <= budget + 1e-9 and best.eval_gflops <= budget + 1e-9
        feasible = [p for p in curve(fit, evaluation, costs) + static_points(fit, evaluation, costs)
                    if max(p.fit_gflops, p.eval_gflops) <= budget]
        assert all(best.fit_metric >= p.fit_metric for p in feasible)
    assert best_under_budget(fit, evaluation, costs, 1.69) is None  # below one exit's cost


def test_holdout_split():
    fit, ev = holdout_split(10, 0.3, seed=1)
    assert len(fit) == 3 and len(ev) == 7 and sorted(np.concatenate([fit, ev]).tolist()) == list(range(10))


@pytest.fixture(scope="module")
def tsn_score_files(tmp_path_factory):
    """Score files from a real model's forward_exits: a tiny TSN (ResNet-18, 4 frames of 32 px)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model("tsn_r18", 3, num_segments=4).eval()
    folder = tmp_path_factory.mktemp("scores")
    paths = []
    for split, n in (("train", 24), ("val", 16)):
        with torch.no_grad():
            exits = model.forward_exits(torch.randn(n, 3, 4, 32, 32)).numpy()
        labels = np.random.default_rng(len(paths)).integers(0, 3, n)
        path = folder / f"{split}.pkl"
        write_scores(path, ScoreFile([f"v{i}" for i in range(n)], labels, exits[:, -1:], exit_logits=exits))
        paths.append(str(path))
    torch.set_num_threads(threads)
    return paths


def test_cli_end_to_end(tsn_score_files, tmp_path):
    fit, val = tsn_score_files
    out = tmp_path / "ee"
    result = runner.invoke(app, ["early-exit", "--fit-scores", fit, "--eval-scores", val, "--gflops-per-exit", "1.5",
                                 "--budget-gflops", "4.0", "--confidence", "logit", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "budget 4 GFLOPs" in result.output
    report = json.loads((out / "early_exit.json").read_text())
    assert len(report["curve"]) == 35 and len(report["static"]) == 4
    assert report["exit_gflops"] == [1.5, 3.0, 4.5, 6.0]
    best = report["best_under_budget"]
    assert best["eval_gflops"] <= 4.0 and best["fit_gflops"] <= 4.0
    rows = list(csv.DictReader((out / "early_exit.csv").open()))
    assert len(rows) == 39 and {"p", "eval_gflops", "eval_top1", "fit_gflops"} <= set(rows[0])
    assert (out / "early_exit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_measures_the_cost_and_holds_out_val(tsn_score_files, tmp_path):
    _, val = tsn_score_files
    out = tmp_path / "ee"
    result = runner.invoke(app, ["early-exit", "--eval-scores", val, "--holdout", "0.5", "--arch", "tsn_r18",
                                 "--crop-size", "112", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "early_exit.json").read_text())
    with torch.device("meta"):
        one_frame = measure_gmacs(create_model("tsn_r18", 3, num_segments=1), (1, 3, 1, 112, 112))
    assert report["gflops_per_exit"] == pytest.approx(one_frame, rel=1e-6)
    assert report["videos"] == {"fit": 8, "eval": 8}


def test_cli_rejects_scores_without_exits(tmp_path):
    path = tmp_path / "plain.pkl"
    write_scores(path, ScoreFile(["a", "b"], np.array([0, 1]), np.zeros((2, 1, 3))))
    result = runner.invoke(app, ["early-exit", "--eval-scores", str(path), "--gflops-per-exit", "1"])
    assert isinstance(result.exception, UserError) and "videorec test --exits" in str(result.exception)


@pytest.mark.parametrize("option, message", [("num_classes=4", "not a model option"),
                                             ("width=3", "-m width=3 does not apply to tsn_r18; it takes: consensus_type"),
                                             ("num_segments=7", "exits but")])
def test_cli_rejects_model_options_that_cannot_apply(tsn_score_files, tmp_path, option, message):
    _, val = tsn_score_files
    result = runner.invoke(app, ["early-exit", "--eval-scores", val, "--holdout", "0.5", "--arch", "tsn_r18",
                                 "-m", option, "-o", str(tmp_path / "ee")])
    assert isinstance(result.exception, UserError) and message in str(result.exception)
    assert not (tmp_path / "ee").exists()


def test_cli_cost_from_the_score_file_or_one_source_only(tsn_score_files, tmp_path):
    _, val = tsn_score_files  # written without a model record
    result = runner.invoke(app, ["early-exit", "--eval-scores", val, "-o", str(tmp_path / "ee")])
    assert isinstance(result.exception, UserError) and "does not say its model; give --arch or --gflops-per-exit" in str(
        result.exception)
    both = runner.invoke(app, ["early-exit", "--eval-scores", val, "--gflops-per-exit", "1", "--arch", "tsn_r18"])
    assert both.exit_code == 2 and "drop --arch/--crop-size/-m" in both.output
    assert not (tmp_path / "ee").exists()
