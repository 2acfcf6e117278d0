r"""Solve rate vs search compute on evaluation splits, from the command line.

    python -m search.eval --workdir=runs/eval_uniform --model=uniform --splits=g24:test:100 \
        --methods=uniform_mcts,exhaustive_dfs --budgets=1,4,16,64
    python -m search.eval --workdir=runs/d1 --model=hf:runs/d1/export --csv=24.csv \
        --splits=tot100,tsllm362 --methods=mcts,beam,dfs,sample
    python -m search.eval --workdir=runs/mine --model=hf:models/flagship --problems=mine.csv

The split specs (``tot100``, ``g24:test:100``, ``file:<path>`` = ``--problems``), the methods and
what a budget means for each are in ``search/sweep.py``'s docstring. Outputs in
``<workdir>/search_eval``: results.json, results.md, per_problem.jsonl, solve_rate_<split>.png;
the entries are merged into ``<workdir>/run.json`` if present (``scaling.run_json``).

This module is only the program name. The sweep is ``search.sweep`` (import that), the intervals
``search.stats``; the command line, which loads networks, is ``train/eval_main.py``: an entry
point may sit at the top layer, a library module in ``search/`` never imports ``train/``
(docs/architecture.md). Nothing imports this module.
"""

if __name__ == "__main__":
    from train.eval_main import cli  # only when run as a program: the CLI's layer is train/

    cli()
