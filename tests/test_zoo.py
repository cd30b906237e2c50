"""rl-zoo3 integration: the launcher, the configs, hyperparameter search and writing its results back."""

import glob
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch as th
import yaml
from rl_zoo3 import hyperparams_opt, utils
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO

from sb3_influence import InfluencePPO, MiniGridCNN
from sb3_influence.configs import config_dir, config_path
from sb3_influence.registry import get_algo, influence_algos
from sb3_influence.zoo import (
    ALGO_NAME,
    FILTER_FRACTIONS,
    FILTER_MODES,
    best_params,
    main,
    merge_policy_kwargs,
    register,
    sample_influence_ppo_params,
    trial_hyperparams,
    write_entry,
)
from sb3_influence.zoo.plugin import _KeepConfigPolicyKwargs

CONFIGS = ("influence_ppo.yml", "ppo.yml", "influence_ppo_adam.yml", "ppo_adam.yml")
ALGO_OF = {name: name.removesuffix("_adam.yml").removesuffix(".yml") for name in CONFIGS}
# The paper's setup (docs/metrics.md): iterations and p per environment.
PAPER = {
    "FrozenLake-v1": (50, 0.5),
    "MiniGrid-Empty-8x8-v0": (40, 0.125),
    "Acrobot-v1": (50, 0.5),
    "highway-v0": (100, 0.5),
    "LunarLander-v3": (150, 0.125),
    "BipedalWalker-v3": (500, 0.0625),
}
# Tiny budgets: a few hundred steps (highway runs at about 70 steps/s).
TINY = {"highway-v0": ("-n", "48", "-params", "n_steps:48", "batch_size:16", "n_epochs:2")}
DEFAULT_TINY = ("-n", "256", "-params", "n_steps:128", "batch_size:64", "n_epochs:2")
FILTER_KEYS = {
    "filter_fraction",
    "filter_mode",
    "influence_preconditioner",
    "influence_chunk_size",
    "influence_objective",
    "callback",  # InfluenceDiagnosticsCallback: IIF entries only
}


def load_config(name: str) -> dict:
    with open(config_dir() / name) as file:
        return yaml.safe_load(file)


def config_cases() -> list:
    return [pytest.param(name, env_id, id=f"{name[:-4]}-{env_id}") for name in CONFIGS for env_id in load_config(name)]


def train_args(folder: Path, algo: str, env_id: str, *extra: str) -> list[str]:
    budget = TINY.get(env_id, DEFAULT_TINY)
    return ["train", "--algo", algo, "--env", env_id, "-f", str(folder), "--seed", "0", "--eval-freq", "-1", *budget, *extra]


def test_configs_packaged():
    assert config_path("influence_ppo") == config_dir() / "influence_ppo.yml"
    assert config_path("ppo_adam.yml") == config_dir() / "ppo_adam.yml"
    assert config_path("dqn") is None
    assert config_path("../pyproject.toml") is None
    for name in CONFIGS:
        assert config_path(name) is not None


#: The configs of the other IIF algorithms and their baseline twins, with tiny training flags.
OTHER_PAIRS = {
    "influence_a2c": ("a2c", ("-n", "160", "-params", "n_steps:5")),
    "influence_maskable_ppo": ("ppo_mask", DEFAULT_TINY),
    "influence_recurrent_ppo": ("ppo_lstm", ("-n", "256", "-params", "n_steps:16", "batch_size:64", "n_epochs:2")),
}


@pytest.mark.parametrize(
    "iif, baseline",
    [("influence_ppo.yml", "ppo.yml"), ("influence_ppo_adam.yml", "ppo_adam.yml")]
    + [(f"{iif}.yml", f"{base}.yml") for iif, (base, _) in OTHER_PAIRS.items()],
)
def test_baseline_differs_only_by_filtering(iif: str, baseline: str):
    iif_config, baseline_config = load_config(iif), load_config(baseline)
    assert list(iif_config) == list(baseline_config)
    for env_id, entry in iif_config.items():
        assert {key: value for key, value in entry.items() if key not in FILTER_KEYS} == baseline_config[env_id]


@pytest.mark.parametrize("env_id", list(PAPER))
def test_paper_settings(env_id: str):
    iterations, fraction = PAPER[env_id]
    entry = load_config("influence_ppo.yml")[env_id]
    assert entry["n_timesteps"] == iterations * 2048
    assert entry["filter_fraction"] == fraction and entry["filter_mode"] == "negative"
    expected = dict(n_envs=1, n_steps=2048, batch_size=64, n_epochs=10, gamma=0.99, gae_lambda=0.95, clip_range=0.2)
    assert {key: entry[key] for key in expected} == expected
    assert entry["ent_coef"] == 0.0 and entry["vf_coef"] == 0.5 and entry["max_grad_norm"] >= 1e9
    adam = env_id == "BipedalWalker-v3"
    assert ("th.optim.SGD" in entry["policy_kwargs"]) != adam
    assert entry["learning_rate"] == (3e-4 if adam else 5e-3)
    adam_variant = load_config("influence_ppo_adam.yml")["LunarLander-v3"]
    assert adam_variant["learning_rate"] == 1e-3 and "SGD" not in adam_variant["policy_kwargs"]


@pytest.mark.parametrize("name, env_id", config_cases())
def test_train(tmp_path: Path, name: str, env_id: str):
    algo = ALGO_OF[name]
    main(train_args(tmp_path, algo, env_id, "-conf", name))  # a bare packaged name works as -conf
    entry = load_config(name)[env_id]
    (run,) = glob.glob(str(tmp_path / algo / f"{env_id}_1"))
    model = (InfluencePPO if algo == ALGO_NAME else PPO).load(os.path.join(run, f"{env_id}.zip"), device="cpu")
    assert type(model) is (InfluencePPO if algo == ALGO_NAME else PPO)
    assert model.num_timesteps > 0
    if algo == ALGO_NAME:
        assert model.filter_fraction == entry["filter_fraction"]
    assert model.policy.optimizer.__class__ is (th.optim.SGD if "SGD" in entry.get("policy_kwargs", "") else th.optim.Adam)
    if "SGD" in entry.get("policy_kwargs", ""):
        assert model.policy.optimizer.defaults["momentum"] == 0 and model.policy.optimizer.defaults["lr"] == 5e-3
        assert model.max_grad_norm >= 1e9
    if env_id.startswith("MiniGrid"):
        assert isinstance(model.policy.features_extractor, MiniGridCNN)
        assert model.observation_space.shape == (3, 7, 7)
    saved = yaml.unsafe_load((Path(run) / env_id / "config.yml").read_text())
    assert dict(saved)["n_timesteps"] == entry["n_timesteps"]


@pytest.mark.parametrize("iif", sorted(OTHER_PAIRS))
@pytest.mark.parametrize("baseline", [False, True])
def test_train_other_algorithms(tmp_path: Path, iif: str, baseline: bool):
    base, tiny = OTHER_PAIRS[iif]
    algo = base if baseline else iif
    (env_id,) = load_config(f"{algo}.yml")
    main(["train", "--algo", algo, "--env", env_id, "-f", str(tmp_path), "--seed", "0", "--eval-freq", "-1", *tiny])
    (run,) = glob.glob(str(tmp_path / algo / f"{env_id.replace('/', '-')}_1"))
    (zip_path,) = glob.glob(os.path.join(run, "*.zip"))
    cls = get_algo(algo).load()
    model = cls.load(zip_path, device="cpu")
    assert type(model) is cls and model.num_timesteps > 0
    if not baseline:
        assert model.filter_mode == "adaptive"


def test_default_config_and_missing_env(tmp_path: Path, capsys: pytest.CaptureFixture):
    # Without -conf the packaged config of the algorithm is used.
    main(["train", "--algo", ALGO_NAME, "--env", "CartPole-v1", "-n", "64", "-params", "n_steps:32", "-f", str(tmp_path)])
    assert f"Loading hyperparameters from: {config_path(ALGO_NAME)}" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"No hyperparameters for influence_ppo on 'Pendulum-v1'.*CartPole-v1.*-conf"):
        main(["train", "--algo", ALGO_NAME, "--env", "Pendulum-v1", "-f", str(tmp_path)])
    with pytest.raises(ValueError, match="LunarLander-v3"):
        main(["train", "--algo", "ppo", "--env", "CartPole-v1", "-conf", "ppo_adam", "-f", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["fly"])


@pytest.mark.parametrize("env_id", ["CartPole-v1", "MiniGrid-Empty-8x8-v0"])
def test_enjoy_and_continue(tmp_path: Path, env_id: str):
    main(train_args(tmp_path, ALGO_NAME, env_id))
    main(["enjoy", "--algo", ALGO_NAME, "--env", env_id, "-f", str(tmp_path), "--no-render", "-n", "64", "--device", "cpu"])
    # -i continues training from the saved agent (new run folder, same hyperparameters and class).
    trained = tmp_path / ALGO_NAME / f"{env_id}_1" / f"{env_id}.zip"
    main(train_args(tmp_path, ALGO_NAME, env_id, "-i", str(trained)))
    model = InfluencePPO.load(tmp_path / ALGO_NAME / f"{env_id}_2" / f"{env_id}.zip", device="cpu")
    assert model.filter_fraction == load_config("influence_ppo.yml")[env_id]["filter_fraction"]
    before = InfluencePPO.load(trained, device="cpu")
    assert not all(th.equal(a, b) for a, b in zip(model.policy.parameters(), before.policy.parameters(), strict=True))


def test_record_video(tmp_path: Path):
    pytest.importorskip("moviepy")
    main(train_args(tmp_path, ALGO_NAME, "CartPole-v1"))
    main(["record_video", "--algo", ALGO_NAME, "--env", "CartPole-v1", "-f", str(tmp_path), "-n", "20", "-o", f"{tmp_path}/v"])
    assert glob.glob(str(tmp_path / "v" / "*.mp4"))


def optimize_args(folder: Path, *extra: str) -> list[str]:
    budget = ["-n", "256", "--n-evaluations", "1", "--eval-episodes", "1", "--no-optim-plots", "--sampler", "random"]
    return ["train", "--algo", ALGO_NAME, "--env", "CartPole-v1", "-optimize", "-f", str(folder), *budget, *extra]


def test_optimize_and_write_back(tmp_path: Path):
    main(optimize_args(tmp_path, "--n-trials", "2", "--seed", "3"))
    (report,) = glob.glob(str(tmp_path / ALGO_NAME / "report_CartPole-v1_*.pkl"))
    entry = best_params(report, "CartPole-v1")
    assert entry["filter_fraction"] in FILTER_FRACTIONS and entry["filter_mode"] in ("negative", "all")
    assert entry["n_timesteps"] == load_config("influence_ppo.yml")["CartPole-v1"]["n_timesteps"]  # kept from the config
    # Write it into a copy of the config (other entries and comments stay) and train from it.
    tuned = tmp_path / "tuned.yml"
    tuned.write_text((config_dir() / "influence_ppo.yml").read_text())
    main(["best-params", report, "--env", "CartPole-v1", "-o", str(tuned)])
    text = tuned.read_text()
    assert "# Quick smoke" in text
    assert yaml.safe_load(text)["LunarLander-v3"] == load_config("influence_ppo.yml")["LunarLander-v3"]
    assert yaml.safe_load(text)["CartPole-v1"] == entry
    main(["train", "--algo", ALGO_NAME, "--env", "CartPole-v1", "-conf", str(tuned), "-f", str(tmp_path / "t"), "-n", "64"])
    model = InfluencePPO.load(tmp_path / "t" / ALGO_NAME / "CartPole-v1_1" / "CartPole-v1.zip", device="cpu")
    assert model.filter_fraction == entry["filter_fraction"] and model.n_steps == entry["n_steps"]


def test_optimize_storage_processes(tmp_path: Path):
    # Two processes share one study through an Optuna RDB storage (SQLite here; PostgreSQL across machines).
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sb3_influence.zoo",
                *optimize_args(tmp_path / f"w{seed}", "--n-trials", "1", "--seed", str(seed), "--num-threads", "1"),
                *("--storage", storage, "--study-name", "cartpole"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in (2, 6)  # cheap first trials (random sampler seeded with --seed)
    ]
    for worker in workers:
        output, _ = worker.communicate(timeout=150)
        assert worker.returncode == 0, output[-3000:]
    study = optuna.load_study(study_name="cartpole", storage=storage)
    assert len(study.get_trials(states=[optuna.trial.TrialState.COMPLETE])) == 2
    entry = best_params(storage, "CartPole-v1")  # the only study in the storage: no name needed
    assert entry["filter_fraction"] == study.best_trial.params["filter_fraction"]
    # The zoo can also train straight from a trial of the study; the config's policy_kwargs keys are kept.
    args = ["--algo", ALGO_NAME, "--env", "FrozenLake-v1", "-f", str(tmp_path / "t"), "-n", "64", "--eval-freq", "-1"]
    main(["train", *args, "-params", "n_steps:64", "--storage", storage, "--study-name", "cartpole", "--trial-id", "1"])
    model = InfluencePPO.load(tmp_path / "t" / ALGO_NAME / "FrozenLake-v1_1" / "FrozenLake-v1.zip", device="cpu")
    assert isinstance(model.policy.optimizer, th.optim.SGD)
    assert model.filter_fraction == study.trials[1].params["filter_fraction"]


def test_sampler_keeps_config_policy_kwargs():
    register()
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER

    from sb3_influence.zoo.plugin import _CONFIG_POLICY_KWARGS

    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    token = _CONFIG_POLICY_KWARGS.set({"optimizer_class": th.optim.SGD, "features_extractor_class": MiniGridCNN})
    try:
        params = HYPERPARAMS_SAMPLER[ALGO_NAME](trial, 0, 1, {})
    finally:
        _CONFIG_POLICY_KWARGS.reset(token)
    assert params["policy_kwargs"]["optimizer_class"] is th.optim.SGD
    assert params["policy_kwargs"]["features_extractor_class"] is MiniGridCNN
    assert set(params["policy_kwargs"]) >= {"net_arch", "activation_fn"}
    assert params["filter_fraction"] in FILTER_FRACTIONS


def test_merge_policy_kwargs():
    base = "dict(optimizer_class=th.optim.SGD, net_arch=dict(pi=[64, 64], vf=[64, 64]))"
    merged = merge_policy_kwargs(base, {"net_arch": {"pi": [64], "vf": [64]}, "activation_fn": th.nn.ReLU})
    assert merged == "dict(optimizer_class=th.optim.SGD, net_arch={'pi': [64], 'vf': [64]}, activation_fn=nn.ReLU)"
    scope = {"th": th, "nn": th.nn, "importlib": __import__("importlib")}
    extractor = eval(merge_policy_kwargs(None, {"features_extractor_class": MiniGridCNN}), scope)["features_extractor_class"]
    assert extractor is MiniGridCNN
    assert eval(merge_policy_kwargs("{'ortho_init': False}", {"activation_fn": th.nn.Tanh}), scope) == {
        "ortho_init": False,
        "activation_fn": th.nn.Tanh,
    }
    params = {
        "batch_size_pow": 5,
        "n_steps_pow": 6,
        "one_minus_gamma": 0.01,
        "one_minus_gae_lambda": 0.05,
        "learning_rate": 1e-3,
        "ent_coef": 1e-4,
        "clip_range": 0.2,
        "n_epochs": 5,
        "max_grad_norm": 0.5,
        "net_arch": "tiny",
        "activation_fn": "tanh",
        "filter_fraction": 0.25,
        "filter_mode": "all",
    }
    entry = trial_hyperparams(params, ALGO_NAME, base)
    assert entry["batch_size"] == 32 and entry["n_steps"] == 64 and np.isclose(entry["gamma"], 0.99)
    assert entry["filter_fraction"] == 0.25 and entry["policy_kwargs"].startswith("dict(optimizer_class=th.optim.SGD")


def test_write_entry(tmp_path: Path):
    path = tmp_path / "c.yml"
    path.write_text("# header\nA-v0:\n  x: 1  # inline\n\n# about B\nB-v0:\n  y: 2\n")
    write_entry(path, "A-v0", {"x": 3, "z": "s"})
    write_entry(path, "C-v0", {"w": 1.5})
    text = path.read_text()
    assert text.startswith("# header\nA-v0:\n") and "# about B\nB-v0:" in text
    assert yaml.safe_load(text) == {"A-v0": {"x": 3, "z": "s"}, "B-v0": {"y": 2}, "C-v0": {"w": 1.5}}
    write_entry(tmp_path / "new.yml", "A-v0", {"x": 1})
    assert yaml.safe_load((tmp_path / "new.yml").read_text()) == {"A-v0": {"x": 1}}


def test_write_entry_keeps_comments_and_other_entries(tmp_path: Path):
    original = (config_dir() / "influence_ppo.yml").read_text()
    path = tmp_path / "tuned.yml"
    path.write_text(original)
    entry = {**load_config("influence_ppo.yml")["Acrobot-v1"], "learning_rate": 1e-05, "filter_mode": "all"}
    write_entry(path, "Acrobot-v1", entry)
    text = path.read_text()
    # Byte for byte: the header and the blocks before Acrobot-v1, and from the comment of the next block on.
    head, tail = original.split("\nAcrobot-v1:\n")
    following = tail[tail.index("\n\n# ") :]
    assert text.startswith(head + "\nAcrobot-v1:\n") and text.endswith(following)
    assert "  learning_rate: 1.0e-05\n" in text  # PyYAML reads 1e-05 as a string
    loaded = yaml.safe_load(text)
    assert list(loaded) == list(load_config("influence_ppo.yml"))
    assert loaded == {**load_config("influence_ppo.yml"), "Acrobot-v1": entry}


def test_write_entry_yaml_1_1_values(tmp_path: Path):
    # Strings that PyYAML (YAML 1.1, as rl-zoo3 reads configs) would read as another type stay strings.
    path = tmp_path / "c.yml"
    path.write_text("# only a comment\n")
    entry = {"mode": "off", "flag": "yes", "n": "3", "lr": 2e-06, "policy_kwargs": "dict(net_arch={'pi': [64]})"}
    write_entry(path, "A-v0", entry)
    text = path.read_text()
    assert text.startswith("# only a comment\n")
    assert "policy_kwargs: \"dict(net_arch={'pi': [64]})\"" in text
    assert yaml.safe_load(text) == {"A-v0": entry}


def test_register_registry_algorithms():
    register()
    register()  # idempotent: the parents' samplers are wrapped once
    for entry in influence_algos():
        assert utils.ALGOS[entry.name] is entry.load()
        assert isinstance(hyperparams_opt.HYPERPARAMS_SAMPLER[entry.name], _KeepConfigPolicyKwargs)
        assert hyperparams_opt.HYPERPARAMS_CONVERTER[entry.name] is hyperparams_opt.convert_onpolicy_params
        for parent in (entry.sampler, entry.baseline):
            sampler = hyperparams_opt.HYPERPARAMS_SAMPLER[parent]
            assert isinstance(sampler, _KeepConfigPolicyKwargs)
            assert not isinstance(sampler.sampler, _KeepConfigPolicyKwargs)
    names = {"influence_ppo", "influence_a2c", "influence_maskable_ppo", "influence_recurrent_ppo"}
    assert {entry.name for entry in influence_algos()} == names and names <= set(utils.ALGOS)
    assert utils.ALGOS["ppo_mask"] is MaskablePPO
    assert hyperparams_opt.HYPERPARAMS_SAMPLER["ppo_mask"].sampler is hyperparams_opt.sample_ppo_params
    assert hyperparams_opt.HYPERPARAMS_CONVERTER["ppo_mask"] is hyperparams_opt.convert_onpolicy_params


@pytest.mark.parametrize("algo", [entry.name for entry in influence_algos()])
def test_influence_samplers(algo: str):
    register()
    entry = next(entry for entry in influence_algos() if entry.name == algo)
    sampler = hyperparams_opt.HYPERPARAMS_SAMPLER[algo]
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()  # a real in-memory study
    params = sampler(trial, 2, 1, {})
    assert params["filter_fraction"] in FILTER_FRACTIONS and params["filter_mode"] in FILTER_MODES
    # The parent's search space plus the two filter parameters; replayed exactly by a FixedTrial.
    fixed = optuna.trial.FixedTrial(trial.params)
    parent = hyperparams_opt.HYPERPARAMS_SAMPLER[entry.sampler](fixed, 2, 1, {})
    assert set(params) == {*parent, "filter_fraction", "filter_mode"}
    assert sampler(optuna.trial.FixedTrial(trial.params), 2, 1, {}) == params
    assert trial_hyperparams(trial.params, algo)["filter_mode"] == params["filter_mode"]
    if algo == ALGO_NAME:
        assert sample_influence_ppo_params(optuna.trial.FixedTrial(trial.params), 2, 1, {}) == params
