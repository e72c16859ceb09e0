"""Environments as the data of reinforcement learning: made by name, stepped in parallel, observations
encoded as float vectors and actions as integer vectors.

    envs = EnvPool("RepeatPreviousEasy", n=8, seed=0)   # a POPGym class name, or a gymnasium id
    envs.observations                                   # (n, D) float32: each env's current observation
    step = envs.step(actions)                           # actions (n, A) int64 -> Step (rewards, ends, ...)

A name is first looked up among POPGym's environments (``popgym.envs``: RepeatPreviousEasy,
PositionOnlyCartPoleMedium, CountRecallHard, ...), then in gymnasium's registry (``CartPole-v1``).
Observations of any gymnasium space are flattened (``gymnasium.spaces.flatten``: a Discrete one is
one-hot, a Tuple concatenated); actions must be Discrete (A = 1) or MultiDiscrete (A = its length),
one categorical choice each. POPGym and gymnasium are an extra: ``pip install 'rnnkit[rl]'``.

Episodes restart at once, as in gymnasium's vector environments with same-step autoreset: the step
that ends one returns the next episode's first observation, and the last one as ``final``, so a
truncated episode (a time limit, not a terminal state) can still be valued from where it stopped.
Env ``i`` is seeded ``seed * 10_007 + i`` once; later episodes draw from its own generator, so a run
is repeatable. (A checkpoint does not keep the pool: a resumed run starts new episodes.)
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import Tensor

from rnnkit.config import Config
from rnnkit.errors import ConfigError, DataError

EXTRA = "POPGym environments need popgym and gymnasium: pip install 'rnnkit[rl]'"


def make_env(name: str) -> Any:
    """One environment by name: a POPGym class (``RepeatPreviousEasy``) or a gymnasium id."""
    try:
        import gymnasium
        import popgym.envs
    except ImportError:
        raise ConfigError(EXTRA) from None
    if not isinstance(name, str) or not name:
        raise ConfigError(f"data.env must name an environment, got {name!r}")
    cls = getattr(popgym.envs, name, None)
    if isinstance(cls, type) and issubclass(cls, gymnasium.Env):
        return cls()
    if name in gymnasium.registry:
        return gymnasium.make(name)
    known = [n for n in dir(popgym.envs) if isinstance(getattr(popgym.envs, n), type) and n[0].isupper()]
    close = difflib.get_close_matches(name, [*known, *gymnasium.registry], n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(
        f"unknown environment {name!r}: {hint}name a POPGym class (e.g. RepeatPreviousEasy, "
        "PositionOnlyCartPoleEasy, CountRecallMedium) or a registered gymnasium id (e.g. CartPole-v1)"
    )


@dataclass(frozen=True)
class EnvSpec:
    """What an agent needs to know of an environment: D, each action's choices, a short description."""

    observation_size: int
    action_sizes: tuple[int, ...]
    describe: str


def env_spec(name: str) -> EnvSpec:
    """``name``'s observation width and action choices; refuses spaces an agent here cannot act in."""
    import gymnasium.spaces as spaces

    env = make_env(name)
    try:
        obs_space, act_space = env.observation_space, env.action_space
    finally:
        env.close()
    if isinstance(act_space, spaces.Discrete):
        sizes = (int(act_space.n),)
    elif isinstance(act_space, spaces.MultiDiscrete) and act_space.nvec.ndim == 1:
        sizes = tuple(int(n) for n in act_space.nvec)
    else:
        raise ConfigError(
            f"{name}'s actions are {act_space}: rnnkit's agents choose Discrete or MultiDiscrete actions; "
            "pick an environment with discrete actions"
        )
    size = int(spaces.flatdim(obs_space))
    return EnvSpec(size, sizes, f"{name}: observations {obs_space} ({size} features), actions {act_space}")


@dataclass
class Step:
    """What one step of every env gave: rewards (n,), terminated and truncated (n,) bool, the next
    observations (n, D) (a new episode's first where one ended), ``final`` (n, D) (the ended
    episode's last observation there, else the same), and the returns and lengths of the episodes
    that ended."""

    observations: Tensor
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor
    final: Tensor
    episode_returns: list[float]
    episode_lengths: list[int]

    @property
    def done(self) -> Tensor:
        return self.terminated | self.truncated


class EnvPool:
    """``n`` copies of the environment ``name``, stepped together (module docs)."""

    def __init__(self, name: str, n: int, seed: int = 0) -> None:
        if n < 1:
            raise ConfigError(f"an env pool needs n >= 1 environments, got {n}")
        self.name, self.n = name, n
        self.envs = [make_env(name) for _ in range(n)]
        self.spec = env_spec(name)
        first = [env.reset(seed=seed * 10_007 + i)[0] for i, env in enumerate(self.envs)]
        self.observations = self._encode(first)  # (n, D)
        self.starts = torch.ones(n, dtype=torch.bool)  # (n,): the current observation begins an episode
        self._returns, self._lengths = np.zeros(n), np.zeros(n, dtype=np.int64)

    def step(self, actions: Tensor) -> Step:
        """Act ``actions`` (n, A) int64 in every env; ended episodes restart at once (module docs)."""
        actions = actions.detach().cpu()
        if tuple(actions.shape) != (self.n, len(self.spec.action_sizes)):
            raise DataError(
                f"actions must be (n, A) = ({self.n}, {len(self.spec.action_sizes)}), "
                f"got {tuple(actions.shape)}"
            )
        one = len(self.spec.action_sizes) == 1
        rewards, terminated, truncated, nexts, finals, returns, lengths = [], [], [], [], [], [], []
        for i, (env, action) in enumerate(zip(self.envs, actions.numpy(), strict=True)):
            obs, reward, term, trunc, _ = env.step(int(action[0]) if one else action)
            self._returns[i] += float(reward)
            self._lengths[i] += 1
            finals.append(obs)
            if term or trunc:
                returns.append(float(self._returns[i]))
                lengths.append(int(self._lengths[i]))
                self._returns[i], self._lengths[i] = 0.0, 0
                obs, _ = env.reset()
            nexts.append(obs)
            rewards.append(float(reward))
            terminated.append(bool(term))
            truncated.append(bool(trunc) and not term)
        self.observations = self._encode(nexts)
        step = Step(
            self.observations,
            torch.tensor(rewards, dtype=torch.float32),
            torch.tensor(terminated),
            torch.tensor(truncated),
            self._encode(finals),
            returns,
            lengths,
        )
        self.starts = step.done.clone()
        return step

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def _encode(self, observations: list) -> Tensor:
        from gymnasium.spaces import flatten

        space = self.envs[0].observation_space
        rows = np.stack([np.asarray(flatten(space, obs), dtype=np.float32) for obs in observations])
        if not np.isfinite(rows).all():
            raise DataError(f"{self.name} returned a non-finite observation: {rows[~np.isfinite(rows)][:3]}")
        return torch.from_numpy(rows)


class ExperienceConfig(Config):
    """The data of a reinforcement-learning run: which environment, how many copies step together,
    how long each rollout is, how many steps in all, and how rewards are discounted (PPO's, with
    generalised advantage estimation)."""

    env: str = Field(description="a POPGym class (RepeatPreviousEasy) or a gymnasium id (CartPole-v1)")
    n_envs: int = Field(16, gt=0, description="copies stepped together; a rollout has n_envs rows")
    rollout_steps: int = Field(128, gt=0, description="steps of each copy between two updates")
    total_steps: int = Field(100_000, gt=0, description="environment steps in all (every copy's)")
    gamma: float = Field(0.99, gt=0, le=1, description="the discount of future rewards")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE's bias-variance trade-off")
    eval_episodes: int = Field(100, gt=0, description="episodes the trained agent plays when evaluated")
    seed: int = Field(0, description="seeds the environments (training, and apart from it evaluation)")

    @field_validator("env")
    @classmethod
    def _known(cls, name: str) -> str:
        make_env(name).close()  # an unknown name, or no popgym, fails while the config is read
        return name
