"""Tests for reft_mini/program.py: the safe P-CoT interpreter runs real programs and refuses hostile ones."""
import json
import time

import pytest

from reft_mini.program import ProgramResult, run_program

# ---------------------------------------------------------------------------------------------------
# Ordinary programs
# ---------------------------------------------------------------------------------------------------
SVAMP_STYLE = '''def solution():
    """There are 2 bananas in a pile on the desk. Each banana comes in a package of 13. 7 bananas are added to the pile. How many bananas are there in the pile?"""
    num_bananas_in_package = 13
    num_bananas_initial = 2
    num_bananas_added = 7
    num_bananas_total = num_bananas_initial + num_bananas_added
    num_packages_total = num_bananas_total // num_bananas_in_package
    num_bananas_left = num_bananas_total % num_bananas_in_package
    result = num_bananas_left
    return result
'''


def test_svamp_style_program_returns_its_result():
    res = run_program(SVAMP_STYLE)
    assert res == ProgramResult(9, None) and res.ok and type(res.value) is int


def test_result_is_frozen_and_ok_reflects_error():
    res = run_program("result = 1")
    with pytest.raises(Exception):
        res.value = 2
    assert res.ok and not run_program("result = 1/0").ok


@pytest.mark.parametrize("source, expected", [
    ("result = 3 * 4 - 2", 10),
    ("answer = 7 / 2", 3.5),
    ("result = 5\nanswer = 6", 5),                              # `result` wins over `answer`
    ("import math\nresult = math.sqrt(16) + math.floor(2.7) + math.pi * 0", 6.0),
    ("import math as m\nresult = m.ceil(2.1)", 3),
    ("from math import gcd, pi\nresult = gcd(12, 18) + round(pi, 2)", 9.14),
    ("result = math.factorial(5) + math.comb(5, 2)", 130),      # math is available without import
    ("def solution():\n    a, b = 3, 4\n    return (a * a + b * b) ** 0.5", 5.0),
    ("def solution():\n    total = 0\n    for i in range(1, 11):\n        if i % 2 == 0:\n            continue\n"
     "        total += i\n    return total", 25),
    ("def solution():\n    n = 0\n    while True:\n        n += 1\n        if n >= 5:\n            break\n    return n", 5),
    ("def solution():\n    prices = [3, 5, 2]\n    prices[0] = 4\n    return sum(prices) + max(prices) - min(prices) + len(prices)", 17),
    ("def solution():\n    xs = [x * x for x in range(5) if x % 2 == 0]\n    return sum(xs) + sum(x for x in xs)", 40),
    ("def solution():\n    q, r = divmod(17, 5)\n    return q * 10 + r", 32),
    ("def solution():\n    x = 2.5\n    print(f'x is {x:.2f}', x)\n    return x if x > 2 else -x", 2.5),
    ("def solution() -> float:\n    total: float = 0.5\n    total *= 4\n    return total", 2.0),
    ("def solution():\n    return -abs(-3) + int('12') + int(7.9) + float('0.5')", 16.5),
    ("def solution():\n    x = 10\n    x //= 3\n    x **= 2\n    x -= 1\n    return x", 8),
    ("def solution():\n    t = (1, 2, 3)\n    return t[-1] + t[0:2][1] + sorted([3, 1, 2])[0] + (2 in t)", 7),
    ("result = 1 if 2 < 3 < 4 and not False or 0 else 2", 1),
    ("result = pow(2, 10) + pow(3, 4, 5) + 2 ** -1", 1025.5),
    ("x = 3\ndef solution():\n    return x * 2", 6),               # module variables are visible
])
def test_ordinary_programs(source, expected):
    res = run_program(source)
    assert res.ok, res.error
    assert res.value == pytest.approx(expected) and type(res.value) is type(expected)


def test_parse_cache_gives_same_answer_twice():
    assert run_program(SVAMP_STYLE) == run_program(SVAMP_STYLE)


def test_budgets_are_keyword_arguments():
    loop = "def solution():\n    t = 0\n    for i in range(1000):\n        t += i\n    return t"
    assert run_program(loop).value == 499500
    assert "step budget" in run_program(loop, max_steps=100).error
    assert "time budget" in run_program(loop, timeout_s=0.0).error
    assert "bits" in run_program("result = 2 ** 100", max_int_bits=50).error
    assert "too long" in run_program("result = len([0] * 20)", max_seq_len=10).error
    assert "print" in run_program("for i in range(3): print(i)\nresult = 1", max_prints=2).error


# ---------------------------------------------------------------------------------------------------
# ReFT's SVAMP P-CoT programs (real data)
# ---------------------------------------------------------------------------------------------------
# Gold answers in this file were rounded by the annotators, so a few programs compute a slightly
# different number: 0.16665 vs "0.165", 0.24917 vs "0.25", 6.4538 vs "6.45". Within the paper's
# tolerance (|pred - gold| <= 1e-2) all 3043 match; at a strict 0.05% relative tolerance exactly these
# three are "misses".
ROUNDING_MISSES = {"svamp_1418", "svamp_1924", "svamp_1940"}


def test_svamp_python_programs_reproduce_answer_value(shared_datasets):
    records = json.loads((shared_datasets / "mwp_ReFT" / "svamp_python_sdp.json").read_text())
    assert len(records) == 3043
    within_tolerance, strict_misses = 0, set()
    for rec in records:
        res = run_program(rec["answer_cot"])
        assert res.ok, (rec["item_id"], res.error)
        gold = float(rec["answer_value"])
        within_tolerance += abs(res.value - gold) <= 1e-2
        if abs(res.value - gold) > 5e-4 * max(1.0, abs(gold)):
            strict_misses.add(rec["item_id"])
    assert within_tolerance >= 3040
    assert strict_misses == ROUNDING_MISSES


# ---------------------------------------------------------------------------------------------------
# Hostile and broken programs: each must come back as an error, quickly, without side effects.
# ---------------------------------------------------------------------------------------------------
HOSTILE = {
    "import os": "import os\nresult = 1",
    "from os import system": "from os import system\nresult = 1",
    "import subprocess as math": "import subprocess as math\nresult = 1",
    "__import__": "result = __import__('os')",
    "subclasses escape": "result = ().__class__.__bases__[0].__subclasses__()",
    "eval": "result = eval('1')",
    "exec": "exec('x=1')\nresult = 1",
    "compile": "result = compile('1', 'f', 'eval')",
    "open": "f = open('f', 'w')\nresult = 1",
    "getattr": "result = getattr(1, 'real')",
    "globals": "result = globals()",
    "locals": "result = locals()",
    "vars": "result = vars()",
    "builtins name": "result = __builtins__",
    "infinite while": "while True:\n    pass",
    "while counting forever": "x = 0\nwhile x >= 0:\n    x += 1\nresult = x",
    "recursive f": "def f():\n    return f()\nresult = f()",
    "recursive solution": "def solution():\n    return solution()",
    "tower power": "result = 9**9**9",
    "repeated squaring": "x = 2\nfor i in range(100):\n    x = x * x\nresult = x",
    "shift bomb": "result = 1 << 10**9",
    "huge list": "result = len([0] * 10**10)",
    "huge string": "result = len('a' * 10**9)",
    "doubling string": "s = 'ab'\nfor i in range(100):\n    s = s + s\nresult = 1",
    "sum of huge range": "result = sum(range(10**12))",
    "huge comprehension": "result = len([i for i in range(10**9)])",
    "print spam": "for i in range(10**6):\n    print('spam')\nresult = 1",
    "raise SystemExit": "raise SystemExit",
    "exit()": "exit()\nresult = 1",
    "quit()": "quit()",
    "syntax error": "def solution(:\n    return 1",
    "division by zero": "result = 1 / 0",
    "string result": "def solution():\n    return 'seventy-two'",
    "None result": "def solution():\n    x = 1",
    "bool result": "result = True",
    "float inf": "result = float('inf')",
    "float nan": "result = float('nan')",
    "math.inf": "result = math.inf",
    "overflow": "result = 10.0 ** 400",
    "complex": "result = (-8) ** 0.5",
    "empty text": "",
    "only a docstring": '"""just words"""',
    "lambda": "f = lambda: 1\nresult = f()",
    "lambda call": "result = (lambda: 1)()",
    "class": "class A:\n    pass\nresult = 1",
    "with": "with open('f') as f:\n    result = 1",
    "try": "try:\n    result = 1\nexcept Exception:\n    result = 2",
    "math.__dict__": "result = math.__dict__",
    "math.sqrt.__self__": "result = math.sqrt.__self__",
    "method call": "xs = [1]\nxs.append(2)\nresult = 1",
    "format escape": "result = '{0.__class__}'.format(1)",
    "f-string width bomb": "s = f'{1:999999999}'\nresult = 1",
    "percent format": "s = '%999999999d' % 1\nresult = 1",
    "round bomb": "result = round(5, -10**9)",
    "factorial bomb": "result = math.factorial(10**6)",
    "nested list bomb": "x = [[0] * 10000] * 10000\nresult = 1",
    "function as value": "f = print\nresult = 1",
    "global": "def solution():\n    global x\n    return 1",
    "del": "x = 1\ndel x\nresult = 1",
    "dict": "result = {'a': 1}['a']",
    "walrus": "result = (y := 3)",
    "deep nesting": "result = " + "abs(" * 150 + "1" + ")" * 150,
    "long unary chain": "result = " + "-" * 5000 + "1",
    "too long": "result = 1\n" + "x = 1\n" * 5000,
    "null byte": "result = 1\x00",
    "yield": "def solution():\n    yield 1",
    "async": "async def solution():\n    return 1",
    "decorator": "@print\ndef solution():\n    return 1",
    "argument": "def solution(x=1):\n    return x",
    "return outside": "return 5",
    "break outside": "break",
    "bytes literal": "result = len(b'abc')",
    "star args": "result = max(*[1, 2])",
}


def test_at_least_thirty_hostile_programs():
    assert len(HOSTILE) >= 30


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_is_refused_quickly(name):
    start = time.perf_counter()
    res = run_program(HOSTILE[name])                 # must not raise
    elapsed = time.perf_counter() - start
    assert isinstance(res, ProgramResult)
    assert not res.ok and res.value is None and isinstance(res.error, str) and res.error
    assert elapsed < 2.0, f"{name} took {elapsed:.2f}s"


def test_refusals_name_the_construct_and_line():
    assert run_program("x = 1\nimport os").error == "import of 'os' not allowed (line 2)"
    assert run_program("result = eval('1')").error == "call of 'eval' not allowed (line 1)"
    assert "attribute '__dict__' not allowed (line 1)" == run_program("result = math.__dict__").error
    assert "lambda not allowed (line 3)" in run_program("x = 1\ny = 2\nf = lambda: 1").error
    assert run_program("for i in range(2):\n    pass\nelse:\n    break").error == \
        "break outside a loop not allowed (line 4)"
    # Dead code is checked too: the whole tree must be on the whitelist.
    assert "not allowed" in run_program("result = 1\nif False:\n    import os").error


def test_non_string_source_is_an_error_not_an_exception():
    for bad in (None, b"result = 1", 72):
        assert not run_program(bad).ok


def test_hostile_programs_leave_no_trace(tmp_path):
    target = tmp_path / "pwned"
    path = str(target)
    attempts = [
        f"open({path!r}, 'w').write('x')\nresult = 1",
        f"import os\nos.system('touch {path}')\nresult = 1",
        f"__import__('os').system('touch {path}')\nresult = 1",
        f"import pathlib\npathlib.Path({path!r}).write_text('x')\nresult = 1",
        f"import subprocess\nsubprocess.run(['touch', {path!r}])\nresult = 1",
        f"[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen'][0](['touch', {path!r}])\nresult = 1",
        f"def solution():\n    print('x', file=open({path!r}, 'w'))\n    return 1",
        f"result = 1 if open({path!r}, 'w') else 2",
    ]
    for source in attempts:
        res = run_program(source)
        assert not res.ok, source
        assert not target.exists(), source
    assert list(tmp_path.iterdir()) == []


def test_print_writes_nothing(capsys):
    res = run_program("def solution():\n    print('hello')\n    return 1")
    assert res.ok and capsys.readouterr().out == ""
