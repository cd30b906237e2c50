"""Feature extractors used by the paper's environments."""

import gymnasium as gym
import torch as th
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class MiniGridCNN(BaseFeaturesExtractor):
    """
    The paper's small CNN for MiniGrid's 7x7x3 ``ImgObsWrapper`` images (too small for ``NatureCNN``):
    conv 3x3 (16) - ReLU - conv 3x3 (32) - ReLU - flatten - linear (``features_dim``) - ReLU.

    Use with ``policy="CnnPolicy"`` and
    ``policy_kwargs=dict(features_extractor_class=MiniGridCNN, net_arch=dict(pi=[64, 64], vf=[64, 64]))``.
    The observations are uint8 images, which SB3 transposes to channel-first and scales to [0, 1].

    :param observation_space: An image space, channel-first after SB3's ``VecTransposeImage`` (``(3, 7, 7)``).
    :param features_dim: Size of the output features.
    """

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 64) -> None:
        super().__init__(observation_space, features_dim)
        n_channels = observation_space.shape[0]
        self.cnn = nn.Sequential(
            nn.Conv2d(n_channels, 16, kernel_size=3),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3),
            nn.ReLU(),
            nn.Flatten(),
        )
        with th.no_grad():
            n_flatten = self.cnn(th.as_tensor(observation_space.sample()[None]).float()).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flatten, features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.linear(self.cnn(observations))
