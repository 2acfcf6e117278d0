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

    rules = game.Rules(n_max=4)
    tok_cfg = __import__("nnx_models.tokenizer", fromlist=["x"]).TokenizerConfig(n_max=4)
    start = problems.problems_to_state(problems.generate("g24", 2, 0, "train"), rules)
    solved = np.array([[True, False, False, False], [True, True, True, True]])
    acts = np.full((2, 4, 3), -1, np.int32)
    acts[..., 0] = 0  # one legal move (slot 0 + slot 1) per rollout
    z = jnp.zeros((2, 4), jnp.int32)
    ro = baselines.Rollouts(actions=jnp.asarray(acts), solved=jnp.asarray(solved),
                            complete=z > 0, final_num=z, final_den=z + 1, evals=z + 1)
    b = grpo.rollout_batch(rules, tok_cfg, ro, start, normalize=False)
    adv = b["advantage"].reshape(2, 4, 3)[..., 0]
    np.testing.assert_allclose(adv, [[0.75, -0.25, -0.25, -0.25], [0, 0, 0, 0]])
    np.testing.assert_array_equal(b["weight"].reshape(2, 4, 3), [[[1, 0, 0]] * 4] * 2)
    np.testing.assert_array_equal(b["value"].reshape(2, 4, 3)[..., 0], solved.astype(float))


def test_curriculum_pools_and_batches():
    from search import game
    from train import selfplay

    c = tiny_config(**{"sl.curriculum": ("g24", "n5"), "data.n_max": 5, "sl.train_problems": 6})
    cfg = c.to_dict()
    cur = selfplay.Curriculum(cfg, game.Rules(n_max=5))
    one, cls1 = cur.batch(1, 12, 0, 3)
    assert (cls1 == 0).all() and all(len(p.numbers) == 4 for p in one)
    two, cls2 = cur.batch(2, 40, 0, 3)
    assert set(cls2.tolist()) == {0, 1}  # both open classes are drawn
    assert all(len(p.numbers) == 4 + k for p, k in zip(two, cls2, strict=True))
    again, _ = cur.batch(2, 40, 0, 3)  # a pure function of (seed, iteration)
    assert [str(p) for p in again] == [str(p) for p in two]
    assert all(p in cur.pool(1) for p in two if len(p.numbers) == 5)
    with pytest.raises(ValueError, match="class 'n5' has up to 5 numbers but states have n_max=4"):
        selfplay.Curriculum(cfg, game.Rules(n_max=4))
    from train.configs import search  # the config argument gives states enough slots

    c = search.get_config("curriculum=g24+n5+n6")
    assert (c.sl.curriculum, c.data.n_max, c.data.problem_class) == (("g24", "n5", "n6"), 6, "g24")
