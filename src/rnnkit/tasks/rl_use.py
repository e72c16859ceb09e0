"""Using a trained agent: it acts on observations as they come, its memory carried between calls.

    agent = rnnkit.load("runs/rl_repeat_previous/bundle")
    obs, _ = env.reset()
    agent.reset()                          # a new episode: the memory starts again
    action = agent.act(obs)                # an int (Discrete actions) or a list of ints (MultiDiscrete)
    obs, reward, terminated, truncated, _ = env.step(action)
    agent.predict([obs0, obs1, obs2])      # one episode's observations from its start -> its actions

An observation is what the environment gives (an int for a Discrete space, a tuple for a Tuple
one, an array for a Box), checked against the space and encoded as in training. ``act`` takes the
likeliest action unless ``deterministic=False`` (then it samples, as in training).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnkit.data.envs import make_env
from rnnkit.errors import ConfigError, DataError
from rnnkit.tasks import Predictor


class AgentPredictor(Predictor):
    """A trained recurrent agent: ``act`` one observation at a time, ``reset`` between episodes."""

    verbs = (*Predictor.verbs, "act", "reset", "predict")

    def __init__(self, task, bundle) -> None:
        super().__init__(task, bundle)
        env = make_env(self.data_config.env)
        self.space = env.observation_space
        env.close()
        self.model.eval()
        self.state = None

    def reset(self) -> None:
        """Forget what was seen: the next observation begins an episode."""
        self.state = None

    @torch.no_grad()
    def act(self, observation: Any, deterministic: bool = True) -> int | list[int]:
        """The action for ``observation``, the memory carried from the calls since ``reset``."""
        x = self._encode(observation)
        actions, self.state = self.model.act(x[None], self.state, deterministic=deterministic)
        chosen = actions[0].tolist()
        return chosen[0] if len(chosen) == 1 else chosen

    def predict(self, inputs, deterministic: bool = True, **options) -> list:
        """The actions for one episode's observations, read from its start (the memory is reset).

        Episodes written as JSON lists (``"[0, 2, 2, 1]"``: the CLI's ``--text``), a list of them,
        or a JSON-lines file of them give a list of action lists, one per episode."""
        if options:
            raise ConfigError(f"an agent's predict takes deterministic only; got {sorted(options)}")
        if isinstance(inputs, Path):
            inputs = [line for line in _read_lines(inputs) if line.strip()]
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise DataError(f"predict takes one episode's observations (a list), got {inputs!r}")
        if all(isinstance(episode, str) for episode in inputs):
            return [self._episode(_episode(text), deterministic) for text in inputs]
        return self._episode(inputs, deterministic)

    def _episode(self, observations, deterministic: bool) -> list[int | list[int]]:
        if not isinstance(observations, (list, tuple)):
            raise DataError(f"an episode is a list of observations, got {observations!r}")
        self.reset()
        try:
            return [self.act(observation, deterministic) for observation in observations]
        finally:
            self.reset()

    def _encode(self, observation: Any) -> torch.Tensor:
        from gymnasium.spaces import flatten

        value = np.asarray(observation, dtype=self.space.dtype) if self.space.shape else observation
        if isinstance(value, list):
            value = tuple(value)
        try:
            ok = self.space.contains(value)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise DataError(
                f"{observation!r} is not an observation of {self.data_config.env}: expected {self.space}"
            )
        device = next(self.model.parameters()).device
        return torch.as_tensor(np.asarray(flatten(self.space, value), dtype=np.float32), device=device)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None


def _episode(text: str) -> list:
    try:
        episode = json.loads(text)
    except json.JSONDecodeError:
        episode = None
    if not isinstance(episode, list):
        raise DataError(f"an episode is written as a JSON list of observations, e.g. [0, 2, 1]; got {text!r}")
    return episode
