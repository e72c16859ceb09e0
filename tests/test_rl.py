"""Recurrent agents and PPO: the memory reads a rollout as it was stepped, restarting exactly at episode
starts; rollouts carry the memory otherwise (within and across rollouts); advantages, TorchRL's loss
wiring, the task end to end, and a bundle that acts the same after reload."""

from __future__ import annotations

import json

import gymnasium
import pytest
import torch
from helpers import write_run_config

import rnnkit
from rnnkit.data.envs import EnvPool, env_spec, make_env
from rnnkit.errors import ConfigError, DataError
from rnnkit.models import build_model
from rnnkit.models.agent import MultiCategorical, reset_rows, run_with_resets, select_rows
from rnnkit.run import train_run
from rnnkit.train.ppo import Collector, PPOTrainer, advantages, clip_ppo_loss


class Countdown(gymnasium.Env):
    """Episodes of 2 to 4 steps: the first observation is a cue (0 or 1), then 2 ("wait") until the
    end, where the reward is 1 if the action repeats the cue. Ends by truncation when ``truncate``."""

    observation_space = gymnasium.spaces.Discrete(3)
    action_space = gymnasium.spaces.Discrete(2)

    def __init__(self, truncate: bool = False) -> None:
        self.truncate = truncate

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.left = int(self.np_random.integers(2, 5))
        self.cue = int(self.np_random.integers(0, 2))
        return self.cue, {}

    def step(self, action):
        self.left -= 1
        end = self.left == 0
        reward = float(end and int(action) == self.cue)
        return 2, reward, end and not self.truncate, end and self.truncate, {}


gymnasium.register("RnnkitCountdown-v0", entry_point=Countdown)
gymnasium.register("RnnkitCountdownTruncated-v0", entry_point=lambda: Countdown(truncate=True))
ENV = "RnnkitCountdown-v0"


def agent(cell: str = "gru", shared: bool = False, **keys):
    memory = {"memory_rows": 6, "memory_width": 4} if cell == "ntm" else {}
    config = {"name": "recurrent_agent", "observation_size": 3, "action_sizes": [2], "cell": cell}
    return build_model(
        {**config, "hidden_size": 8, "head_size": 8, "shared_memory": shared, **memory, **keys}
    )


def stepped(model, observations, starts, state):
    """Logits and values by stepping one observation at a time, restarting the memory at each start."""
    logits, values = [], []
    for t in range(observations.shape[1]):
        state = reset_rows(state, model.initial_state(observations.shape[0]), starts[:, t])
        lg, v, state = model.step(observations[:, t], state)
        logits.append(lg)
        values.append(v)
    return torch.stack(logits, 1), torch.stack(values, 1)


@pytest.mark.parametrize("cell", ["lstm", "gru", "mingru", "ntm"])
@pytest.mark.parametrize("shared", [False, True])
def test_a_rollout_read_at_once_equals_stepping_it_with_resets_at_starts(cell, shared):
    torch.manual_seed(0)
    model = agent(cell, shared).double()
    B, T = 4, 11
    x = torch.randn(B, T, 3, dtype=torch.double)
    starts = torch.zeros(B, T, dtype=torch.bool)
    starts[0, [0, 5, 6]] = True  # a one-step episode in the middle
    starts[1, 10] = True  # the last step begins one
    starts[2, 3] = True  # row 3: no start, carried throughout
    state = model.step(torch.randn(B, 3, dtype=torch.double), model.initial_state(B))[2]  # not the initial
    logits, values = model.sequences(x, starts, state)
    want_logits, want_values = stepped(model, x, starts, state)
    torch.testing.assert_close(logits, want_logits, rtol=0, atol=1e-12)
    torch.testing.assert_close(values, want_values, rtol=0, atol=1e-12)
    ignored = torch.zeros_like(starts)
    assert not torch.allclose(model.sequences(x, ignored, state)[1][0, 5:], values[0, 5:])  # resets matter


def test_run_with_resets_gradients_match_stepping():
    torch.manual_seed(1)
    model = agent("lstm").double()
    x = torch.randn(3, 7, 3, dtype=torch.double)
    starts = torch.rand(3, 7) < 0.3
    state = model.initial_state(3)
    run_with_resets(model.policy_memory, x, starts, state.policy).sum().backward()
    fast = [p.grad.clone() for p in model.policy_memory.parameters()]
    model.zero_grad()
    outs, s = [], state.policy
    for t in range(7):
        s = reset_rows(s, model.policy_memory.initial_state(3), starts[:, t])
        out = model.policy_memory(x[:, t : t + 1], s)
        outs.append(out.outputs)
        s = out.state
    torch.cat(outs, 1).sum().backward()
    for got, want in zip(fast, (p.grad for p in model.policy_memory.parameters()), strict=True):
        torch.testing.assert_close(got, want)


def test_the_collector_restarts_the_memory_exactly_at_episode_ends_and_carries_it_otherwise():
    torch.manual_seed(2)
    model = agent("gru").eval()
    envs = EnvPool(ENV, n=3, seed=0)
    collector = Collector(model, envs, gamma=0.9, device=torch.device("cpu"))
    first, second = collector.collect(6), collector.collect(6)
    # starts: the first step of all, then exactly the steps after an episode ended
    assert first.starts[:, 0].all()
    for r in (first, second):
        assert torch.equal(r.starts[:, 1:], r.done[:, :-1])
    assert torch.equal(second.starts[:, 0], first.done[:, -1])
    assert first.starts[:, 1:].any() and (~second.starts[:, 0]).any()  # both cases happen
    # the values and log-probabilities it recorded are those of one stream over both rollouts,
    # restarting at the starts only: the memory was carried across the rollouts' boundary
    observations = torch.cat([first.observations, second.observations], 1)
    starts = torch.cat([first.starts, second.starts], 1)
    logits, values = stepped(model, observations, starts, model.initial_state(3))
    with torch.no_grad():
        torch.testing.assert_close(values, torch.cat([first.values, second.values], 1))
        actions = torch.cat([first.actions, second.actions], 1)
        log_probs = MultiCategorical(logits, [2]).log_prob(actions)
        torch.testing.assert_close(log_probs, torch.cat([first.log_probs, second.log_probs], 1))
        # and the state each rollout starts from is the one the agent had then
        torch.testing.assert_close(
            model.sequences(second.observations, second.starts, second.state)[1], second.values
        )


def test_a_truncated_episode_is_valued_from_where_it_stopped():
    torch.manual_seed(3)
    model = agent("gru").eval()
    envs = EnvPool("RnnkitCountdownTruncated-v0", n=2, seed=0)
    gamma = 0.9
    rollout = Collector(model, envs, gamma, torch.device("cpu")).collect(5)
    ends = rollout.done & ~rollout.terminated
    assert ends.any() and not rollout.terminated.any()
    # the final observation of a Countdown episode is always 2 ("wait"): its value with the memory then
    for b, t in ends.nonzero().tolist():
        begin = max(s for s in range(t + 1) if rollout.starts[b, s])
        state = model.initial_state(1)
        for s in range(begin, t + 1):
            state = model.step(rollout.observations[b : b + 1, s], state)[2]
        final = torch.nn.functional.one_hot(torch.tensor([2]), 3).float()  # a Countdown ends on "wait"
        bootstrap = gamma * model.step(final, state)[1][0]
        cue = int(rollout.observations[b, begin].argmax())
        reward = float(int(rollout.actions[b, t, 0]) == cue)
        torch.testing.assert_close(rollout.rewards[b, t], reward + bootstrap)


def test_advantages_are_the_generalised_estimate_computed_by_hand():
    n, T, gamma, lam = 1, 4, 0.9, 0.8
    values = torch.tensor([[0.5, 0.2, -0.1, 0.3]])
    rewards = torch.tensor([[1.0, 0.0, 2.0, -1.0]])
    done = torch.tensor([[False, True, False, False]])
    rollout = type("R", (), {})()
    rollout.values, rollout.rewards, rollout.done, rollout.terminated = values, rewards, done, done
    rollout.next_values = torch.tensor([0.7])
    adv, target = advantages(rollout, gamma, lam)
    following = [0.2, 0.0, 0.3, 0.7]  # V(s_t+1); 0 after the terminal step
    deltas = [rewards[0, t] + gamma * following[t] - values[0, t] for t in range(T)]
    want, running = [0.0] * T, 0.0
    for t in reversed(range(T)):
        running = deltas[t] + gamma * lam * (0.0 if done[0, t] else running)
        want[t] = float(running)
    torch.testing.assert_close(adv[0, :, 0], torch.tensor(want))
    torch.testing.assert_close(target[0, :, 0], torch.tensor(want) + values[0])
    assert adv.shape == (n, T, 1)


def test_torchrl_loss_reads_the_rollout_as_it_was_collected():
    """On the first pass the policy has not moved: every probability ratio is 1, nothing is clipped."""
    torch.manual_seed(4)
    model = agent("lstm")
    rollout = Collector(model, EnvPool(ENV, n=4, seed=1), 0.99, torch.device("cpu")).collect(8)
    loss, modules = clip_ppo_loss(model)
    for module in modules:
        module.state = rollout.state
    from tensordict import TensorDict

    adv, target = advantages(rollout, 0.99, 0.95)
    keys, rows = loss.tensor_keys, torch.arange(4)[:, None].expand(4, 8)
    data = TensorDict(
        {"observation": rollout.observations, "starts": rollout.starts, "row": rows,
         keys.action: rollout.actions, keys.sample_log_prob: rollout.log_probs, keys.advantage: adv,
         keys.value_target: target},
        batch_size=[4, 8],
    )  # fmt: skip
    out = loss(data[torch.tensor([2, 0])])  # rows out of order: each reads its own starting state
    assert float(out["kl_approx"]) == pytest.approx(0, abs=1e-6)
    assert float(out["clip_fraction"]) == 0
    rows = torch.tensor([2, 0])
    values = model.value(rollout.observations[rows], rollout.starts[rows], select_rows(rollout.state, rows))
    torch.testing.assert_close(values, rollout.values[rows])


def test_multicategorical_sums_its_components():
    logits = torch.randn(5, 7)
    dist = MultiCategorical(logits, [3, 4])
    actions = dist.sample()
    assert actions.shape == (5, 2) and actions[:, 0].max() < 3 and actions[:, 1].max() < 4
    a, b = (
        torch.distributions.Categorical(logits=logits[:, :3]),
        torch.distributions.Categorical(logits=logits[:, 3:]),
    )
    torch.testing.assert_close(dist.log_prob(actions), a.log_prob(actions[:, 0]) + b.log_prob(actions[:, 1]))
    torch.testing.assert_close(dist.entropy(), a.entropy() + b.entropy())
    assert torch.equal(dist.mode, torch.stack([logits[:, :3].argmax(1), logits[:, 3:].argmax(1)], 1))


def test_popgym_environments_are_encoded_and_multidiscrete_actions_step():
    spec = env_spec("AutoencodeEasy")  # Tuple(Discrete(2), Discrete(4)) observations: 6 one-hot features
    assert spec.observation_size == 6 and spec.action_sizes == (4,)
    pool = EnvPool("MineSweeperEasy", n=2, seed=0)  # MultiDiscrete([4 4]) actions
    assert pool.spec.action_sizes == (4, 4)
    step = pool.step(torch.tensor([[0, 1], [2, 3]]))
    assert step.observations.shape == (2, pool.spec.observation_size)
    with pytest.raises(DataError, match=r"actions must be \(n, A\) = \(2, 2\)"):
        pool.step(torch.zeros(2, 1, dtype=torch.long))


def test_unknown_environments_and_unusable_keys_are_refused_with_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="did you mean RepeatPreviousEasy"):
        make_env("RepeatPrevousEasy")
    with pytest.raises(ConfigError, match="Discrete or MultiDiscrete"):
        env_spec("Pendulum-v1")
    data = {"env": ENV, "n_envs": 2, "rollout_steps": 4, "total_steps": 16}
    with pytest.raises(ConfigError, match=r"train\.tbptt is for supervised training"):
        train_run(write_run_config(tmp_path, "rl", data, {"hidden_size": 4}, {"tbptt": 2, "batch_size": 2}))
    with pytest.raises(ConfigError, match=r"cannot pass data\.n_envs 2"):
        train_run(write_run_config(tmp_path, "rl", data, {"hidden_size": 4}, {"batch_size": 4}))
    with pytest.raises(ConfigError, match="drop bidirectional"):
        write_run_config(tmp_path, "rl", data, {"bidirectional": True}, {"batch_size": 2})


def test_an_agent_trains_saves_and_acts_the_same_after_reload(tmp_path):
    data = {"env": ENV, "n_envs": 4, "rollout_steps": 8, "total_steps": 96, "eval_episodes": 5}
    config = write_run_config(
        tmp_path, "rl", data, {"cell": "gru", "hidden_size": 8}, {"epochs": 2, "batch_size": 2}
    )
    metrics = train_run(config, log=lambda _: None)
    run = tmp_path / "run"
    assert set(metrics["policies"]) == {"sampled", "greedy", "random"} and metrics["steps"] == 3 * 2 * 2
    rows = (run / "log.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and rows[0].startswith("step,env_steps,episode_return")
    assert (run / "returns.png").stat().st_size > 0
    saved = json.loads((run / "bundle" / "metrics.json").read_text())
    assert saved["policies"]["random"]["mean_return"] == metrics["policies"]["random"]["mean_return"]

    agent_ = rnnkit.load(run / "bundle")
    assert {"act", "reset", "predict"} <= set(agent_.verbs)
    assert agent_.evaluate()["policies"] == metrics["policies"]  # the same episodes, the same draws
    episode = [0, 2, 2, 2, 1, 2]
    twin = build_model(agent_.model.config)
    twin.load_state_dict(agent_.model.state_dict())
    state, want = None, []
    for observation in episode:  # the same weights, stepped by hand
        x = torch.nn.functional.one_hot(torch.tensor([observation]), 3).float()
        logits, _, state = twin.step(x, state)
        want.append(int(logits.argmax()))
    assert agent_.predict(episode) == want
    agent_.reset()
    assert [agent_.act(o) for o in episode] == want  # the memory carried between calls
    with pytest.raises(DataError, match=r"is not an observation of RnnkitCountdown-v0: expected Discrete"):
        agent_.act(7)
    with pytest.raises(DataError, match=r"reads no file"):
        agent_.evaluate(tmp_path / "some.csv")


def test_resume_continues_from_the_last_update(tmp_path):
    data = {"env": ENV, "n_envs": 2, "rollout_steps": 4, "total_steps": 16}
    config = write_run_config(tmp_path, "rl", data, {"hidden_size": 4}, {"epochs": 1, "batch_size": 2})
    model = build_model(
        {**config.model, "name": "recurrent_agent", "observation_size": 3, "action_sizes": [2]}
    )
    first = PPOTrainer(model, config.train, config.data, tmp_path / "run")
    (tmp_path / "run").mkdir()
    first.updates = 1  # stopped after one update
    first.fit()
    again = PPOTrainer(model, config.train, config.data, tmp_path / "run")
    history = again.fit(resume=True)
    assert [row["step"] for row in history] == [1, 2] and again.step == 2
    assert history[0] == first.history[0]
