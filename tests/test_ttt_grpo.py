"""TTT and GRPO pieces that need no search-and-learn run (the tiny end-to-end runs of both modes
live in test_search_and_learn.py, where they reuse its run and compiled functions)."""


import numpy as np
import pytest

from tests.test_search_and_learn import tiny_config
from train import grpo, ttt


def test_ttt_needs_a_source_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="ttt.source"):
        ttt.main(tiny_config(**{"ttt.source": str(tmp_path / "none")}), str(tmp_path / "w"))


def test_grpo_advantages_are_group_relative():
    import jax.numpy as jnp

    from search import baselines, game, problems
    from train import relabel  # noqa: F401  (rollout_batch replays through it)

    s = {"rules": game.Rules(n_max=4), "tok_cfg": __import__(
        "nnx_models.tokenizer", fromlist=["x"]).TokenizerConfig(n_max=4)}
    start = problems.problems_to_state(problems.generate("g24", 2, 0, "train"), s["rules"])
    solved = np.array([[True, False, False, False], [True, True, True, True]])
    acts = np.full((2, 4, 3), -1, np.int32)
    acts[..., 0] = 0  # one legal move (slot 0 + slot 1) per rollout
    z = jnp.zeros((2, 4), jnp.int32)
    ro = baselines.Rollouts(actions=jnp.asarray(acts), solved=jnp.asarray(solved),
                            complete=z > 0, final_num=z, final_den=z + 1, evals=z + 1)
    b = grpo.rollout_batch(s, ro, start, normalize=False)
    adv = b["advantage"].reshape(2, 4, 3)[..., 0]
    np.testing.assert_allclose(adv, [[0.75, -0.25, -0.25, -0.25], [0, 0, 0, 0]])
    np.testing.assert_array_equal(b["weight"].reshape(2, 4, 3), [[[1, 0, 0]] * 4] * 2)
    np.testing.assert_array_equal(b["value"].reshape(2, 4, 3)[..., 0], solved.astype(float))
