"""Source lines of code (SLOC) of .py files.

SLOC: lines holding a token that is not a comment, outside module, class and function
docstrings (blank lines, comments and docstrings do not count).

The measure quoted for issue 14 (the shrink). Usage:

    python scripts/sloc.py alignrec_data alignrec_model pipelines    # per file, then TOTAL
    git show REV:alignrec_data/config.py | python scripts/sloc.py -  # one file at a revision
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path

_SKIP = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
}
_SCOPES = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def sloc(source: str) -> int:
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, _SCOPES) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    docstrings.update(range(first.lineno, first.end_lineno + 1))
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in _SKIP:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(lines - docstrings)


def main(argv: list[str]) -> int:
    if argv == ["-"]:
        print(sloc(sys.stdin.read()))
        return 0
    files = []
    for arg in argv:
        path = Path(arg)
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    total = 0
    for path in files:
        n = sloc(path.read_text(encoding="utf-8"))
        total += n
        print(f"{n:6d} {path}")
    print(f"{total:6d} TOTAL")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
