"""The no-harm panel: fixed-noise evaluation, resumable runs, paired statistics."""

import csv
import random

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO

from sb3_influence.benchmark import panel
from sb3_influence.benchmark.evaluation import evaluate_fixed
from sb3_influence.benchmark.panel import (
    PANEL_COLUMNS,
    PanelTask,
    make_env,
    plot_panel,
    read_panel,
    run_panel,
    summarize_panel,
)
from sb3_influence.benchmark.runner import STOP_FILE
from sb3_influence.benchmark.stats import paired_difference

TINY = PanelTask(
    "tiny",
    "identity-discrete",
    "Discrete",
    128,
    2,
    dict(n_envs=2, n_steps=32, batch_size=32, n_epochs=1, policy_kwargs=dict(net_arch=[8])),
)


def test_evaluate_fixed_is_a_fixed_test_set():
    task = panel.TASKS["identity-box"]
    model = PPO("MlpPolicy", make_env(task, 1, 0), n_steps=64, batch_size=32, seed=0)
    env = make_env(task, 1, 5)
    np.random.seed(3)
    th.manual_seed(3)
    random.seed(3)
    before = (np.random.rand(), th.rand(1).item(), random.random())
    np.random.seed(3)
    th.manual_seed(3)
    random.seed(3)
    first = evaluate_fixed(model, env, 2, seed=7)
    second = evaluate_fixed(model, env, 2, seed=7)
    assert first == second  # same policy, same episodes and noise
    assert (np.random.rand(), th.rand(1).item(), random.random()) == before  # the global RNGs are restored


def test_run_panel_resumes_and_keeps_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(panel.TASKS, "tiny", TINY)
    (path,) = run_panel(["tiny"], ["ppo", "influence_ppo"], [0], tmp_path)
    curves = read_panel(path)
    assert set(curves) == {"ppo", "influence_ppo"}
    assert curves["ppo"][0].shape == (3,)  # the initial policy and 2 updates
    with open(path) as file:
        header = next(line for line in file if not line.startswith("#"))
    assert header.strip().split(",") == list(PANEL_COLUMNS)
    before = path.read_text()
    run_panel(["tiny"], ["ppo", "influence_ppo"], [0], tmp_path)  # complete: nothing runs, nothing changes
    assert path.read_text() == before
    assert "already" in capsys.readouterr().out
    run_panel(["tiny"], ["ppo", "influence_ppo"], [0, 1], tmp_path)  # one more seed: only its runs are added
    curves_after = read_panel(path)
    assert sorted(curves_after["ppo"]) == [0, 1]
    np.testing.assert_array_equal(curves_after["ppo"][0], curves["ppo"][0])
    with pytest.raises(ValueError, match="Unknown panel task"):
        run_panel(["nope"], ["ppo"], [0], tmp_path)


def test_run_panel_stop_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(panel.TASKS, "tiny", TINY)
    (tmp_path / STOP_FILE).touch()
    assert run_panel(["tiny"], ["ppo"], [0], tmp_path) == []
    assert f"a {STOP_FILE} file exists" in capsys.readouterr().out
    assert not (tmp_path / "tiny.csv").exists()
    (tmp_path / STOP_FILE).unlink()
    assert run_panel(["tiny"], ["ppo"], [0], tmp_path) == [tmp_path / "tiny.csv"]  # resumes
    (tmp_path / STOP_FILE).touch()  # a complete task is still listed
    assert run_panel(["tiny"], ["ppo"], [0], tmp_path) == [tmp_path / "tiny.csv"]


def _write_panel(path, curves):
    with open(path, "w", newline="") as file:
        file.write("# task: synthetic\n")
        writer = csv.DictWriter(file, fieldnames=PANEL_COLUMNS)
        writer.writeheader()
        for variant, by_seed in curves.items():
            for seed, curve in by_seed.items():
                for iteration, value in enumerate(curve):
                    writer.writerow(
                        dict(
                            task="t",
                            variant=variant,
                            seed=seed,
                            iteration=iteration,
                            timesteps=iteration,
                            eval_mean=value,
                            kept_fraction=1,
                        )
                    )


def test_summarize_panel_pairs_by_seed(tmp_path):
    rng = np.random.default_rng(0)
    base = {seed: np.concatenate([[0.0], rng.uniform(0, 1, 5)]) for seed in range(8)}
    better = {seed: curve + 0.5 for seed, curve in base.items()}
    _write_panel(tmp_path / "a.csv", {"ppo": base, "iif": better})
    _write_panel(tmp_path / "b.csv", {"ppo": base, "iif": base})
    table = summarize_panel(tmp_path)
    row_a = next(line for line in table.splitlines() if line.startswith("| a | iif"))
    assert "+0.5 [+0.5, +0.5]" in row_a  # a constant paired difference has a point interval
    assert "| 1.00 [1.00, 1.00] |" in row_a  # better on every seed
    row_b = next(line for line in table.splitlines() if line.startswith("| b | iif"))
    assert row_b.endswith("|") and "| 0.50 [" in row_b  # a tie (rliable resamples each method: a wide interval around it)
    assert "IQM" in table
    assert plot_panel(tmp_path, tmp_path / "curves.png").stat().st_size > 0


def test_paired_difference_interval_covers_the_mean():
    rng = np.random.default_rng(1)
    baseline = rng.normal(size=20)
    variant = baseline + rng.normal(1.0, 0.5, size=20)
    diff = paired_difference(variant, baseline)
    assert diff.low < diff.mean < diff.high and diff.n == 20
    assert diff.low > 0  # a clear improvement


@pytest.mark.parametrize("parent", ["a2c", "ppo_mask", "ppo_lstm"])
def test_other_algorithms_against_their_parent(tmp_path, monkeypatch, parent):
    """A task of another algorithm runs its parent and its IIF twin by default, and refuses PPO."""
    real = {"a2c": "a2c-cartpole", "ppo_mask": "maskable-identity", "ppo_lstm": "recurrent-cartpole"}[parent]
    source = panel.TASKS[real]
    kwargs = dict(n_envs=2, n_steps=16) if parent == "a2c" else dict(n_envs=2, n_steps=32, batch_size=32, n_epochs=1)
    if parent == "ppo_lstm":
        kwargs["policy_kwargs"] = {"lstm_hidden_size": 8}
    budget = 128 if parent == "a2c" else 256  # 4 updates
    task = PanelTask("tiny-other", source.env, source.action_space, budget, 1, kwargs, parent, source.policy, eval_every=2)
    monkeypatch.setitem(panel.TASKS, "tiny-other", task)
    (path,) = run_panel(["tiny-other"], None, [0], tmp_path)
    curves = read_panel(path)
    assert set(curves) == set(task.variants) and task.variants[0] == parent
    assert curves[parent][0].shape == (3,)  # the start, then every 2nd of 4 updates
    assert "| tiny-other |" in summarize_panel(tmp_path)
    with pytest.raises(ValueError, match="IIF twin"):
        run_panel(["tiny-other"], ["ppo", "influence_ppo"], [1], tmp_path)
