"""State / trace tokenizer: round trips, layout, traces, HF export."""

from fractions import Fraction

import jax
import numpy as np
import pytest
from helpers import random_states

from nnx_models import tokenizer as T
from search import game


@pytest.mark.parametrize(
    "cfg",
    [
        T.TokenizerConfig(n_max=5, max_digits=5),
        T.TokenizerConfig(n_max=4, number_encoding="whole", whole_max=60),
    ],
)
def test_round_trip_random_states(cfg):
    rng = np.random.default_rng(0)
    state = random_states(
        rng, 200, cfg.n_max, max_abs=200 if cfg.number_encoding == "whole" else 32767
    )
    tokens = np.asarray(jax.jit(T.encode, static_argnums=1)(state, cfg))
    assert tokens.shape == (200, T.seq_len(cfg)) and tokens.dtype == np.int32
    assert tokens.max() < cfg.vocab_size and tokens.min() >= 0
    fits = lambda f: abs(f.numerator) <= cfg.max_value and f.denominator <= cfg.max_value
    n_frac = n_neg = n_ovf = 0
    for k in range(200):
        values, target = T.decode(tokens[k])
        want = game.values(state, k)
        assert values == [v if fits(v) else None for v in want]
        tgt = Fraction(int(state.target_num[k]), int(state.target_den[k]))
        assert target == (tgt if fits(tgt) else None)
        n_frac += sum(v.denominator > 1 for v in want)
        n_neg += sum(v < 0 for v in want)
        n_ovf += sum(not fits(v) for v in want)
    assert n_frac > 50 and n_neg > 50  # the sample really exercised fractions and negatives
    if cfg.number_encoding == "whole":
        assert n_ovf > 10  # and values beyond whole_max (encoded as <ovf>)


def test_layout_markers_and_positions():
    for cfg in (T.TokenizerConfig(n_max=4), T.TokenizerConfig(n_max=7, number_encoding="whole")):
        rules = game.Rules(n_max=cfg.n_max)
        tok = T.encode_problems([[1, 2, 3]], [24], cfg, rules)[0]
        slots = T.slot_positions(cfg)
        assert tok[0] == T.BOS and tok[1] == T.TGT and tok[T.summary_position(cfg)] == T.SUM
        # the marker of slot k sits field_width tokens before its summarising position
        assert list(tok[slots - cfg.field_width]) == [T.SLOT0 + k for k in range(cfg.n_max)]
        assert tok[slots[3] - cfg.field_width + 1] == T.DEAD  # slot 3 is empty
    # the vocabulary does not depend on n_max (one embedding table serves every n)
    assert T.TokenizerConfig(n_max=4).vocab_size == T.TokenizerConfig(n_max=16).vocab_size
    golden = T.encode_problems(
        [[8, 3]], [Fraction(8, 3)], T.TokenizerConfig(n_max=2), game.Rules(n_max=2)
    )
    words = [T.vocab(T.TokenizerConfig())[t] for t in golden[0]]
    assert (
        " ".join(w for w in words if w != "<pad>") == "<bos> <tgt> + 8 / 3 <s0> + 8 <s1> + 3 <sum>"
    )


def test_trace_matches_host_replay():
    cfg, rules = T.TokenizerConfig(n_max=4), game.Rules(n_max=4)
    a = lambda i, j, op: game.encode_action(i, j, op, 4)
    # 8 / (3 - 8/3) = 24, and a 2-move partial trace padded with -1
    actions = np.array(
        [[a(2, 3, 4), a(1, 2, 2), a(0, 1, 4)], [a(0, 1, 0), a(0, 2, 1), -1]], np.int32
    )
    numbers, targets = [[8, 3, 8, 3], [1, 2, 3, 4]], [24, 24]
    tokens, mask = jax.jit(T.encode_trace, static_argnums=(2, 3))(
        game.new_state(numbers, targets, rules), actions, cfg, rules
    )
    tokens, mask = np.asarray(tokens), np.asarray(mask)
    assert tokens.shape == mask.shape == (2, T.trace_len(cfg))
    L, w = T.seq_len(cfg), 5 + cfg.field_width
    for b in range(2):
        played = [x for x in actions[b] if x >= 0]
        assert not mask[b, :L].any() and mask[b, L:].sum() == len(played) * w + 1
        assert tokens[b, L + len(played) * w] == T.EOS
        for k, act in enumerate(played):
            seg = list(tokens[b, L + k * w : L + (k + 1) * w])
            i, j, op = game.decode_action(int(act), 4)
            assert seg[:4] == [T.SLOT0 + i, T.OP0 + op, T.SLOT0 + j, T.EQ] and seg[-1] == T.SEP
            # the value now in slot i, from an independent Fraction replay
            vals = [Fraction(x) for x in numbers[b]] + [None] * (4 - len(numbers[b]))
            for x in played[: k + 1]:
                ii, jj, oo = game.decode_action(int(x), 4)
                p, q = vals[ii], vals[jj]
                vals[ii], vals[jj] = [p + q, p * q, p - q, q - p, p / q, q / p][oo], None
            assert T._parse_field(seg[4:-1]) == vals[i]
    assert game.replay(numbers[0], 24, list(actions[0]), rules).solved


def test_hf_export_loads_with_autotokenizer(tmp_path):
    from transformers import AutoTokenizer

    cfg = T.TokenizerConfig(n_max=4, number_encoding="whole", whole_max=30)
    path = T.save_hf_tokenizer(cfg, str(tmp_path / "tok"))
    hf = AutoTokenizer.from_pretrained(path)
    ids = T.encode_problems([[8, 3, 8, 3]], [24], cfg, game.Rules(n_max=4))[0].tolist()
    text = " ".join(T.vocab(cfg)[t] for t in ids)
    assert hf(text, add_special_tokens=False)["input_ids"] == ids
    assert hf.convert_ids_to_tokens(ids)[:4] == ["<bos>", "<tgt>", "+", "<w24>"]
    assert len(hf) == cfg.vocab_size and hf.pad_token_id == T.PAD and hf.eos_token_id == T.EOS
    assert T.load_config(path) == cfg


def test_bad_configs_and_inputs_raise():
    with pytest.raises(ValueError, match="number_encoding"):
        T.TokenizerConfig(number_encoding="bytes")
    with pytest.raises(ValueError, match="n_max"):
        T.TokenizerConfig(n_max=17)
    with pytest.raises(ValueError, match="max_digits"):
        T.TokenizerConfig(max_digits=0)
    state = game.new_state([[1, 2]], [3], game.Rules(n_max=5))
    with pytest.raises(ValueError, match="n_max=4"):
        T.encode(state, T.TokenizerConfig(n_max=4))
    with pytest.raises(ValueError, match="<bos>"):
        T.decode(np.zeros(10, np.int32))
    with pytest.raises(FileNotFoundError, match="zero24_tokenizer.json"):
        T.load_config("/nonexistent")


def test_packed_layout_one_token_per_number():
    cfg = T.TokenizerConfig(n_max=7, number_encoding="packed")
    tok = T.encode_problems([[1, 2, 3]], [Fraction(-8, 3)], cfg, game.Rules(n_max=7))[0]
    assert len(tok) == T.seq_len(cfg) == 7 + 3
    assert tok[0] == T.BOS and tok[T.summary_position(cfg)] == T.SUM
    assert tok[1] == (1 << 30) | (8 << 15) | 3  # the target, -8/3
    assert list(tok[T.slot_positions(cfg)]) == [(k << 15) | 1 for k in (1, 2, 3)] + [-1] * 4
    assert T.decode(tok) == ([Fraction(1), Fraction(2), Fraction(3)], Fraction(-8, 3))
    with pytest.raises(ValueError, match="malformed packed entry"):
        T.decode(np.array([T.BOS, 1, 0, 1, T.SUM], np.int32))  # den 0
