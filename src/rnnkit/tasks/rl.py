"""Reinforcement learning in partially observable environments: a recurrent agent trained by PPO.

The environment is the data: a POPGym environment (Morad et al. 2023) or any gymnasium one with
discrete actions, stepped in ``n_envs`` copies (:mod:`rnnkit.data.envs`). The model is a
:class:`rnnkit.models.agent.RecurrentAgent` whose memory is any rnnkit encoder (LSTM by default; GRU,
minGRU, an NTM ...), trained by :class:`rnnkit.train.ppo.PPOTrainer` (TorchRL's clipped loss and
advantages, rollouts that carry the memory and restart it at each episode's start). Evaluation plays
``eval_episodes`` new episodes (seeds apart from training's), each from its start, with the agent
sampling its actions as it was trained to and taking its likeliest action, beside a random agent;
POPGym scales every episode's return into [-1, 1]. Plot: the mean return of the last 100 training
episodes against environment steps.

    task: rl
    data: {env: RepeatPreviousEasy, n_envs: 16, rollout_steps: 128, total_steps: 200000}
    model: {cell: gru, hidden_size: 64}
    train: {epochs: 4, batch_size: 4, optimizer: {lr: 0.001}, clip_grad_norm: 0.5}
"""

from __future__ import annotations

import contextlib
import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from rnnkit.data.envs import EnvPool, ExperienceConfig, env_spec
from rnnkit.errors import DataError
from rnnkit.models.agent import reset_rows
from rnnkit.tasks import ModelKeys, Prepared, Task, register_task

EVAL_SEED = 7_919  # evaluation's environments are seeded apart from any training seed's
POLICIES = ("sampled", "greedy", "random")


@dataclass(kw_only=True)
class RLPrepared(Prepared):
    config: ExperienceConfig


@torch.no_grad()
def play(agent, config: ExperienceConfig, episodes: int, policy: str = "sampled", seed: int = EVAL_SEED,
         max_steps: int = 100_000) -> dict[str, list]:  # fmt: skip
    """Returns and lengths of ``episodes`` episodes, one per copy of the environment, each played from
    its start by ``agent`` (its ``policy``: "sampled" or "greedy" actions), or at random (``agent`` None)."""
    envs = EnvPool(config.env, episodes, seed=config.seed * 1_000_003 + seed)
    device = torch.device("cpu") if agent is None else next(agent.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.tensor(envs.spec.action_sizes)
    returns, lengths = [math.nan] * episodes, [0] * episodes
    state = None if agent is None else agent.initial_state(episodes)
    running = torch.ones(episodes, dtype=torch.bool)
    with (
        torch.random.fork_rng(devices=[]),
        contextlib.closing(envs),
    ):  # sampled actions repeat from call to call
        torch.manual_seed(seed)
        for _ in range(max_steps):
            if agent is None:
                actions = (torch.rand(episodes, len(sizes), generator=generator) * sizes).long()
            else:
                actions, state = agent.act(
                    envs.observations.to(device), state, deterministic=policy == "greedy"
                )
            step = envs.step(actions)
            ended = step.done.nonzero().flatten().tolist()
            for i, value, n in zip(ended, step.episode_returns, step.episode_lengths, strict=True):
                if running[i]:
                    returns[i], lengths[i] = value, n
            running &= ~step.done
            if not running.any():
                return {"returns": returns, "lengths": lengths}
            if state is not None:  # a copy that ended starts again; its new episode is not counted
                state = reset_rows(state, agent.initial_state(episodes), step.done.to(device))
    raise DataError(f"{config.env}: {int(running.sum())} episodes did not end within {max_steps} steps")


def _summary(played: dict[str, list]) -> dict[str, float]:
    returns = torch.tensor(played["returns"], dtype=torch.float64)
    return {
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()) if len(returns) > 1 else 0.0,
        "mean_length": sum(played["lengths"]) / len(played["lengths"]),
    }


def evaluate(agent, prepared: RLPrepared) -> dict[str, Any]:
    c = prepared.config
    agent.eval()
    results = {p: _summary(play(None if p == "random" else agent, c, c.eval_episodes, p)) for p in POLICIES}
    return {"env": c.env, "episodes": c.eval_episodes, "policies": results}


def metrics_table(m: dict[str, Any]) -> str:
    lines = [
        f"{m['env']}: {m['episodes']} new episodes each (returns as the environment gives them)",
        f"  {'agent':<24}{'mean return':>12}{'std':>9}{'mean length':>13}",
    ]
    names = {"sampled": "trained, sampling", "greedy": "trained, likeliest", "random": "random actions"}
    for policy, r in m["policies"].items():
        lines.append(
            f"  {names[policy]:<24}{r['mean_return']:>12.4f}{r['std_return']:>9.4f}{r['mean_length']:>13.1f}"
        )
    return "\n".join(lines)


class RLTask(Task[ExperienceConfig, RLPrepared]):
    """A recurrent agent in an environment, trained by PPO, judged by its episodes' returns."""

    name = "rl"
    data_config = ExperienceConfig
    default_model = "recurrent_agent"
    trainer: ClassVar[str] = "ppo"
    preprocessing_keys = ("observation_size", "action_sizes")
    fitted_keys: ClassVar = {
        "observation_size": "the environment's observations",
        "action_sizes": "its actions",
    }
    stand_ins: ClassVar = {"action_sizes": [2]}

    def prepare(self, config, preprocessing=None, path=None, batch_size=32) -> RLPrepared:
        if path is not None:
            raise DataError(
                f"an agent is judged by playing in its environment and reads no file, got {path}: "
                "evaluate without data (data.eval_episodes sets how many episodes)"
            )
        spec = env_spec(config.env)
        found = {"observation_size": spec.observation_size, "action_sizes": list(spec.action_sizes)}
        for key, value in (preprocessing or {}).items():
            if key in found and found[key] != value:
                raise DataError(
                    f"{config.env} now gives {key} {found[key]}, the bundle was trained with {value}: "
                    "the environment changed (another popgym version?); train the agent again"
                )
        part = "new episodes"
        return RLPrepared(
            train=None, validation=None, test=None, preprocessing=found, part=part, config=config
        )

    def model_keys(self, config, prepared=None) -> ModelKeys:
        return ModelKeys(fixed={} if prepared is None else prepared.preprocessing)

    def evaluate(self, model, prepared) -> dict[str, Any]:
        return evaluate(model, prepared)

    def metrics_table(self, metrics) -> str:
        return metrics_table(metrics)

    def plots(self, model, prepared, out_dir: Path, config, metrics) -> list[Path]:
        from rnnkit import plots

        log = out_dir / "log.csv"
        if not log.is_file():
            return []
        with open(log, newline="") as f:
            rows = list(csv.DictReader(f))
        steps = [int(r["env_steps"]) for r in rows]
        curves = {"trained agent (last 100 episodes)": [float(r["episode_return"]) for r in rows]}
        random = metrics["policies"]["random"]["mean_return"]
        curves["random actions"] = [random] * len(rows)
        title = f"{config.env}: PPO, {model.config.cell} memory"
        return [
            plots.plot_lines(
                curves, steps, out_dir / "returns.png", "environment steps", "mean return", title
            )
        ]

    def predictor(self, bundle):
        from rnnkit.tasks.rl_use import AgentPredictor

        return AgentPredictor(self, bundle)


register_task(RLTask())
