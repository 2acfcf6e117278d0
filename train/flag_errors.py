"""Command-line errors in one line with exit status 2, where absl and ml_collections give a
traceback and status 1: ``app.run(main, flags_parser=flag_errors.parser(_CONFIG))``.

Three kinds need digging out of the exception chain:
- a misspelt override (``--config.train.stpes=5``): ml_collections raises an AttributeError
  around a KeyError whose text holds the "did you mean" hint;
- a config file that does not exist: ``config_flags`` records the failure and raises only when
  the config is first read, so the parser reads it once;
- an error inside ``get_config`` (``default.py:runlocal,foo=1``): the ValueError at the bottom of
  the chain names the argument, the flag error around it carries a formatted traceback.
``--traceback`` shows the full stack instead.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence

from absl import flags

_DID_YOU_MEAN = re.compile(r'Did you mean "([^"]+)" instead of "([^"]+)"\?')


def _chain(e: BaseException) -> list[BaseException]:
    """``e`` and its causes, outermost first."""
    out: list[BaseException] = []
    while e is not None and e not in out:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _text(e: BaseException) -> str:
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def _arg(argv: Sequence[str], name: str) -> str | None:
    """The ``--name=value`` (or ``--name value``) argument of ``argv`` as typed."""
    for i, a in enumerate(argv):
        if a.startswith(f"--{name}="):
            return a
        if a == f"--{name}" and i + 1 < len(argv):
            return f"--{name}={argv[i + 1]}"
    return None


def one_line(e: BaseException, argv: Sequence[str], config_flag: str = "config") -> str:
    """The message for flag-parsing error ``e``: names the flag as typed and what is allowed."""
    texts = [_text(x) for x in _chain(e)]
    for t in texts:  # a misspelt field of a --config.a.b override
        if m := _DID_YOU_MEAN.search(t):
            want, got = m.groups()
            for a in argv:
                if a.startswith(f"--{config_flag}.") and got in a.split("=", 1)[0].split("."):
                    path = a.split("=", 1)[0][2:].split(".")
                    where = ".".join(path[:path.index(got)])
                    return f"{a}: {where} has no field {got!r}; did you mean {want!r}?"
            return f"no config field {got!r}; did you mean {want!r}?"
    given = _arg(argv, config_flag)
    if given:
        path = given.split("=", 1)[1].split(":", 1)[0]
        if not os.path.isfile(path):
            return (f"{given}: no config file {path!r} (relative to {os.getcwd()}); pass one of "
                    "train/configs/*.py, e.g. --config=train/configs/default.py.")
    first = texts[0].strip().split("\n", 1)[0]
    if isinstance(e, flags.Error) and "Error whilst parsing" not in texts[0]:
        return first  # absl's own message already names the flag ("flag --x=y: ...")
    inner = texts[-1].strip().split("\n", 1)[0]
    return f"{given}: {inner}" if given else inner


def parser(config: flags.FlagHolder, config_flag: str = "config") -> Callable[[list[str]],
                                                                               list[str]]:
    """An absl ``flags_parser`` that parses, reads the config once (so a missing file fails
    here) and turns any error into ``error: <one line>`` on stderr and exit status 2."""

    def parse(argv: list[str]) -> list[str]:
        try:
            rest = flags.FLAGS(argv)
            if config.value is not None:
                config.value.keys()  # a config file that failed to load raises only when read
            return rest
        except (flags.Error, KeyError, AttributeError, OSError, ValueError, TypeError) as e:
            if "--traceback" in argv:
                raise
            print(f"error: {one_line(e, argv[1:], config_flag)}", file=sys.stderr, flush=True)
            sys.exit(2)

    return parse
