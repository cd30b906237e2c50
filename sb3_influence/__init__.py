"""sb3-influence: influence-based data attribution and Iterative Influence-based Filtering for SB3's on-policy algorithms."""

from sb3_influence.buffers import FilteredDictRolloutBuffer, FilteredRolloutBuffer, FilterMixin
from sb3_influence.callbacks import BehaviorTimelineCallback, InfluenceDiagnosticsCallback
from sb3_influence.envs import register_envs
from sb3_influence.explain import ExplainedRecord, Explanation, explain_action
from sb3_influence.filtering import adaptive_filter_mask, filter_mask, reliability_filter_mask, round_to_minibatches
from sb3_influence.iif import InfluenceFilterMixin, InfluenceReport, SupportsInfluence
from sb3_influence.influence_a2c import InfluenceA2C
from sb3_influence.influence_maskable_ppo import InfluenceMaskablePPO
from sb3_influence.influence_ppo import InfluencePPO
from sb3_influence.influence_recurrent_ppo import InfluenceRecurrentPPO
from sb3_influence.objectives import ActionObjective, InfluenceObjective, ReturnObjective
from sb3_influence.policies import MiniGridCNN
from sb3_influence.records import RolloutRecords
from sb3_influence.scoring import (
    CrossFitScores,
    crossfit_influence_scores,
    influence_scores,
    model_crossfit_scores,
    model_influence_scores,
)
from sb3_influence.version import __version__

register_envs()

__all__ = [
    "ActionObjective",
    "BehaviorTimelineCallback",
    "CrossFitScores",
    "ExplainedRecord",
    "Explanation",
    "FilterMixin",
    "FilteredDictRolloutBuffer",
    "FilteredRolloutBuffer",
    "InfluenceA2C",
    "InfluenceDiagnosticsCallback",
    "InfluenceFilterMixin",
    "InfluenceMaskablePPO",
    "InfluenceObjective",
    "InfluencePPO",
    "InfluenceRecurrentPPO",
    "InfluenceReport",
    "MiniGridCNN",
    "ReturnObjective",
    "RolloutRecords",
    "SupportsInfluence",
    "__version__",
    "adaptive_filter_mask",
    "crossfit_influence_scores",
    "explain_action",
    "filter_mask",
    "influence_scores",
    "model_crossfit_scores",
    "model_influence_scores",
    "reliability_filter_mask",
    "round_to_minibatches",
]
