"""``python -m sb3_influence.benchmark``: paired PPO / InfluencePPO runs, and ``summarize``."""

from sb3_influence.benchmark.runner import main

if __name__ == "__main__":
    main()
