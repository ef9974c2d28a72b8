"""Sort a mutation run's survivors (``reports/mutation/<module>-survivors.txt``) into kinds.

    .venv/bin/python scripts/mutation_survivors.py reports/mutation/pipeline-survivors.txt [--list]

Two kinds are told apart mechanically, because they can only be killed by asserting on wording:

* ``text``: the mutant changes nothing but string literals (the case of SQL keywords, which SQLite
  and PostgreSQL ignore; a log line's or a metric's help text; ``"XX...XX"`` around a message);
* ``log``: the changed line is part of a logging call (its arguments: what a log line shows).

Everything else is ``code``, printed per function with ``--list``: those are the survivors to read
(some are equivalent too, e.g. a timeout of 30 s made 31 s; ``scripts/mutation_check.sh`` reports
them, and README's Testing section says which are which). Prints JSON counts.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import tokenize
from collections import Counter, defaultdict
from pathlib import Path

HEADER = re.compile(r"^# (\S+): (survived|no tests)\n", re.M)
LOG_CALL = re.compile(r"\b(log|logger|logging)\.(debug|info|warning|error|exception|critical)\(")


def _tokens(line: str) -> list[tuple[int, str]] | None:
    try:
        return [(t.type, t.string) for t in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline)
                if t.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT, tokenize.ENDMARKER)]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None


STRING = re.compile(r'[rbfu]*"(?:[^"\\]|\\.)*"|[rbfu]*\'(?:[^\'\\]|\\.)*\'')


def _strings_only(before: str, after: str) -> bool:
    a, b = _tokens(before), _tokens(after)
    if a is None or b is None:  # a line of a statement that goes on (an open bracket): compare without strings
        return STRING.sub('""', before).strip() == STRING.sub('""', after).strip()
    if len(a) != len(b):
        return False
    return all(x == y or (x[0] == y[0] == tokenize.STRING) for x, y in zip(a, b, strict=True))


def kind(diff: str) -> str:
    """``text``, ``log`` or ``code`` for one mutant's diff (see the module docstring)."""
    lines = diff.splitlines()
    changed = [i for i, line in enumerate(lines) if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in lines if line.startswith("+") and not line.startswith("+++")]
    removed = [lines[i][1:] for i in changed]
    if len(removed) == len(added) and removed and all(map(_strings_only, removed, added)):
        return "text"
    original = [line[1:] for line in lines if not line.startswith(("+", "---", "@@"))]
    index = {i: n for n, i in enumerate(i for i, line in enumerate(lines)
                                           if not line.startswith(("+", "---", "@@")))}
    for i in changed:  # inside a logging call: one opened on this line or up to three lines before, not closed
        at = index[i]
        for start in range(at, max(-1, at - 4), -1):
            if LOG_CALL.search(original[start]):
                before = "".join(original[start:at])
                if start == at or before.count("(") > before.count(")"):
                    return "log"
                break
    return "code"


def sort_survivors(text: str) -> dict[str, list[str]]:
    """Mutant names by kind; mutants no chosen test ran are under "no tests"."""
    parts = HEADER.split(text)
    kinds: dict[str, list[str]] = defaultdict(list)
    for name, status, diff in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        kinds[kind(diff) if status == "survived" else "no tests"].append(name)
    return kinds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("survivors", type=Path, help="a <module>-survivors.txt written by mutation_check.sh")
    ap.add_argument("--list", action="store_true", help="print the 'code' survivors per function")
    args = ap.parse_args()
    kinds = sort_survivors(args.survivors.read_text())
    print(json.dumps({k: len(kinds.get(k, [])) for k in ("text", "log", "code", "no tests")}))
    if args.list:
        per_function = Counter(re.sub(r"__mutmut_\d+$", "", name) for name in kinds.get("code", []))
        for function, count in per_function.most_common():
            print(f"{count:4d}  {function}")


if __name__ == "__main__":
    main()
