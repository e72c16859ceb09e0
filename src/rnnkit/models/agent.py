"""RecurrentAgent: an actor-critic whose memory is any of rnnkit's recurrent encoders (partially
observable reinforcement learning).

    agent = build_model({"name": "recurrent_agent", "observation_size": 4, "action_sizes": [4]})
    state = agent.initial_state(8)
    logits, values, state = agent.step(observations, state)      # (8, D) -> (8, sum A), (8,)
    logits, values = agent.sequences(observations, starts, state) # (8, T, D), starts (8, T) bool
    actions, state = agent.act(observations, state)               # (8, A) int64

An observation goes through the memory (the encoder keys of :class:`MemoryEncoderConfig`: an LSTM
by default, any cell, an NTM included), then a tanh layer and a linear output: logits for each
action's choices (``action_sizes``: one entry for a Discrete action space, one per component of a
MultiDiscrete one) and the state's value. By default the policy and the value have a memory each,
as sb3-contrib's RecurrentPPO does; ``shared_memory`` gives them one.

``sequences`` reads a rollout: ``starts[b, t]`` marks a step that begins an episode, where the
memory restarts from its initial state; elsewhere it carries on, from ``state`` at t = 0. It cuts
each row into its episodes' pieces and runs them as one padded batch through the encoder (so the
fused and compiled paths serve), the same numbers as stepping one observation at a time and
resetting at each start (tested).

Shape letters as in :mod:`rnnkit`, plus A = the number of action components.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal, NamedTuple

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, constraints

from rnnkit.checks import check_input
from rnnkit.errors import ShapeError
from rnnkit.models.encoder import MemoryEncoderConfig
from rnnkit.models.registry import register_model


class RecurrentAgentConfig(MemoryEncoderConfig):
    """What a :class:`RecurrentAgent` is built from; ``observation_size`` and ``action_sizes`` come
    from the environment."""

    name: Literal["recurrent_agent"] = "recurrent_agent"
    observation_size: int = Field(gt=0, description="D, features of an encoded observation")
    action_sizes: list[int] = Field(min_length=1, description="choices of each action component")
    hidden_size: int = Field(64, gt=0)
    head_size: int = Field(64, gt=0, description="width of the tanh layer before each output")
    shared_memory: bool = Field(
        False, description="one memory for the policy and the value; False: one each (RecurrentPPO's way)"
    )
    # PPO's loss (Schulman et al. 2017), as torchrl's ClipPPOLoss takes it
    clip_epsilon: float = Field(
        0.2, gt=0, lt=1, description="PPO: how far a step may move each probability ratio"
    )
    entropy_coef: float = Field(0.01, ge=0, description="PPO: weight of the entropy bonus")
    value_coef: float = Field(0.5, gt=0, description="PPO: weight of the value loss")

    @model_validator(mode="after")
    def _acts_forward(self) -> RecurrentAgentConfig:
        if self.bidirectional:
            raise ValueError(
                "an agent acts as observations come and cannot read them backwards: drop bidirectional"
            )
        if min(self.action_sizes) < 2:
            raise ValueError(
                f"every action component needs at least 2 choices, got action_sizes {self.action_sizes}"
            )
        return self


class AgentState(NamedTuple):
    """The policy's memory state and the value's (None when the memory is shared); fields (L, B, ...)."""

    policy: NamedTuple
    value: NamedTuple | None


class MultiCategorical(Distribution):
    """Independent categorical choices, one per action component: ``logits`` (..., sum A) split by
    ``sizes``; samples (..., A) int64; ``log_prob`` and ``entropy`` summed over the components."""

    arg_constraints: ClassVar = {"logits": constraints.real_vector}
    has_enumerate_support = False

    def __init__(self, logits: Tensor, sizes: tuple[int, ...] | list[int], validate_args=None) -> None:
        self.logits, self.sizes = logits, tuple(sizes)
        self.parts = [Categorical(logits=part) for part in logits.split(self.sizes, dim=-1)]
        super().__init__(batch_shape=logits.shape[:-1], event_shape=(len(self.sizes),), validate_args=False)

    def sample(self, sample_shape=()) -> Tensor:
        return torch.stack([part.sample(sample_shape) for part in self.parts], dim=-1)

    def log_prob(self, value: Tensor) -> Tensor:
        return sum(part.log_prob(v) for part, v in zip(self.parts, value.unbind(-1), strict=True))

    def entropy(self) -> Tensor:
        return sum(part.entropy() for part in self.parts)

    @property
    def mode(self) -> Tensor:
        return torch.stack([part.logits.argmax(-1) for part in self.parts], dim=-1)

    @property
    def deterministic_sample(self) -> Tensor:
        return self.mode


def map_state(fn, *states):
    """``fn`` applied field by field to tensors nested in named tuples (None stays None)."""
    first = states[0]
    if first is None:
        return None
    if isinstance(first, Tensor):
        return fn(*states)
    return type(first)(*(map_state(fn, *fields) for fields in zip(*states, strict=True)))


def select_rows(state, rows: Tensor):
    """The rows ``rows`` (indices or a (B,) mask) of a state whose fields are (L, B, ...)."""
    return map_state(lambda s: s[:, rows], state)


def reset_rows(state, fresh, reset: Tensor):
    """``state`` with the rows where ``reset`` (B,) is True taken from ``fresh``; fields (L, B, ...)."""
    return map_state(lambda s, f: torch.where(reset.view(1, -1, *([1] * (s.dim() - 2))), f, s), state, fresh)


def run_with_resets(encoder: nn.Module, x: Tensor, starts: Tensor, state) -> Tensor:
    """``encoder``'s outputs (B, T, H) over ``x`` (B, T, D), restarting where ``starts`` (B, T) is True
    and carrying ``state`` (fields (L, B, ...)) into each row's first piece otherwise (module docs)."""
    B, T, _ = x.shape
    begins = starts.clone()
    begins[:, 0] = True
    first = begins.flatten().nonzero().squeeze(1)  # (S,) flat step b*T + t where each piece begins
    lengths = torch.diff(first, append=first.new_tensor([B * T]))  # (S,): a piece runs to the next begin
    rows = first // T
    steps = torch.arange(int(lengths.max()), device=x.device)
    real = steps < lengths[:, None]  # (S, L)
    where = torch.where(real, first[:, None] + steps, first[:, None])  # padding re-reads a real step
    carried = (first % T == 0) & ~starts[rows, 0]  # (S,): pieces that continue the given state
    initial = reset_rows(select_rows(state, rows), encoder.initial_state(len(first)), ~carried)
    out = encoder(x.reshape(B * T, -1)[where], initial, lengths=lengths.cpu()).outputs  # (S, L, H)
    flat = out.new_zeros(B * T, out.shape[-1])
    flat[where[real]] = out[real]
    return flat.view(B, T, -1)


def _head(size: int, width: int, out: int, gain: float) -> nn.Sequential:
    head = nn.Sequential(nn.Linear(size, width), nn.Tanh(), nn.Linear(width, out))
    for layer, g in ((head[0], math.sqrt(2)), (head[2], gain)):  # PPO's usual orthogonal init
        nn.init.orthogonal_(layer.weight, g)
        nn.init.zeros_(layer.bias)
    return head


@register_model("recurrent_agent", RecurrentAgentConfig)
class RecurrentAgent(nn.Module):
    """Observations (B, D) or rollouts (B, T, D) -> action logits and values (module docs).

    Example:
        >>> agent = RecurrentAgent(RecurrentAgentConfig(observation_size=4, action_sizes=[4]))
        >>> logits, values, state = agent.step(torch.zeros(2, 4), agent.initial_state(2))
    """

    def __init__(self, config: RecurrentAgentConfig) -> None:
        super().__init__()
        self.config = config
        D = config.observation_size
        self.policy_memory = config.encoder(D)
        self.value_memory = None if config.shared_memory else config.encoder(D)
        H = self.policy_memory.output_size
        W = config.head_size
        self.policy_head = _head(H, W, sum(config.action_sizes), gain=0.01)  # near-uniform first actions
        self.value_head = _head(H, W, 1, gain=1.0)

    def initial_state(self, batch_size: int) -> AgentState:
        value = None if self.value_memory is None else self.value_memory.initial_state(batch_size)
        return AgentState(self.policy_memory.initial_state(batch_size), value)

    def distribution(self, logits: Tensor) -> MultiCategorical:
        return MultiCategorical(logits, self.config.action_sizes)

    def step(
        self, observations: Tensor, state: AgentState | None = None
    ) -> tuple[Tensor, Tensor, AgentState]:
        """One step of B episodes: observations (B, D) -> logits (B, sum A), values (B,), next state."""
        x = check_input(observations[:, None] if observations.dim() == 2 else observations,
                        self.config.observation_size, self.value_head[2].weight.dtype)  # fmt: skip
        if x.shape[1] != 1:
            raise ShapeError(f"step takes observations (B, D), got {tuple(observations.shape)}")
        state = self.initial_state(x.shape[0]) if state is None else state
        policy = self.policy_memory(x, state.policy)
        logits = self.policy_head(policy.outputs[:, 0])
        if self.value_memory is None:
            return logits, self.value_head(policy.outputs[:, 0])[:, 0], AgentState(policy.state, None)
        value = self.value_memory(x, state.value)
        return logits, self.value_head(value.outputs[:, 0])[:, 0], AgentState(policy.state, value.state)

    def policy(self, observations: Tensor, starts: Tensor, state: AgentState) -> Tensor:
        """Logits (B, T, sum A) over a rollout (module docs)."""
        x = self._rollout(observations, starts)
        return self.policy_head(run_with_resets(self.policy_memory, x, starts, state.policy))

    def value(self, observations: Tensor, starts: Tensor, state: AgentState) -> Tensor:
        """Values (B, T) over a rollout (module docs)."""
        x = self._rollout(observations, starts)
        memory, carried = (
            (self.policy_memory, state.policy)
            if self.value_memory is None
            else (self.value_memory, state.value)
        )
        return self.value_head(run_with_resets(memory, x, starts, carried))[..., 0]

    def sequences(self, observations: Tensor, starts: Tensor, state: AgentState) -> tuple[Tensor, Tensor]:
        """Logits (B, T, sum A) and values (B, T) over a rollout (module docs)."""
        return self.policy(observations, starts, state), self.value(observations, starts, state)

    @torch.no_grad()
    def act(
        self, observations: Tensor, state: AgentState | None = None, deterministic: bool = False
    ) -> tuple[Tensor, AgentState]:
        """Actions (B, A) int64 for observations (B, D) and the state after them: sampled, or with
        ``deterministic`` the likeliest choice of each component."""
        logits, _, state = self.step(observations, state)
        dist = self.distribution(logits)
        return (dist.mode if deterministic else dist.sample()), state

    def _rollout(self, observations: Tensor, starts: Tensor) -> Tensor:
        x = check_input(observations, self.config.observation_size, self.value_head[2].weight.dtype)
        if not isinstance(starts, Tensor) or starts.dtype != torch.bool or tuple(starts.shape) != x.shape[:2]:
            got = tuple(starts.shape) if isinstance(starts, Tensor) else type(starts).__name__
            raise ShapeError(f"starts must be (B, T) = {tuple(x.shape[:2])} bools, got {got}")
        return x
