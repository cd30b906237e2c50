"""Diagnostics and behaviour-timeline callbacks: what lands in TensorBoard, and that training never breaks."""

import glob
import os

import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv, SimpleMultiObsEnv
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sb3_influence import InfluencePPO, MiniGridCNN
from sb3_influence.callbacks import BehaviorTimelineCallback, InfluenceDiagnosticsCallback
from sb3_influence.figures import format_value, image_grid

KW = dict(n_steps=32, batch_size=16, n_epochs=2, seed=0, policy_kwargs=dict(net_arch=[16]))
N_RECORDS = 32 * 2
SCALARS = {
    "score_mean",
    "score_std",
    "negative_fraction",
    "nonfinite",
    "dropped",
    "kept_fraction",
    "scoring_time",
    "update_time",
    "scoring_time_ratio",
    "spearman_advantage",
    "spearman_abs_advantage",
    "spearman_mc_product",
}
CORRELATIONS = ("spearman_advantage", "spearman_abs_advantage", "spearman_mc_product")


class ReportRecorder(BaseCallback):
    """Keeps InfluencePPO's report of each iteration (ready at the next rollout start and at the end)."""

    def __init__(self):
        super().__init__()
        self.reports = []

    def _on_step(self) -> bool:
        return True

    def _keep(self):
        report = self.model.last_influence
        if report is not None and (not self.reports or self.reports[-1] is not report):
            self.reports.append(report)

    def _on_rollout_start(self) -> None:
        self._keep()

    def _on_training_end(self) -> None:
        self._keep()


def _events(log_dir):
    (run,) = glob.glob(os.path.join(log_dir, "*_1"))
    acc = EventAccumulator(
        run, size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0, "compressedHistograms": 0}
    )
    acc.Reload()
    return acc


def _scalar(acc, tag):
    return [event.value for event in acc.Scalars(tag)]


@pytest.fixture(scope="module")
def influence_run(tmp_path_factory):
    log_dir = str(tmp_path_factory.mktemp("tb"))
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    probe_obs = env.reset()[0]
    diagnostics = InfluenceDiagnosticsCallback(strict=True)
    timeline = BehaviorTimelineCallback({"push_right": (probe_obs, 1)}, top_k=5, k_neighbors=3, strict=True)
    recorder = ReportRecorder()
    model = InfluencePPO("MlpPolicy", env, filter_fraction=1.0, filter_mode="negative", tensorboard_log=log_dir, **KW)
    model.learn(N_RECORDS * 3, callback=[diagnostics, timeline, recorder])
    return model, diagnostics, timeline, recorder, _events(log_dir)


def test_influence_ppo_tags(influence_run):
    _, _, _, _, acc = influence_run
    tags = acc.Tags()
    assert {f"influence/{name}" for name in SCALARS} <= set(tags["scalars"])
    assert {"influence/scores", "influence/dropped_scores"} <= set(tags["histograms"])
    assert "influence/score_vs_advantage" in tags["images"]  # the matplotlib figure
    assert "influence/records/text_summary" in tags["tensors"]
    assert "influence/bottom_states" not in tags["images"]  # not an image observation space
    text = acc.Tensors("influence/records/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert "Top 5" in text and "Bottom 5" in text and "| step |" in text


def test_influence_ppo_counts_match_reports(influence_run):
    model, diagnostics, _, recorder, acc = influence_run
    reports = recorder.reports
    assert len(reports) == 3 and reports[-1] is model.last_influence
    assert model.last_influence.n_dropped > 0
    # one event per iteration, in order (iteration k is written at the dump after its update, the last at the end)
    assert _scalar(acc, "influence/dropped") == [r.n_dropped for r in reports]
    assert _scalar(acc, "influence/kept_fraction") == pytest.approx([r.n_kept / N_RECORDS for r in reports])
    assert _scalar(acc, "influence/score_mean") == pytest.approx([float(np.mean(r.scores)) for r in reports], rel=1e-5)
    assert _scalar(acc, "influence/scoring_time") == pytest.approx([r.seconds for r in reports], rel=1e-5)
    assert _scalar(acc, "influence/update_time") == pytest.approx([r.update_seconds for r in reports], rel=1e-5)
    assert [h["num_timesteps"] for h in diagnostics.history] == [r.num_timesteps for r in reports]
    assert [h["dropped"] for h in diagnostics.history] == [r.n_dropped for r in reports]
    for name in CORRELATIONS:
        values = _scalar(acc, f"influence/{name}")
        assert len(values) == 3 and all(-1.0 <= v <= 1.0 for v in values)
    assert all(0.0 <= v <= 1.0 for v in _scalar(acc, "influence/negative_fraction"))
    # the histogram of the dropped scores holds exactly the dropped records
    last = acc.Histograms("influence/dropped_scores")[-1].histogram_value
    assert last.num == model.last_influence.n_dropped
    assert last.max <= float(np.max(model.last_influence.scores[model.last_influence.kept])) + 1e-6
    assert acc.Histograms("influence/scores")[-1].histogram_value.num == N_RECORDS


def test_timeline_tags_and_values(influence_run):
    _, _, timeline, _, acc = influence_run
    scalars = set(acc.Tags()["scalars"])
    names = ("log_prob", "top_action_match", "top_similarity", "mean_similarity", "top_distance_ratio", "roughness")
    for name in (*names, "positive_fraction", "score_scale", "score_abs_mean"):
        assert f"behavior/push_right/{name}" in scalars
    assert len(timeline.history) == 3 and {h["probe"] for h in timeline.history} == {"push_right"}
    for h in timeline.history:
        assert h["log_prob"] <= 0.0
        assert 0.0 <= h["top_action_match"] <= 1.0 and 0.0 <= h["positive_fraction"] <= 1.0
        assert -1.0 <= h["top_similarity"] <= 1.0 + 1e-9
        assert np.isnan(h["roughness"]) or 0.0 <= h["roughness"] < 1.0
    # the timeline is written at its own iteration's dump
    steps = [event.step for event in acc.Scalars("behavior/push_right/log_prob")]
    assert steps == [N_RECORDS, 2 * N_RECORDS, 3 * N_RECORDS]


def test_long_probe_names_with_console_output():
    # SB3's console table truncates keys to 36 characters: the timeline must not make them collide
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    probes = {"a_rather_long_probe_name_for_the_console": (np.zeros(4), 0)}
    model = PPO("MlpPolicy", env, verbose=1, **KW)
    timeline = BehaviorTimelineCallback(probes, strict=True)
    model.learn(N_RECORDS, callback=[timeline, InfluenceDiagnosticsCallback(strict=True)])
    assert len(timeline.history) == 1


def test_plain_ppo_scores_without_dropping(tmp_path):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=1)
    callback = InfluenceDiagnosticsCallback(strict=True)
    model = PPO("MlpPolicy", env, tensorboard_log=str(tmp_path), **KW)
    model.learn(N_RECORDS * 2, callback=callback)
    acc = _events(str(tmp_path))
    tags = acc.Tags()
    assert {f"influence/{name}" for name in SCALARS} <= set(tags["scalars"])
    assert _scalar(acc, "influence/dropped") == [0.0, 0.0]
    assert _scalar(acc, "influence/kept_fraction") == [1.0, 1.0]
    assert "influence/scores" in tags["histograms"] and "influence/dropped_scores" not in tags["histograms"]
    assert "influence/score_vs_advantage" in tags["images"]
    assert all(h["score_std"] > 0 and h["update_time"] > 0 for h in callback.history)
    assert all(-1.0 <= v <= 1.0 for name in CORRELATIONS for v in _scalar(acc, f"influence/{name}"))


def test_log_every_and_heavy_parts_off(tmp_path):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=2)
    callback = InfluenceDiagnosticsCallback(
        log_every=2, histograms=False, scatter=False, table=False, images=False, advantage_accuracy=False, strict=True
    )
    model = InfluencePPO("MlpPolicy", env, tensorboard_log=str(tmp_path), **KW)
    model.learn(N_RECORDS * 4, callback=callback)
    assert [h["num_timesteps"] for h in callback.history] == [2 * N_RECORDS, 4 * N_RECORDS]
    acc = _events(str(tmp_path))
    tags = acc.Tags()
    assert not tags["histograms"] and not tags["images"] and not tags["tensors"]
    assert "influence/spearman_advantage" in tags["scalars"] and "influence/spearman_mc_product" not in tags["scalars"]
    assert len(_scalar(acc, "influence/score_std")) == 2


def test_image_observations_log_bottom_states(tmp_path):
    env = make_vec_env(lambda: FakeImageEnv(action_dim=3, screen_height=7, screen_width=7, n_channels=3), n_envs=2, seed=0)
    policy_kwargs = dict(features_extractor_class=MiniGridCNN, features_extractor_kwargs=dict(features_dim=16), net_arch=[16])
    model = InfluencePPO("CnnPolicy", env, tensorboard_log=str(tmp_path), **{**KW, "policy_kwargs": policy_kwargs})
    callback = InfluenceDiagnosticsCallback(top_k=3, strict=True)
    timeline = BehaviorTimelineCallback([(env.observation_space.sample(), 0)], embedding="features", top_k=4, strict=True)
    model.learn(N_RECORDS * 2, callback=[callback, timeline])
    acc = _events(str(tmp_path))
    assert "influence/bottom_states" in acc.Tags()["images"]
    image = acc.Images("influence/bottom_states")[-1]
    assert image.width > image.height >= 7  # three enlarged tiles side by side
    assert "behavior/probe_0/roughness" in acc.Tags()["scalars"] or np.isnan(timeline.history[-1]["roughness"])
    # uint8 images are grouped exactly; random images never repeat, so A_bar = 0 everywhere and the
    # correlation with A_bar * A_hat is undefined: NaN in the history, not recorded
    assert np.isnan(callback.history[-1]["spearman_mc_product"])
    assert "influence/spearman_mc_product" not in acc.Tags()["scalars"]


def test_dict_observations(tmp_path):
    env = make_vec_env(lambda: SimpleMultiObsEnv(random_start=True), n_envs=1, seed=0)
    model = PPO("MultiInputPolicy", env, n_steps=32, batch_size=16, n_epochs=1, seed=0, tensorboard_log=str(tmp_path))
    obs = env.reset()
    callback = InfluenceDiagnosticsCallback(top_k=2, strict=True)
    timeline = BehaviorTimelineCallback([({k: v[0] for k, v in obs.items()}, 1)], embedding="observation", strict=True)
    model.learn(64, callback=[callback, timeline])
    acc = _events(str(tmp_path))
    assert "influence/bottom_states" in acc.Tags()["images"]
    text = acc.Tensors("influence/records/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert "vec:" in text and "img:" in text
    assert len(timeline.history) == 2


class NaNInfluencePPO(InfluencePPO):
    def _score_rollout(self, records):
        scores, rank_by, reliability, noise_std = super()._score_rollout(records)
        scores, rank_by = scores.copy(), rank_by.copy()
        scores[0, 0] = rank_by[0, 0] = np.nan
        return scores, rank_by, reliability, noise_std


def test_non_finite_scores_do_not_crash(tmp_path):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=3)
    model = NaNInfluencePPO("MlpPolicy", env, tensorboard_log=str(tmp_path), **KW)
    callback = InfluenceDiagnosticsCallback(strict=True)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        model.learn(N_RECORDS * 2, callback=callback)
    acc = _events(str(tmp_path))
    scalars = set(acc.Tags()["scalars"])
    assert _scalar(acc, "influence/nonfinite") == [1.0, 1.0]
    assert _scalar(acc, "influence/nonfinite_records") == [1.0, 1.0]
    assert not model.last_influence.kept[0, 0]  # the record with a NaN score is left out of the update
    assert all(d >= 1.0 for d in _scalar(acc, "influence/dropped"))
    assert not any(f"influence/{name}" in scalars for name in CORRELATIONS)
    assert np.isfinite(_scalar(acc, "influence/score_mean")).all()
    assert acc.Histograms("influence/scores")[-1].histogram_value.num == N_RECORDS - 1


def test_failing_diagnostic_warns_and_training_goes_on(tmp_path, monkeypatch):
    import sb3_influence.callbacks as callbacks

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(callbacks, "score_statistics", broken)
    model = InfluencePPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=4), **KW)
    with pytest.warns(RuntimeWarning, match="boom"):
        model.learn(N_RECORDS * 2, callback=InfluenceDiagnosticsCallback())
    assert model.num_timesteps == N_RECORDS * 2
    with pytest.raises(ZeroDivisionError):
        InfluencePPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2, seed=4), **KW).learn(
            N_RECORDS, callback=InfluenceDiagnosticsCallback(strict=True)
        )


def test_helpers_and_arguments():
    assert format_value(np.array([3.0])) == "3"
    assert format_value(np.arange(10.0)).endswith(", ...]")
    assert format_value(np.zeros((3, 7, 7))) == "3x7x7 mean 0"
    assert format_value({"a": np.array([1]), "b": np.array([0.5, 0.25])}) == "a: 1; b: [0.5 , 0.25]"
    grid = image_grid(np.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4), channels_first=True, min_size=8, gap=1)
    assert grid.shape == (8, 17, 3) and grid.dtype == np.uint8 and grid.max() == 255
    assert image_grid(np.zeros((1, 5, 5, 1)), channels_first=False).shape == (65, 65, 3)
    with pytest.raises(ValueError):
        InfluenceDiagnosticsCallback(log_every=0)
    with pytest.raises(ValueError):
        BehaviorTimelineCallback([])
