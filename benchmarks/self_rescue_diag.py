"""
Which records does adding the self-influence to the cross-fitted score keep? (RESULTS.md, "Five scores between the
cross-fitted and the plain one".)

Trains the default rule (cross-fitted ranking with the floor) on one env and seed for a few iterations and, at each
IIF step, compares its drop set with that of the same rule ranked by cross-fitted score + self-influence (both
before whole-minibatch rounding). Prints
per iteration: records the default drops, how many of them the self-influence keeps and the share of those with a
positive advantage, how many it drops in their place and their share with a positive advantage, the share of
positive advantages in the default's drop set, and the split reliability.

Needs the probe's ``self_influence`` (not in the library): run it from a checkout of ``d5ffe68`` with
``benchmarks/patches/self_ranking.diff`` applied (``PYTHONPATH=.`` so that the checkout's package is imported):

    PYTHONPATH=. python benchmarks/self_rescue_diag.py FrozenLake-v1 5 12
    PYTHONPATH=. python benchmarks/self_rescue_diag.py MiniGrid-Empty-8x8-v0 1 10
"""

import sys

import torch as th

import sb3_influence.benchmark.runner as runner
import sb3_influence.iif as iif
from sb3_influence.filtering import reliability_filter_mask
from sb3_influence.scoring import model_self_influence  # type: ignore[attr-defined]  # the probe's patch


def main() -> None:
    env_id, seed, iterations = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    th.set_num_threads(1)
    rows: list[tuple] = []
    score_rollout = iif.InfluenceFilterMixin._score_rollout

    def compare(self, records):  # the default's scores, and the drop sets of both rankings
        scores, rank_by, reliability, noise_std = score_rollout(self, records)
        if self._outcome_gate_closed():
            rows.append(("gate closed",))
            return scores, rank_by, reliability, noise_std
        crossfit, advantages = rank_by.ravel(), records.advantages.ravel()
        with_self = crossfit + model_self_influence(self, records).ravel()
        # the model's own rule settings, as _filter_rollout passes them (before whole-minibatch rounding)
        settings = (self.fraction, self.min_reliability, self._minibatch_size(), self.min_fraction)
        default = ~reliability_filter_mask(crossfit, reliability, *settings)
        other = ~reliability_filter_mask(with_self, reliability, *settings)
        kept, dropped = default & ~other, other & ~default

        def positive(mask):
            return float((advantages[mask] > 0).mean()) if mask.any() else float("nan")

        rows.append(
            (
                int(default.sum()),
                int(kept.sum()),
                positive(kept),
                int(dropped.sum()),
                positive(dropped),
                positive(default),
                reliability,
            )
        )
        return scores, rank_by, reliability, noise_std

    iif.InfluenceFilterMixin._score_rollout = compare
    hyperparams = runner.load_hyperparams(runner.resolve_config("influence_ppo"), env_id)
    hyperparams.update(filter_mode="reliability", filter_fraction=0.5, filter_min_fraction=0.125, filter_min_reliability=-1e9)
    hyperparams.pop("callback", None)
    model = runner.build_model("influence_ppo", env_id, hyperparams, seed)
    model.learn(model.n_steps * model.n_envs * iterations)
    print(
        "iteration, dropped by default, kept by +self, their share A>0, dropped instead, their share A>0, "
        "share A>0 of default's, rho"
    )
    for i, row in enumerate(rows):
        print(i, *(f"{v:.3f}" if isinstance(v, float) else v for v in row))


if __name__ == "__main__":
    main()
