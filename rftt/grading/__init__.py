"""Answer grading: find the final answer in model text and decide whether it equals the
gold answer (the rule-based reward of paper §3.3 stands on this).

Three stages, cheapest first:

1. ``clean_answer`` rewrites both strings (``\\dfrac``, ``\\left``, units, degrees,
   ``\\%``, thousands separators, ``$``...) and equal strings are equal answers.
2. Both are parsed by ``rftt.grading.parse`` (our own grammar: model text is never
   evaluated) into structured answers, and compared with exact rational arithmetic when
   every number involved is rational. Most answers are decided here, in microseconds.
3. Whatever is left (roots, pi, symbols, relations) is compared with SymPy in a separate
   worker process, under a hard time limit: a stuck SymPy call is killed with its
   process, which works from any thread (``signal.alarm`` only works in the main thread).

Decisions a user should know:
- Exact by default: 0.5 equals 1/2, 2.49 does not equal 2.5. Two tolerances for rounded
  decimals. When the GOLD is a decimal literal (it is itself a rounded value, "0.33") and
  the prediction is an exact form without decimals ("1/3", "\\pi"), the prediction is
  accepted if it rounds to the gold at the gold's number of decimal places (strictly
  within half a unit of the last place; a tie such as 29/20 against 1.5 is rejected); the
  price: an exact prediction that merely rounds to a decimal gold (49/100 against 0.5) is
  accepted too. When the PREDICTION is a decimal and the gold a fraction with no finite
  decimal expansion (1/3, 1/6), the decimal is accepted if it is the fraction rounded at
  its last shown digit with at least two significant digits (0.33 and 0.1666666666666667
  yes, 0.3 no); a fraction with a finite expansion (1/8) must be given in full.
- A label before the value (``x =``, ``(p, q) =``, ``f(x) =``, ``AB =``) is dropped against
  a bare value; against another label or an equation both sides are compared as
  equations (``y = \\frac{x+1}{2}`` equals ``x - 2y + 1 = 0``; ``x = 3`` is not ``y = 3``).
- An inequality in one variable is the interval it describes (``-y < 2`` is
  ``(-2, \\infty)``); other inequalities and equations are equal when one is a constant
  multiple of the other (positive for inequalities).
- Several boxes at the end of a response (``\\boxed{2}, \\boxed{5}``) are one answer, a set.
- Percent signs are dropped; 50% equals 50, not 0.5 (accepting x100 or /100 makes the
  reward exploitable).
- ``(1, 2)`` is an ordered pair or an open interval; both compare element by element with
  the same brackets. Sets, bare lists ``1, 2`` and ``a \\pm b`` are order-free.
- ``\\log`` without a base is the natural logarithm.
- Unparseable answers (prose, unknown commands) are equal only when their normalised
  strings are.
"""

from rftt.grading.compare import compare_answers
from rftt.grading.extract import extract_answer, extract_gsm8k_answer
from rftt.grading.normalize import normalize_answer
from rftt.grading.verdict import is_equiv
from rftt.grading.worker import warm_up
