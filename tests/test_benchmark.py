"""Tests of the benchmark runner and summaries (sb3_influence.benchmark)."""

from pathlib import Path

import numpy as np
import pytest
import torch as th

from sb3_influence.benchmark.metrics import aggregate, compute_metrics, first_reach, rt_peak, se_band
from sb3_influence.benchmark.plots import (
    cumulative_seconds,
    markdown_table,
    paired_table,
    plot_all,
    plot_env,
    summarize,
    summarize_env,
)
from sb3_influence.benchmark.runner import (
    COLUMNS,
    STOP_FILE,
    build_model,
    finite_mean,
    load_hyperparams,
    parse_algo_spec,
    read_run_csv,
    resolve_config,
    run_main,
    write_run_csv,
)

TINY = ["--set", "n_envs=1", "n_steps=64", "batch_size=32", "n_epochs=2", "--n-timesteps", "128", "--eval-episodes", "2"]


def test_parse_algo_spec() -> None:
    plain = parse_algo_spec("ppo")
    assert (plain.algo, plain.overrides, plain.label) == ("ppo", {}, "ppo")
    random_mode = parse_algo_spec("influence_ppo:filter_mode=random")
    assert random_mode.algo == "influence_ppo"
    assert random_mode.overrides == {"filter_mode": "random"}
    assert random_mode.label == "influence_ppo:filter_mode=random"
    both = parse_algo_spec("influence_ppo: filter_fraction=1.0, filter_mode=all")
    assert both.overrides == {"filter_fraction": 1.0, "filter_mode": "all"}
    assert isinstance(both.overrides["filter_fraction"], float)
    assert both.label == "influence_ppo:filter_fraction=1.0,filter_mode=all"
    assert ":" not in both.slug and "," not in both.slug
    with pytest.raises(ValueError, match="Unknown algorithm"):
        parse_algo_spec("a2c")
    with pytest.raises(ValueError, match="key=value"):
        parse_algo_spec("influence_ppo:filter_fraction")


def test_pairing_gives_equal_initial_parameters() -> None:
    for env_id in ("CartPole-v1", "FrozenLake-v1"):
        models = {
            algo: build_model(algo, env_id, load_hyperparams(resolve_config(algo), env_id), seed=3)
            for algo in ("ppo", "influence_ppo")
        }
        ppo, iif = models["ppo"].policy.state_dict(), models["influence_ppo"].policy.state_dict()
        assert ppo.keys() == iif.keys()
        for key in ppo:
            assert th.equal(ppo[key], iif[key]), key
        other = build_model("ppo", env_id, load_hyperparams(resolve_config("ppo"), env_id), seed=4).policy.state_dict()
        assert any(not th.equal(ppo[key], other[key]) for key in ppo)


def test_tiny_end_to_end_run(tmp_path: Path) -> None:
    out = tmp_path / "CartPole-v1"
    argv = ["--env", "CartPole-v1", "--seeds", "0", "--out", str(out), "--no-progress", *TINY]
    variants = ["ppo", "influence_ppo", "influence_ppo:filter_mode=random", "influence_ppo:filter_mode=reliability"]
    paths = run_main([*argv, "--algos", *variants])
    assert sorted(p.name for p in paths) == [
        "influence_ppo__filter_mode=random_seed0.csv",
        "influence_ppo__filter_mode=reliability_seed0.csv",
        "influence_ppo_seed0.csv",
        "ppo_seed0.csv",
    ]
    iif = read_run_csv(out / "influence_ppo_seed0.csv")
    for key in ("env", "algo", "seed", "hyperparameters", "sb3_influence", "stable_baselines3", "torch", "gymnasium"):
        assert key in iif.metadata
    for key in ("numpy", "python", "command", "hostname", "cpu"):
        assert key in iif.metadata
    assert iif.metadata["env"] == "CartPole-v1" and iif.metadata["algo"] == "influence_ppo"
    assert '"n_steps": 64' in iif.metadata["hyperparameters"]
    assert '"filter_fraction": 0.5' in iif.metadata["hyperparameters"]
    assert tuple(iif.columns) == COLUMNS
    np.testing.assert_array_equal(iif.columns["iteration"], [0, 1, 2])
    np.testing.assert_array_equal(iif.columns["timesteps"], [0, 64, 128])
    assert np.all(iif.columns["collect_s"][1:] > 0) and np.all(iif.columns["update_s"][1:] > 0)
    assert np.all(iif.columns["score_s"][1:] > 0)
    assert np.all((iif.columns["kept_fraction"] > 0) & (iif.columns["kept_fraction"] <= 1))
    ppo = read_run_csv(out / "ppo_seed0.csv")
    assert np.all(ppo.columns["score_s"] == 0) and np.all(ppo.columns["n_dropped"] == 0)
    assert np.all(np.isnan(ppo.columns["reliability"])) and np.all(np.isnan(iif.columns["reliability"]))  # fixed p
    crossfit = read_run_csv(out / "influence_ppo__filter_mode=reliability_seed0.csv")
    assert np.isnan(crossfit.columns["reliability"][0]) and np.all(np.isfinite(crossfit.columns["reliability"][1:]))
    # the outcome gate's share per row: 0 for PPO and the fixed-p modes, a share of iterations for the cross-fitted rule
    assert np.all(ppo.columns["gated"] == 0) and np.all(iif.columns["gated"] == 0)
    assert np.all((crossfit.columns["gated"] >= 0) & (crossfit.columns["gated"] <= 1))
    random_run = read_run_csv(out / "influence_ppo__filter_mode=random_seed0.csv")
    assert '"filter_mode": "random"' in random_run.metadata["hyperparameters"]
    # The summary pairs both variants with PPO, and the plots are written.
    summaries = summarize_env(out)
    assert [s.variant for s in summaries] == ["influence_ppo", *variants[2:]]
    assert plot_env(out, tmp_path / "env.png").stat().st_size > 0
    assert plot_all([out, out], tmp_path / "all.png").stat().st_size > 0
    # Run again with one more seed: the existing CSVs are kept as they are, only the new seed runs.
    before = (out / "ppo_seed0.csv").read_text()
    again = run_main([*argv[:3], "0", "1", *argv[4:], "--algos", "ppo", "--eval-seed", "5"])
    assert [p.name for p in again] == ["ppo_seed1.csv"]
    assert read_run_csv(again[0]).metadata["eval_seed"] == "5"
    assert read_run_csv(out / "ppo_seed0.csv").metadata["eval_seed"] == "fresh noise"
    assert (out / "ppo_seed0.csv").read_text() == before
    assert not list(out.glob("*.partial"))


def test_eval_every(tmp_path: Path) -> None:
    out = tmp_path / "CartPole-v1"
    tiny = [*TINY[:-4], "--n-timesteps", "256", "--eval-episodes", "2"]  # 4 iterations of 64 steps
    argv = ["--env", "CartPole-v1", "--seeds", "0", "--out", str(out), "--no-progress", *tiny]
    with pytest.raises(ValueError, match="does not divide the run's 4 iterations"):
        run_main([*argv, "--algos", "ppo", "--eval-every", "3"])
    with pytest.raises(ValueError, match="--eval-every must be at least 1"):
        run_main([*argv, "--algos", "ppo", "--eval-every", "0"])
    assert not out.exists() or not list(out.glob("*.csv"))
    paths = run_main([*argv, "--algos", "ppo", "influence_ppo", "--eval-every", "2"])
    assert len(paths) == 2
    iif = read_run_csv(out / "influence_ppo_seed0.csv")
    assert iif.metadata["eval_every"] == "2"
    np.testing.assert_array_equal(iif.columns["iteration"], [0, 2, 4])
    np.testing.assert_array_equal(iif.columns["timesteps"], [0, 128, 256])
    assert np.all(iif.columns["update_s"][1:] > 0) and np.all(iif.columns["score_s"][1:] > 0)
    # each row holds per-iteration means over two iterations, so the cumulative time counts each row twice
    per_iteration = iif.columns["collect_s"] + iif.columns["score_s"] + iif.columns["update_s"]
    np.testing.assert_allclose(cumulative_seconds(iif), 2 * np.cumsum(per_iteration[1:]))
    (summary,) = summarize_env(out)
    assert summary.iterations == 4 and summary.timesteps == 256
    # a variant evaluated on another grid cannot be paired with the baseline
    run_main([*argv, "--algos", "influence_ppo:filter_mode=random"])
    with pytest.raises(ValueError, match="different grids"):
        summarize_env(out)


def test_max_runs_and_stop_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "CartPole-v1"
    argv = ["--env", "CartPole-v1", "--seeds", "0", "1", "2", "--out", str(out), "--no-progress", *TINY, "--algos", "ppo"]
    with pytest.raises(ValueError, match=r"max_runs \(--max-runs\) must be at least 0, not -1"):
        run_main([*argv, "--max-runs", "-1"])
    assert [p.name for p in run_main([*argv, "--max-runs", "1"])] == ["ppo_seed0.csv"]
    assert "2 runs not started" in capsys.readouterr().out
    (out / STOP_FILE).touch()
    assert run_main(argv) == []
    assert f"a {STOP_FILE} file exists" in capsys.readouterr().out
    (out / STOP_FILE).unlink()
    # in worker processes too: at most --jobs runs are handed out at a time, and the sweep resumes
    assert [p.name for p in run_main([*argv, "--jobs", "2", "--max-runs", "1"])] == ["ppo_seed1.csv"]
    assert [p.name for p in run_main(argv)] == ["ppo_seed2.csv"]
    assert sorted(p.name for p in out.glob("*.csv")) == ["ppo_seed0.csv", "ppo_seed1.csv", "ppo_seed2.csv"]


def test_finite_mean() -> None:
    assert finite_mean([1.0, 3.0]) == 2.0
    assert finite_mean([1.0, np.nan, 3.0]) == 2.0
    assert np.isnan(finite_mean([np.nan, np.nan]))
    assert finite_mean([1.0, 4.0], weights=[2, 1]) == 2.0
    assert finite_mean([1.0, np.nan, 4.0], weights=[2, 5, 1]) == 2.0  # the NaN's weight goes with it


def _rows(curve: list[float], seconds: list[float], score: float) -> list[dict[str, float]]:
    rows = [
        dict(
            iteration=0,
            timesteps=0,
            eval_mean=-99.0,
            eval_std=0.0,
            collect_s=0,
            score_s=0,
            update_s=0,
            n_dropped=0,
            kept_fraction=1,
        )
    ]
    for i, (value, sec) in enumerate(zip(curve, seconds, strict=True), start=1):
        rows.append(
            dict(
                iteration=i,
                timesteps=64 * i,
                eval_mean=value,
                eval_std=0.0,
                collect_s=sec / 2,
                score_s=score,
                update_s=sec / 2 - score,
                n_dropped=0,
                kept_fraction=1.0,
            )
        )
    return rows


def test_summarize_matches_metrics(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    expected, expected_rt = [], []
    for seed in range(3):
        ppo_curve = list(np.cumsum(rng.random(8)))
        iif_curve = list(np.cumsum(rng.random(8)) * 1.3)
        ppo_sec, iif_sec = list(1 + rng.random(8)), list(0.5 + rng.random(8))
        write_run_csv(
            tmp_path / f"ppo_seed{seed}.csv", {"env": "Toy-v0", "algo": "ppo", "seed": seed}, _rows(ppo_curve, ppo_sec, 0)
        )
        write_run_csv(
            tmp_path / f"influence_ppo_seed{seed}.csv",
            {"env": "Toy-v0", "algo": "influence_ppo", "seed": seed},
            _rows(iif_curve, iif_sec, 0.01),
        )
        # What was written, as read back (values are written with 6 significant digits).
        ppo_run, iif_run = (
            read_run_csv(tmp_path / f"ppo_seed{seed}.csv"),
            read_run_csv(tmp_path / f"influence_ppo_seed{seed}.csv"),
        )
        seconds = [
            np.cumsum(r.columns["collect_s"][1:] + r.columns["score_s"][1:] + r.columns["update_s"][1:])
            for r in (ppo_run, iif_run)
        ]
        expected.append(compute_metrics(ppo_run.columns["eval_mean"][1:], iif_run.columns["eval_mean"][1:], *seconds))
        ppo_c = ppo_run.columns["eval_mean"][1:]
        m = first_reach(ppo_c, ppo_c.max())
        assert m is not None
        expected_rt.append(rt_peak(ppo_c[:m], iif_run.columns["eval_mean"][1:], seconds[1], seconds[0][:m]))
    (summary,) = summarize_env(tmp_path)
    assert summary.variant == "influence_ppo" and summary.seeds == [0, 1, 2] and summary.env == "Toy-v0"
    for seed, metrics in enumerate(expected):
        assert summary.per_seed[seed] == metrics
    assert summary.se_ave == aggregate([m.se_ave for m in expected])
    assert summary.se_peak == aggregate([m.se_peak for m in expected])
    assert summary.rt_peak == aggregate([float(m.rt_peak) for m in expected])  # type: ignore[arg-type]
    assert summary.rt_to_ppo_peak == aggregate(expected_rt)
    mids = [
        se_band(
            read_run_csv(tmp_path / f"ppo_seed{seed}.csv").columns["eval_mean"][1:],
            read_run_csv(tmp_path / f"influence_ppo_seed{seed}.csv").columns["eval_mean"][1:],
        )
        for seed in range(3)
    ]
    assert summary.se_mid == aggregate(mids)
    assert summary.iterations == 8 and summary.timesteps == 8 * 64
    assert summary.score_s == pytest.approx(0.01)
    medians = [100 * np.median([getattr(m, name) for m in expected]) for name in ("se_ave", "se_peak", "rt_peak")]
    per_seed_line = markdown_table([summary]).splitlines()[-1]
    assert per_seed_line.endswith("; median: " + " / ".join(f"{value:.1f}" for value in medians))


def test_paired_table_and_legend(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    diffs = []
    for seed in range(4):
        ppo_curve, iif_curve = list(rng.random(6)), list(rng.random(6) + 0.5)
        for algo, values in (("ppo", ppo_curve), ("influence_ppo", iif_curve)):
            meta = {"env": "Toy-v0", "algo": algo, "seed": seed}
            write_run_csv(tmp_path / f"{algo}_seed{seed}.csv", meta, _rows(values, [1.0] * 6, 0.0))
        runs = [
            read_run_csv(tmp_path / f"{algo}_seed{seed}.csv").columns["eval_mean"][1:] for algo in ("influence_ppo", "ppo")
        ]
        diffs.append(runs[0].mean() - runs[1].mean())
    table = paired_table([tmp_path])
    row = next(line for line in table.splitlines() if line.startswith(f"| {tmp_path.name} | influence_ppo |"))
    assert row.split("|")[4].strip().startswith(f"{np.mean(diffs):+.4g} [")
    assert "P(variant > PPO)" in table
    text = summarize([tmp_path])
    assert "SE_ave: the mean sample-efficiency gain" in text and "ΔAUC" in text
