"""
Explain a trained model's action: which of its own experience pushes it to take action ``a*`` in state ``s*``?

Trains a small :class:`~sb3_influence.InfluencePPO` on CartPole (or loads one with ``--model``), picks a state,
collects a fresh rollout with the model and ranks its records by their influence on ``log pi(a*|s*)``:

    python examples/explain_action.py --timesteps 20000
    python examples/explain_action.py --model my_ppo.zip --algo ppo --env CartPole-v1

The model, its buffer and the global random state are left untouched.
"""

import argparse

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import PPO

from sb3_influence.explain import explain_action
from sb3_influence.influence_ppo import InfluencePPO


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--model", default=None, help="a saved PPO/InfluencePPO zip (default: train one)")
    parser.add_argument("--algo", choices=("influence_ppo", "ppo"), default="influence_ppo")
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--n-steps", type=int, default=1024, help="steps to collect for the explanation")
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    th.set_num_threads(1)

    cls = InfluencePPO if args.algo == "influence_ppo" else PPO
    if args.model is not None:
        model = cls.load(args.model, device="cpu")
    else:
        model = cls("MlpPolicy", args.env, n_steps=512, batch_size=64, n_epochs=4, seed=args.seed, device="cpu")
        model.learn(args.timesteps)

    # The state to explain: the first state of an episode, and the action the model prefers there.
    observation, _ = gym.make(args.env).reset(seed=args.seed + 1)
    action, _ = model.predict(observation, deterministic=True)
    explanation = explain_action(model, args.env, observation, action, n_steps=args.n_steps, seed=args.seed)

    print(explanation.table(args.top))
    print()
    top = explanation.top(args.top)
    print(f"The {len(top)} most supportive records took action {[int(np.asarray(r.action).item()) for r in top]}")
    # With normalize_advantage (PPO's default) a record pushes towards a* when its action is a* and its advantage is
    # above the buffer's mean, or when its action is another one and its advantage is below the mean.
    above = np.mean([r.advantage > explanation.advantages.mean() for r in top])
    print(f"Share of them with an advantage above the rollout's mean: {above:.2f}")
    print(f"Scores, steps and envs of every record, ranked: explanation.ranked_scores / .steps / .envs ({len(explanation)})")


if __name__ == "__main__":
    main()
