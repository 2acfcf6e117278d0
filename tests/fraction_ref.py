"""Pure-Python Fraction reference of the game's arithmetic, shared by the game and solver tests.

Written independently of search/game.py and search/solver.py (no shared code) so that it can
catch their bugs.
"""

from fractions import Fraction

from search import game


def ref_op(x: Fraction, y: Fraction, op: int, rules: game.Rules) -> Fraction | None:
    """x op y (ops +, *, a-b, b-a, a/b, b/a) under the rules, or None when illegal."""
    if (op == 4 and y == 0) or (op == 5 and x == 0):
        return None
    r = (x + y, x * y, x - y, y - x, x / y if y else None, y / x if x else None)[op]
    if abs(r.numerator) > rules.max_abs or r.denominator > rules.max_abs:
        return None
    if not rules.fractions and (r.denominator != 1 or r <= 0):
        return None
    return r
