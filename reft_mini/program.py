# reft_mini/program.py -- a safe, budgeted interpreter for P-CoT programs.
#
# Paper: ReFT (Luong et al. 2024), Section 3 "Reinforced Fine-Tuning". With program-based chains of
# thought (P-CoT) the model writes a small Python program,
#
#     def solution():
#         """<the question>"""
#         num_apples = 5
#         num_eaten = 2
#         result = num_apples - num_eaten
#         return result
#
# and the reward comes from *running* it: 1 when the returned number is the gold answer, 0.1 when the
# program ran and returned some other number, 0 when it failed. The official code runs these programs
# with `exec` in a process pool (10 s timeout, math and sympy in the globals). Here the programs come
# from a policy that PPO is actively pushing around, so we treat them as untrusted: reward.py calls
# `run_program`, which never raises, never hangs, and can only compute numbers.
#
# ---------------------------------------------------------------------------------------------------
# Why an interpreter, and not `exec` with trimmed builtins?
#
# "exec(code, {'__builtins__': {}})" looks safe and is not. Every Python object carries its class,
# and from any class you can climb to `object` and list *all* classes loaded in the process:
#
#     ().__class__.__bases__[0].__subclasses__()   # tuple -> object -> every class, incl. file/OS wrappers
#
# From there `os.system`, `open`, `sys.modules`, ... are a few attribute hops away, with no builtin
# names needed at all. Blacklisting attribute names by string is whack-a-mole (getattr-free tricks via
# format strings, generator frames `gi_frame.f_globals`, etc.), and `exec` cannot bound memory or CPU
# anyway: `9**9**9` or `[0]*10**10` stall the process inside a single C call, where no timeout written
# in Python can interrupt it. A process pool with kill-on-timeout fixes hangs but not escapes, and
# costs milliseconds per program.
#
# So we never hand the model's code to Python's compiler. We parse it with `ast.parse` (parsing runs
# no code), reject every node type that is not on a short whitelist, and walk the tree ourselves.
# Runtime values are only int, float, bool, str, None, and flat lists/tuples/ranges of those, so the
# interpreter never touches an object whose methods the program could have defined, and it never
# reads a real Python attribute of a runtime value (the only attribute syntax allowed is
# `math.<name from a fixed list>`, resolved by a dict lookup in our own table).
#
# Budgets (each a keyword argument of run_program; the defaults are generous for word problems):
#   max_steps        every statement/expression node evaluated costs one step. Bounds loops
#                    (`while True: pass`) and total work, deterministically (same answer on any CPU).
#   timeout_s        wall-clock deadline, counted from the moment run_program is called (parsing
#                    included). The clock is read every CLOCK_EVERY (32) steps, and right after any
#                    step that did bulk work in C (a list of more than 16 elements copied, sorted or
#                    compared, an integer of more than 1024 bits made, a costly integer call). Steps
#                    in between are cheap (microseconds at most), and no single step may do more than
#                    a bounded amount of C work (the budgets below, checked *before* the C call), so a
#                    program stops within its time budget plus a few milliseconds.
#   max_int_bits     integers may not exceed this many bits. `**`, `*`, `<<`, factorial, comb and perm
#                    are checked *before* computing (a 10-million-digit power would stall inside C, past
#                    any timer); everything else can only grow a little and is checked after.
#   max_seq_len      lists, tuples, strings built at runtime, and any range that a builtin would
#                    consume eagerly (`sum(range(10**12))`) are bounded. Protects memory and CPU.
#   max_str_len      strings *built at runtime* (concatenation, repetition, f-strings) are bounded more
#                    tightly than lists; literal strings (the docstring) are bounded by the source.
#                    An int whose decimal digits alone would be too many is refused before it is
#                    converted (int -> text is quadratic in the digits).
#   max_alloc_bytes  a running total of the memory the program has *built*: every list/tuple slot,
#                    string character and big integer created is charged its estimated size, before it
#                    is created wherever the size is known in advance. Cumulative, not live (we cannot
#                    see what Python frees), so it over-counts a program that rebuilds the same list,
#                    but it bounds the peak: 10,000 lists of 10,000 zeros would be 800 MB. Small
#                    numbers made one per step (`x * 1.5`, a loop counter) are not charged: the step
#                    budget bounds them (100,000 steps x ~40 bytes = 4 MB).
#   max_prints       `print` is accepted (models like to print) but its output is thrown away; only
#                    this many calls are allowed, so a print loop fails fast instead of spinning.
#   max_source_chars parsing itself costs memory and time proportional to the source.
# Fixed limits (module constants, not keywords):
#   MAX_OP_COST      one C-level integer call may cost at most this many "digit operations"
#                    (CPython stores ints in 30-bit digits; a schoolbook multiply of a d1-digit by a
#                    d2-digit number costs d1*d2). Matters for `pow(a, b, m)`: every intermediate is
#                    below m, so the *size* is harmless, but 10,000-bit operands take seconds.
#   parse cache      checked trees are kept for reuse (the same program is scored again in evaluation
#                    and voting), bounded by their estimated memory (PARSE_CACHE_BYTES), least recently
#                    used first out; a tree too big for a fair share of the cache is not kept at all.
# Recursion is impossible by construction: the only user function is `solution()`, it takes no
# arguments, and calling it from inside itself is refused. Nesting depth of the syntax tree is capped
# (MAX_AST_DEPTH) so our own recursive tree walk stays far below Python's recursion limit.
#
# Scoping follows Python's rule: a name assigned anywhere in solution() (`=`, `+=`, an annotated
# assignment, a for-loop target) is local to the whole function, so reading it before its first
# assignment fails (Python's UnboundLocalError), even when a module variable has the same name.
# Comprehension variables live in their own scope and leak nowhere. (One simplification: `import`
# inside solution() binds the module for the whole program, not just the function.)
#
# The language accepted (enough for word-problem programs, nothing more): `def solution():` with no
# arguments (the only function), docstrings, assignment to names / `a, b = ...` / `xs[i] = ...`,
# `+=` etc. (on a list, `+=` and `*=` change it in place, as in Python), return, if/elif/else, for
# over range/list/tuple/str, while, break/continue, numbers, strings, f-strings, lists/tuples (flat),
# subscripts and slices, list comprehensions and generator expressions, the operators (no `@`),
# `import math` / `from math import x` as the only imports, and
# calls of abs min max round int float sum len range pow divmod bool list tuple sorted print and
# math.<whitelisted function>. No methods (`xs.append`), no keyword arguments (except to print),
# no lambda/class/try/with/raise/global/del/dict/set.
#
# The answer: if the program defines `solution`, we call it and take its return value; otherwise we
# take a top-level variable `result` (or `answer`). It must be a finite int or float (bool is refused).
# ---------------------------------------------------------------------------------------------------
from __future__ import annotations

import ast
import math
import re
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["ProgramResult", "run_program"]

# Default budgets (see the header for what each one protects against).
MAX_STEPS = 100_000
TIMEOUT_S = 1.0
MAX_INT_BITS = 10_000          # ~3,000 decimal digits: far beyond any word problem
MAX_SEQ_LEN = 10_000
MAX_STR_LEN = 1_000
MAX_PRINTS = 1_000
MAX_ALLOC_BYTES = 64 * 2**20   # 64 MB built in total: a word problem builds a few kilobytes
MAX_SOURCE_CHARS = 20_000      # GSM8K-length programs are ~1-2k characters
MAX_AST_DEPTH = 100            # fixed (not a keyword): checked once per source, and the check is cached
MAX_OP_COST = 1_000_000        # fixed: digit operations one C-level integer call may cost (~2 ms here)
CLOCK_EVERY = 32               # fixed: most steps between two looks at the clock (a look costs ~70 ns)
PARSE_CACHE_BYTES = 8 * 2**20  # estimated memory of all cached trees together
PARSE_CACHE_ENTRY_BYTES = 2**20  # a tree estimated bigger than this is not cached (parsed each time)

# Estimates behind the budgets above (CPython 3.11, 64-bit; measured, then rounded up).
_NODE_BYTES = 500      # one syntax-tree node with its fields: 360-440 bytes measured
_SLOT_BYTES = 8        # one list/tuple slot (a pointer); the element it points to is charged on its own
_FRESH_BYTES = {range: 32, str: 80}   # elements C creates anew when it unpacks these into a list:
                                      # ints (28-32 B each), 1-char strings (up to ~80 B outside Latin-1)
_BULK = 16             # a container op over more elements than this reads the clock right after
_BULK_BITS = 1024      # so does an integer operation with an answer bigger than this
_DIGIT_BITS = 30       # CPython's int digit size: the unit of MAX_OP_COST


@dataclass(frozen=True)
class ProgramResult:
    """Outcome of running one program: a number, or an error message (exactly one is not None)."""

    value: int | float | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class ProgramError(Exception):
    """A sandbox rule was broken or a budget ran out. Never escapes run_program."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


# Control flow travels as exceptions inside the interpreter (clear, and cheap enough: a word-problem
# program returns once and breaks rarely). They never escape run_program.
class _Return(Exception):
    def __init__(self, value):
        self.value = value


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


# --------------------------------------------------------------------------------------------------
# The whitelist. Anything not named here is refused with "<what> not allowed (line N)".
# --------------------------------------------------------------------------------------------------
_ALLOWED_NODES = {
    # statements
    ast.Module, ast.FunctionDef, ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return,
    ast.If, ast.For, ast.While, ast.Break, ast.Continue, ast.Pass, ast.Import, ast.ImportFrom,
    # expressions
    ast.Constant, ast.Name, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Call,
    ast.Attribute, ast.Subscript, ast.Slice, ast.List, ast.Tuple, ast.ListComp, ast.GeneratorExp,
    ast.JoinedStr, ast.FormattedValue,
    # helpers that hang off the nodes above
    ast.comprehension, ast.keyword, ast.alias, ast.Load, ast.Store,
    # operators (ast.MatMult is deliberately missing)
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift,
    ast.BitAnd, ast.BitOr, ast.BitXor, ast.UAdd, ast.USub, ast.Not, ast.Invert, ast.And, ast.Or,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Is, ast.IsNot,
}

# Allowed nodes that need more than the whitelist (names, targets, imports, calls, ...).
_CHECKED_NODES = {
    ast.FunctionDef, ast.AnnAssign, ast.Assign, ast.AugAssign, ast.For, ast.comprehension, ast.While,
    ast.Return, ast.Break, ast.Continue, ast.Import, ast.ImportFrom, ast.Name, ast.Attribute,
    ast.Call, ast.Constant,
}
# Allowed nodes with no children (expression contexts, operators, pass): skipped quickly.
_LEAF_NODES = {n for n in _ALLOWED_NODES if not n._fields} - _CHECKED_NODES

_LONG_DIGIT_RUN = re.compile(r"\d{4,}")    # f-string widths/precisions of 1000 or more

# Friendlier names for the most common refusals.
_NODE_WORDS = {
    "Lambda": "lambda", "ClassDef": "class definition", "With": "with statement",
    "Try": "try statement", "Raise": "raise statement", "Global": "global statement",
    "Nonlocal": "nonlocal statement", "Delete": "del statement", "Assert": "assert statement",
    "Dict": "dict", "Set": "set", "DictComp": "dict comprehension", "SetComp": "set comprehension",
    "NamedExpr": "walrus operator", "Starred": "star expression", "Yield": "yield",
    "YieldFrom": "yield", "Await": "await", "AsyncFunctionDef": "async function", "Match": "match",
}

_MATH_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf, "nan": math.nan}
_MATH_FUNCTION_NAMES = (
    "ceil floor trunc sqrt isqrt exp expm1 log log2 log10 log1p pow fabs fmod remainder copysign "
    "gcd lcm factorial comb perm prod fsum hypot sin cos tan asin acos atan atan2 sinh cosh tanh "
    "degrees radians isclose isfinite isinf isnan"
).split()
_MATH_NAMES = set(_MATH_CONSTANTS) | set(_MATH_FUNCTION_NAMES)
_BUILTIN_NAMES = {
    "abs", "min", "max", "round", "int", "float", "sum", "len", "range", "pow", "divmod",
    "bool", "list", "tuple", "sorted", "print",
}

_SCALARS = (int, float, bool, str, type(None))
_LIST_TYPES = frozenset({list, tuple})
_NUMBERS = (int, float, bool)
_SEQUENCES = (list, tuple, str, range)


def _digits(bits: int) -> int:
    """How many 30-bit digits CPython uses for an int of this many bits (the unit of MAX_OP_COST)."""
    return bits // _DIGIT_BITS + 1


def _refuse(node: ast.AST, what: str) -> ProgramError:
    return ProgramError(f"{what} not allowed", getattr(node, "lineno", None))


def _node_word(node: ast.AST) -> str:
    name = type(node).__name__
    return _NODE_WORDS.get(name, name)


def _check_target(node: ast.AST, subscript_ok: bool = True) -> None:
    """Assignment targets: a name, a flat tuple/list of names, or name[index]."""
    if isinstance(node, ast.Name):
        return
    if isinstance(node, (ast.Tuple, ast.List)):
        for elt in node.elts:
            _check_target(elt, subscript_ok=False)
        return
    if subscript_ok and isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        return
    raise _refuse(node, f"assignment to {_node_word(node)}")


def _target_names(target: ast.AST, out: set) -> None:
    """The names an assignment target binds: `x`, `a, b`, `[a, b]` (but not `xs[i]`, which binds none)."""
    if isinstance(target, ast.Name):
        out.add(target.id)
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            _target_names(elt, out)


def _check_source(source: str) -> tuple[ast.Module | None, ProgramError | None, int]:
    """Parse one source and check every node against the whitelist (cached: see _ParseCache).

    Checking the whole tree up front (not just the branches that happen to run) means a forbidden
    construct is refused even in dead code, and the answer does not depend on the data.
    Returns (tree, None, nodes) or (None, error, nodes); `nodes` (how many were walked) lets the
    cache estimate the tree's memory. Each `def solution()` node also gets `_local_names`, the set
    of names assigned anywhere in its body: Python's rule for what is local to a function.
    """
    try:
        with warnings.catch_warnings():          # e.g. invalid escape sequences in a docstring
            warnings.simplefilter("ignore")
            tree = ast.parse(source, mode="exec")
    except SyntaxError as e:
        return None, ProgramError(f"syntax error: {e.msg}", e.lineno), 0
    except (ValueError, MemoryError, RecursionError) as e:   # null bytes, absurd nesting
        return None, ProgramError(f"unparsable program ({type(e).__name__})"), 0

    # Iterative depth-first walk in source order (no recursion, so any tree size is fine; the first
    # offending construct is the one reported). Stack items: (node, depth, in_function, in_loop).
    # Depth-first order also means every node of a function is visited before the next top-level
    # statement, so `func_locals` (the current solution()'s local names) is always the right set.
    stack = [(tree, 0, False, False)]
    nodes = 0
    func_locals: set = set()
    while stack:
        node, depth, in_func, in_loop = stack.pop()
        kind = type(node)
        if kind in _LEAF_NODES:             # Load/Store/operators: allowed, nothing below them
            continue
        nodes += 1
        if depth > MAX_AST_DEPTH:
            return None, _refuse(node, f"nesting deeper than {MAX_AST_DEPTH}"), nodes
        if kind not in _ALLOWED_NODES:
            return None, _refuse(node, _node_word(node)), nodes
        children = []                       # (what ast.iter_child_nodes gives, but faster)
        for field in node._fields:
            value = getattr(node, field, None)
            if type(value) is list:
                children.extend(x for x in value if isinstance(x, ast.AST))
            elif isinstance(value, ast.AST):
                children.append(value)
        loop_body: list = []                # statements that run inside this node's loop, if any
        if kind not in _CHECKED_NODES:      # most nodes: the whitelist is the whole check
            stack.extend((c, depth + 1, in_func, in_loop) for c in reversed(children))
            continue
        try:
            if isinstance(node, ast.FunctionDef):
                # Only `def solution():` at the top level: no arguments, decorators, or nesting.
                # The return annotation (if any) is never evaluated, so it is not walked.
                if in_func or depth != 1:
                    raise _refuse(node, "nested function definition")
                if node.name != "solution":
                    raise _refuse(node, f"definition of function '{node.name}'")
                a = node.args
                if a.args or a.posonlyargs or a.kwonlyargs or a.vararg or a.kwarg or node.decorator_list:
                    raise _refuse(node, "arguments or decorators on solution()")
                children, in_func, in_loop = node.body, True, False
                # Filled in as the body is walked. Stored on the (cached, never mutated) tree node, so
                # the interpreter reads it for free on every call.
                func_locals = node._local_names = set()
            elif isinstance(node, ast.AnnAssign):
                _check_target(node.target)       # the annotation is never evaluated: not walked
                children = [node.target] + ([node.value] if node.value is not None else [])
                if in_func:                      # `x: int` alone makes x local too, as in Python
                    _target_names(node.target, func_locals)
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    _check_target(t)
                    if in_func:
                        _target_names(t, func_locals)
            elif isinstance(node, ast.AugAssign):
                if isinstance(node.target, (ast.Tuple, ast.List)):
                    raise _refuse(node, "augmented assignment to a tuple")
                _check_target(node.target)
                if in_func:                      # `total += 1` reads total first: local, so unbound
                    _target_names(node.target, func_locals)
            elif isinstance(node, (ast.For, ast.comprehension)):
                _check_target(node.target, subscript_ok=False)
                if getattr(node, "is_async", 0):
                    raise _refuse(node, "async for")
                if isinstance(node, ast.For):    # (a comprehension's variables stay in its own scope)
                    children, loop_body = [node.target, node.iter], node.body
                    if in_func:
                        _target_names(node.target, func_locals)
            elif isinstance(node, ast.While):
                children, loop_body = [node.test], node.body
            elif isinstance(node, ast.Return):
                if not in_func:
                    raise _refuse(node, "return outside solution()")
            elif isinstance(node, (ast.Break, ast.Continue)):
                if not in_loop:
                    raise _refuse(node, f"{type(node).__name__.lower()} outside a loop")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name != "math":
                        raise _refuse(node, f"import of '{alias.name}'")
            elif isinstance(node, ast.ImportFrom):
                if node.module != "math" or node.level:
                    raise _refuse(node, f"import from '{node.module}'")
                for alias in node.names:
                    if alias.name not in _MATH_NAMES:
                        raise _refuse(node, f"math.{alias.name}")
            elif isinstance(node, ast.Name):
                if node.id.startswith("__"):
                    raise _refuse(node, f"name '{node.id}'")
            elif isinstance(node, ast.Attribute):
                # The one attribute form: math.<whitelisted name>. Resolved in our table, never getattr.
                if not isinstance(node.value, ast.Name) or node.attr not in _MATH_NAMES:
                    raise _refuse(node, f"attribute '{node.attr}'")
            elif isinstance(node, ast.Call):
                f = node.func
                ok_name = isinstance(f, ast.Name) and (
                    f.id in _BUILTIN_NAMES or f.id in _MATH_NAMES or f.id == "solution")
                if not (ok_name or isinstance(f, ast.Attribute)):
                    what = f.id if isinstance(f, ast.Name) else _node_word(f)
                    raise _refuse(node, f"call of '{what}'")
            elif isinstance(node, ast.Constant):
                if type(node.value) not in (int, float, bool, str, type(None)):
                    raise _refuse(node, f"{type(node.value).__name__} literal")
        except ProgramError as e:
            return None, e, nodes
        # `else:` of a loop runs outside it (break there belongs to an outer loop).
        orelse = node.orelse if loop_body else []
        ordered = ([(c, in_loop) for c in children] + [(c, True) for c in loop_body]
                   + [(c, in_loop) for c in orelse])
        stack.extend((c, depth + 1, in_func, loop) for c, loop in reversed(ordered))
    return tree, None, nodes


class _ParseCache:
    """The parse cache: source -> (tree, error), least recently used out, bounded by memory.

    A count bound (`functools.lru_cache(256)`) is not a memory bound: a checked tree costs ~400 bytes
    per node, so 256 long programs can hold more than a gigabyte while 256 word problems hold two
    megabytes. Each entry here is charged its estimated size (nodes * _NODE_BYTES plus the source
    string, which is the key), the total stays under PARSE_CACHE_BYTES, and a tree bigger than
    PARSE_CACHE_ENTRY_BYTES is handed back without being kept (it would push out hundreds of
    ordinary programs to save one re-parse). Both outcomes are cached: a refusal is as reusable as a tree.

    Threads: a hit is one dict lookup and one move_to_end, each a single C call (atomic under the
    GIL), so it takes no lock; this path runs for every scored program and a lock would cost more
    than the lookup. Parsing happens outside any lock (it is the slow part, and two threads parsing
    the same source both produce the same answer). Adding and evicting, which must keep the byte
    count in step with the entries, is locked. `cache_clear()` and `cache_info()` mirror functools'.
    """

    def __init__(self, max_bytes: int, max_entry_bytes: int):
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._entries: OrderedDict = OrderedDict()   # source -> (tree, error, estimated bytes)
        self._bytes = 0
        self._lock = threading.Lock()

    def __call__(self, source: str) -> tuple[ast.Module | None, ProgramError | None]:
        if len(source) > MAX_SOURCE_CHARS:           # refused before parsing: nothing to cache
            return None, ProgramError(f"program longer than {MAX_SOURCE_CHARS} characters")
        entry = self._entries.get(source)
        if entry is not None:
            try:
                self._entries.move_to_end(source)     # most recently used at the end
            except KeyError:                          # evicted by another thread just now: still valid
                pass
            return entry[0], entry[1]
        tree, error, nodes = _check_source(source)
        # A refusal keeps no tree, only its message. (200: the entry's own dict/tuple overhead.)
        size = (nodes * _NODE_BYTES if tree is not None else 0) + len(source) + 200
        if size <= self.max_entry_bytes:
            with self._lock:
                if source not in self._entries:
                    self._entries[source] = (tree, error, size)
                    self._bytes += size
                    while self._bytes > self.max_bytes:      # evict least recently used first
                        _, (_, _, old) = self._entries.popitem(last=False)
                        self._bytes -= old
        return tree, error

    def cache_clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def cache_info(self) -> dict:
        with self._lock:
            return {"entries": len(self._entries), "bytes": self._bytes, "max_bytes": self.max_bytes}


# Hits when the same program is scored again (evaluation, voting, a PPO batch with repeats).
_parse_and_check = _ParseCache(PARSE_CACHE_BYTES, PARSE_CACHE_ENTRY_BYTES)


# --------------------------------------------------------------------------------------------------
# The interpreter
# --------------------------------------------------------------------------------------------------
class _Interpreter:
    """Walks one checked syntax tree. One instance per run; all state lives here."""

    def __init__(self, deadline, max_steps, max_int_bits, max_seq_len, max_str_len, max_prints,
                 max_alloc_bytes):
        self.max_steps = max_steps
        self.deadline = deadline            # a time.perf_counter() value, fixed by run_program
        self.max_int_bits = max_int_bits
        self.small_bits = min(64, max_int_bits)   # ints up to this size are neither checked nor charged
        self.max_seq_len = max_seq_len
        self.max_str_len = max_str_len
        self.prints_left = max_prints
        self.max_alloc_bytes = max_alloc_bytes
        self.alloc_left = max_alloc_bytes   # the memory budget still unspent, in estimated bytes
        self.steps = 0
        # tick() looks at the step budget and the clock when the step count reaches this. (Not at
        # step 1: a typical word problem is over in ~20 steps and never needs to read the clock.)
        self.next_check = min(CLOCK_EVERY, max_steps + 1)
        self.line = None                    # line of the statement being run, for error messages
        self.globals: dict = {}
        self.scopes: list[dict] = [self.globals]   # innermost last: globals, solution locals, comprehensions
        # Python's scoping rule: inside solution(), `frame` is its locals dict and `local_names` every
        # name assigned anywhere in its body (computed once by the checker). At the top level both are
        # trivial: the frame is the globals and nothing is "local but unbound".
        self.frame: dict = self.globals
        self.local_names: set = set()
        self.math_aliases = {"math"}        # ReFT's executor has math in its globals; so do we
        self.math_imports: dict[str, str] = {}     # `from math import sqrt as s` -> {"s": "sqrt"}
        self.solution: ast.FunctionDef | None = None
        self.in_solution = False

    # ---- budgets -------------------------------------------------------------------------------
    def tick(self) -> None:
        # The hot path of the whole interpreter: one add and one compare. Everything else (the step
        # budget, the clock) happens in check_budgets, every CLOCK_EVERY steps or sooner on demand.
        self.steps += 1
        if self.steps >= self.next_check:
            self.check_budgets()

    def check_budgets(self) -> None:
        if self.steps > self.max_steps:
            raise ProgramError(f"step budget of {self.max_steps} exceeded")
        if time.perf_counter() > self.deadline:
            raise ProgramError("time budget exceeded")
        # Reading the clock costs ~70 ns, a cheap step ~100-300 ns: every 32 steps adds ~1%, and 32
        # cheap steps take well under a millisecond, so the deadline is overrun by at most that plus
        # one bulk step (which calls bulk_work() to have the clock read right after it).
        self.next_check = min(self.steps + CLOCK_EVERY, self.max_steps + 1)

    def bulk_work(self) -> None:
        """The current step does (or just did) a lot of work in C: read the clock at the next tick."""
        self.next_check = 0

    def charge(self, nbytes: int) -> None:
        """Spend `nbytes` of the memory budget, refusing *before* the caller builds the thing."""
        self.alloc_left -= nbytes
        if self.alloc_left < 0:
            raise ProgramError(f"memory budget of {self.max_alloc_bytes // 2**20} MB exceeded")
        if nbytes > 4096:                   # building something big is bulk work too
            self.next_check = 0

    def charge_str(self, s: str, n: int | None = None) -> None:
        """Charge a string of n characters made from s (1 byte a character, 4 when not ASCII)."""
        n = len(s) if n is None else n
        self.charge(50 + (n if s.isascii() else 4 * n))    # str.isascii() is O(1): a flag on the object

    def op_cost(self, cost: int, what: str) -> None:
        """Refuse one C-level integer call estimated at more than MAX_OP_COST digit operations."""
        if cost > MAX_OP_COST:
            raise ProgramError(f"{what} too costly ({cost:,} digit operations; limit {MAX_OP_COST:,})")
        if cost > 10_000:                   # ~20 us and up: read the clock right after it
            self.next_check = 0

    def check(self, v):
        """Values that can grow (ints, strings, lists, tuples) pass through here after each operation."""
        t = type(v)
        if t is int:
            bits = v.bit_length()
            if bits > self.small_bits:      # (one comparison for the everyday small int)
                if bits > self.max_int_bits:
                    raise ProgramError(f"integer larger than {self.max_int_bits} bits")
                self.charge(28 + (bits >> 3))   # a big int is memory too: 10,000 of them are 12 MB
                if bits > _BULK_BITS:       # making it took a while (up to ~0.2 ms): read the clock
                    self.next_check = 0
        elif t is str:
            if len(v) > self.max_str_len:
                raise ProgramError(f"string longer than {self.max_str_len} characters")
        elif t is list or t is tuple:
            if len(v) > self.max_seq_len:
                raise ProgramError(f"sequence longer than {self.max_seq_len}")
            for x in v:                     # flat containers only: keeps every C-level op O(max_seq_len)
                if type(x) not in _SCALARS:
                    raise ProgramError("nested sequences not allowed")
            if len(v) > _BULK:
                self.next_check = 0
        elif t is complex:                  # (-8) ** 0.5 is complex in Python 3
            raise ProgramError("complex number not allowed")
        elif t not in _SCALARS and t is not range:
            raise ProgramError(f"value of type {t.__name__} not allowed")   # defensive; unreachable
        return v

    def eager_len(self, it) -> int:
        """Before a builtin consumes an iterable in C (sum, max, list, ...), bound its length."""
        if type(it) not in _SEQUENCES:
            raise ProgramError(f"{type(it).__name__} is not iterable")
        n = len(it)                         # len(range(10**30)) raises OverflowError: caught, refused
        if n > self.max_seq_len:
            raise ProgramError(f"sequence longer than {self.max_seq_len}")
        if n > _BULK:                       # sorting 10,000 big ints takes ~10 ms: read the clock after
            self.next_check = 0
        return n

    def charge_copy(self, seq, n: int) -> None:
        """Charge a new list/tuple of n slots filled from seq (before it is built)."""
        self.charge(56 + n * (_SLOT_BYTES + _FRESH_BYTES.get(type(seq), 0)))

    # ---- dispatch --------------------------------------------------------------------------------
    def ev(self, node):
        """Evaluate an expression node."""
        self.tick()
        return _EXPR[type(node)](self, node)

    def run_block(self, body) -> None:
        for stmt in body:
            self.tick()
            self.line = stmt.lineno
            _STMT[type(stmt)](self, stmt)

    # ---- names -------------------------------------------------------------------------------------
    def unbound(self, name: str) -> ProgramError:
        return ProgramError(f"local variable '{name}' used before assignment (it is assigned somewhere "
                            f"in solution(), so it is local everywhere in it)")

    def lookup(self, name: str):
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
            # Python's rule: a name local to solution() never falls through to the module's variable
            # of the same name (`total = 5` outside, `total += 1` inside is an UnboundLocalError).
            if scope is self.frame and name in self.local_names:
                raise self.unbound(name)
        if name in self.math_imports and self.math_imports[name] in _MATH_CONSTANTS:
            return _MATH_CONSTANTS[self.math_imports[name]]
        if name in _BUILTIN_NAMES or name in self.math_imports or name == "solution":
            raise ProgramError(f"function '{name}' used as a value")
        raise ProgramError(f"name '{name}' is not defined")

    def is_variable(self, name: str) -> bool:
        """Does `name` name a variable here (shadowing a builtin or the math module)? Same rule as lookup."""
        for scope in reversed(self.scopes):
            if name in scope:
                return True
            if scope is self.frame and name in self.local_names:
                raise self.unbound(name)
        return False

    def is_math(self, name: str) -> bool:
        """Is `name` the math module here (imported or default, and not shadowed by a variable)?"""
        return name in self.math_aliases and not self.is_variable(name)

    def assign(self, target, value) -> None:
        if isinstance(target, ast.Name):
            self.scopes[-1][target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            if type(value) not in _SEQUENCES:
                raise ProgramError(f"cannot unpack {type(value).__name__}")
            self.eager_len(value)
            if len(value) != len(target.elts):
                raise ProgramError(f"cannot unpack {len(value)} values into {len(target.elts)} names")
            for t, v in zip(target.elts, value):
                self.assign(t, v)
        else:  # ast.Subscript on a name: lst[i] = v
            seq = self.lookup(target.value.id)
            index = self.ev(target.slice)
            if type(seq) is not list or type(index) not in (int, bool):
                raise ProgramError("item assignment only into a list at an integer index")
            if type(value) not in _SCALARS:
                raise ProgramError("nested sequences not allowed")
            seq[index] = value

    # ---- statements --------------------------------------------------------------------------------
    def s_Expr(self, node):
        self.ev(node.value)

    def s_Pass(self, node):
        pass

    def s_Assign(self, node):
        value = self.ev(node.value)
        for target in node.targets:
            self.assign(target, value)

    def s_AnnAssign(self, node):
        if node.value is not None:
            self.assign(node.target, self.ev(node.value))

    def s_AugAssign(self, node):
        t = node.target
        if isinstance(t, ast.Name):
            # Python's order: read the target first (an unbound local fails before the right side runs).
            current = self.lookup(t.id)
            value = self.ev(node.value)
            if type(current) is list and type(node.op) in (ast.Add, ast.Mult):
                value = self.inplace(current, node.op, value)   # xs += ys changes xs itself
            else:
                value = self.binop(node.op, current, value)
            self.scopes[-1][t.id] = value
        else:
            seq, index = self.lookup(t.value.id), self.ev(t.slice)
            if type(seq) is not list or type(index) not in (int, bool):
                raise ProgramError("item assignment only into a list at an integer index")
            value = self.binop(node.op, seq[index], self.ev(node.value))
            if type(value) not in _SCALARS:          # xs[0] *= [1] would nest a list in a list
                raise ProgramError("nested sequences not allowed")
            seq[index] = value

    def inplace(self, xs: list, op, other) -> list:
        """`xs += seq` and `xs *= n` on a list: Python changes the list in place (every other name
        for it sees the change), and += takes any iterable (`xs += 'ab'` appends two letters)."""
        if type(op) is ast.Add:
            n = self.eager_len(other)
            if len(xs) + n > self.max_seq_len:
                raise ProgramError("sequence too long")
            self.charge(n * (_SLOT_BYTES + _FRESH_BYTES.get(type(other), 0)))  # only the growth
            xs += other
            return xs
        if type(other) not in (int, bool):
            raise ProgramError(f"can't multiply a list by {type(other).__name__}")
        if len(xs) * other > self.max_seq_len:     # checked before building, as for xs * n
            raise ProgramError("sequence too long")
        self.charge(max(0, len(xs) * (other - 1)) * _SLOT_BYTES)
        xs *= other
        return xs

    def s_If(self, node):
        self.run_block(node.body if self.ev(node.test) else node.orelse)

    def s_For(self, node):
        it = self.ev(node.iter)
        if type(it) not in _SEQUENCES:
            raise ProgramError(f"cannot loop over {type(it).__name__}")
        for item in it:          # a huge range is fine: it is lazy, and every iteration costs steps
            self.assign(node.target, item)
            try:
                self.run_block(node.body)
            except _Break:
                return
            except _Continue:
                pass
        self.run_block(node.orelse)

    def s_While(self, node):
        while self.ev(node.test):
            try:
                self.run_block(node.body)
            except _Break:
                return
            except _Continue:
                pass
        self.run_block(node.orelse)

    def s_Break(self, node):
        raise _Break()

    def s_Continue(self, node):
        raise _Continue()

    def s_Return(self, node):
        raise _Return(None if node.value is None else self.ev(node.value))

    def s_FunctionDef(self, node):
        self.solution = node       # stored as a tree, never as a runtime value

    def s_Import(self, node):
        for alias in node.names:   # checked: alias.name == "math"
            self.math_aliases.add(alias.asname or "math")

    def s_ImportFrom(self, node):
        for alias in node.names:   # checked: names from the math whitelist
            self.math_imports[alias.asname or alias.name] = alias.name

    # ---- expressions -------------------------------------------------------------------------------
    def e_Constant(self, node):
        return self.check(node.value) if type(node.value) is int else node.value

    def e_Name(self, node):
        return self.lookup(node.id)

    def e_Attribute(self, node):
        # Only math.<constant> as a value; math.<function> is handled by e_Call.
        if not self.is_math(node.value.id):
            raise ProgramError(f"attribute '{node.attr}' not allowed")
        if node.attr not in _MATH_CONSTANTS:
            raise ProgramError(f"function 'math.{node.attr}' used as a value")
        return _MATH_CONSTANTS[node.attr]

    def e_BinOp(self, node):
        return self.binop(node.op, self.ev(node.left), self.ev(node.right))

    def e_UnaryOp(self, node):
        v = self.ev(node.operand)
        op = type(node.op)
        if op is ast.Not:
            return not v
        if type(v) not in _NUMBERS:
            raise ProgramError(f"bad operand type for unary operator: {type(v).__name__}")
        if op is ast.USub:
            return self.check(-v)  # a new number (a big one is charged to the memory budget)
        if op is ast.UAdd:
            return +v
        return self.check(~v)      # ast.Invert; TypeError on floats is caught by run_program

    def e_BoolOp(self, node):
        is_and = type(node.op) is ast.And
        v = None
        for value_node in node.values:
            v = self.ev(value_node)
            if bool(v) != is_and:  # `and` stops at the first falsy value, `or` at the first truthy
                return v
        return v

    def e_Compare(self, node):
        left = self.ev(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = self.ev(right_node)
            if not self.compare(op, left, right):
                return False
            left = right
        return True

    def e_IfExp(self, node):
        return self.ev(node.body) if self.ev(node.test) else self.ev(node.orelse)

    def e_List(self, node):
        self.charge(56 + _SLOT_BYTES * len(node.elts))
        return self.check([self.ev(e) for e in node.elts])

    def e_Tuple(self, node):
        self.charge(56 + _SLOT_BYTES * len(node.elts))
        return self.check(tuple(self.ev(e) for e in node.elts))

    def e_Subscript(self, node):
        seq = self.ev(node.value)
        index = self.ev(node.slice)
        if type(seq) not in _SEQUENCES:
            raise ProgramError(f"{type(seq).__name__} is not subscriptable")
        if type(index) not in (int, bool, slice):
            raise ProgramError("indices must be integers or slices")
        if type(index) is slice and type(seq) is not range:
            # A slice is never longer than its sequence, but it is a new one: charge it before it is
            # made (a 20,000-character docstring sliced in a loop is 20 kB a step). The slice of a
            # range is a range: lazy, free. len(range(n)[index]) is the slice's length, in O(1).
            n = len(range(len(seq))[index])
            if type(seq) is str:
                self.charge_str(seq, n)
            else:
                self.charge_copy(seq, n)
        return seq[index]

    def e_Slice(self, node):
        parts = [None if p is None else self.ev(p) for p in (node.lower, node.upper, node.step)]
        if any(p is not None and type(p) not in (int, bool) for p in parts):
            raise ProgramError("slice indices must be integers")
        return slice(*parts)

    def e_JoinedStr(self, node):    # f-strings: "{x:.2f}" etc.
        parts = [self.ev(v) for v in node.values]   # each a str: a literal piece or a formatted value
        n = sum(map(len, parts))
        if n > self.max_str_len:                    # refused before the pieces are glued together
            raise ProgramError(f"string longer than {self.max_str_len} characters")
        s = "".join(parts)
        self.charge_str(s)
        return s

    def e_FormattedValue(self, node):
        v = self.ev(node.value)
        if type(v) not in _SCALARS:
            raise ProgramError("only numbers and strings can be formatted")
        # int -> decimal text is quadratic in the number of digits, and a b-bit int has at least
        # (b - 1) * log10(2) + 1 digits: refuse before converting when those alone are too many.
        if type(v) is int and (v.bit_length() - 1) * 0.30103 >= self.max_str_len:
            raise ProgramError(f"string longer than {self.max_str_len} characters")
        if node.conversion == ord("r"):
            v = repr(v)
        elif node.conversion in (ord("s"), ord("a")):
            v = str(v)
        spec = "" if node.format_spec is None else self.ev(node.format_spec)
        # A width or precision like {x:999999999} would allocate a huge string inside C: cap digits.
        if _LONG_DIGIT_RUN.search(spec):
            raise ProgramError("format width/precision too large")
        return self.check(format(v, spec))

    def e_ListComp(self, node):
        return self.comprehension(node)

    def e_GeneratorExp(self, node):   # evaluated eagerly into a (bounded) list: sum(x for x in ...)
        return self.comprehension(node)

    def comprehension(self, node) -> list:
        out: list = []
        self.scopes.append({})        # comprehension variables do not leak (as in Python 3)
        try:
            self._comp_level(node, 0, out)
        finally:
            self.scopes.pop()
        # Every element was checked (a scalar) and counted as it was added; only the slots are left
        # to pay for. (The elements themselves cost steps, and big ones were charged when made.)
        self.charge(56 + _SLOT_BYTES * len(out))
        return out

    def _comp_level(self, node, level: int, out: list) -> None:
        gen = node.generators[level]
        it = self.ev(gen.iter)
        if type(it) not in _SEQUENCES:
            raise ProgramError(f"cannot loop over {type(it).__name__}")
        for item in it:
            self.assign(gen.target, item)
            if all(self.ev(cond) for cond in gen.ifs):
                if level + 1 < len(node.generators):
                    self._comp_level(node, level + 1, out)
                else:
                    value = self.ev(node.elt)
                    # Checked as each element arrives, not after: `[[0] * 10000 for i in range(10000)]`
                    # is refused at its first row, before 10,000 rows (800 MB) exist.
                    if type(value) not in _SCALARS:
                        raise ProgramError("nested sequences not allowed")
                    out.append(value)
                    if len(out) > self.max_seq_len:
                        raise ProgramError(f"sequence longer than {self.max_seq_len}")

    def e_Call(self, node):
        f = node.func
        if isinstance(f, ast.Attribute):             # math.sqrt(...)
            if not self.is_math(f.value.id):
                raise ProgramError(f"call of attribute '{f.attr}' not allowed")
            name, table = f.attr, _MATH_FUNCTIONS
        elif f.id == "solution":
            if node.args or node.keywords:
                raise ProgramError("solution() takes no arguments")
            return self.call_solution()
        elif self.is_variable(f.id):                  # `max = 3` shadows the builtin, as in Python
            raise ProgramError(f"'{f.id}' is a variable, not a function")
        elif f.id in self.math_imports:               # from math import sqrt
            name, table = self.math_imports[f.id], _MATH_FUNCTIONS
        elif f.id in _BUILTIN_NAMES:
            name, table = f.id, _BUILTINS
        else:
            raise ProgramError(f"call of '{f.id}' not allowed")
        if name not in table:
            raise ProgramError(f"'{name}' is not callable")
        args = [self.ev(a) for a in node.args]
        if node.keywords:
            if name != "print":
                raise ProgramError(f"keyword arguments not allowed ({name})")
            for kw in node.keywords:                  # print(sep=..., end=...): evaluated, ignored
                self.ev(kw.value)
        return self.check(table[name](self, *args))

    def call_solution(self):
        if self.solution is None:
            raise ProgramError("name 'solution' is not defined")
        if self.in_solution:                          # the only user function may not recurse
            raise ProgramError("recursion not allowed")
        saved = self.scopes, self.frame, self.local_names, self.line
        frame: dict = {}
        self.scopes, self.frame, self.in_solution = [self.globals, frame], frame, True
        self.local_names = self.solution._local_names     # set by the checker (_check_source)
        try:
            self.run_block(self.solution.body)
            value = None                              # fell off the end: Python returns None
        except _Return as r:
            value = r.value
        finally:
            self.scopes, self.frame, self.local_names, saved_line = saved
            self.in_solution = False
        self.line = saved_line
        return value

    # ---- operators -------------------------------------------------------------------------------
    def binop(self, op, a, b):
        op = type(op)
        ta, tb = type(a), type(b)
        a_num, b_num = ta in _NUMBERS, tb in _NUMBERS
        if not (a_num and b_num):
            return self.sequence_binop(op, a, b)
        if op is ast.Add:
            return self.check(a + b)
        if op is ast.Sub:
            return self.check(a - b)
        if op is ast.Mult:
            if ta is int and tb is int:
                bits_a, bits_b = a.bit_length(), b.bit_length()
                if bits_a + bits_b > self.max_int_bits + 1:   # the product has at least bits_a+bits_b-1
                    raise ProgramError(f"integer larger than {self.max_int_bits} bits")
                if bits_a > 3000 and bits_b > 3000:
                    # Within the default max_int_bits this is at most ~28k digit operations (tens of
                    # microseconds); the cost check binds only when a caller raises max_int_bits.
                    self.op_cost(_digits(bits_a) * _digits(bits_b), "multiplication")
            return self.check(a * b)
        if op is ast.Div:
            return a / b
        if op is ast.FloorDiv:
            return self.check(a // b)
        if op is ast.Mod:
            return self.check(a % b)
        if op is ast.Pow:
            return self.check(self.power(a, b))
        if op is ast.LShift:
            if ta is not float and tb is not float and b > 0 and a and a.bit_length() + b > self.max_int_bits:
                raise ProgramError(f"integer larger than {self.max_int_bits} bits")
            return self.check(a << b)
        # The bit operations never outgrow their operands, but their answers are new integers: checked
        # like every other, so a big one is charged to the memory budget.
        if op is ast.RShift:
            return self.check(a >> b)
        if op is ast.BitAnd:
            return self.check(a & b)
        if op is ast.BitOr:
            return self.check(a | b)
        if op is ast.BitXor:
            return self.check(a ^ b)
        raise ProgramError(f"operator {op.__name__} not allowed")     # unreachable after the check

    def power(self, a, b):
        """a ** b, refusing before computing when an integer result would be too large or too slow."""
        if type(a) is not float and type(b) is not float and b > 0 and abs(a) > 1:
            # |a| >= 2**(L-1), so |a|**b has at least (L-1)*b + 1 bits: refuse without computing.
            bits = abs(a).bit_length()
            if (bits - 1) * b + 1 > self.max_int_bits:
                raise ProgramError(f"integer larger than {self.max_int_bits} bits")
            # The work is dominated by the last squaring, of a number half the result's size (at most
            # bits*b bits): at most a quarter of d*d digit operations for a d-digit result.
            d = _digits(bits * b)
            self.op_cost(d * d // 4, "power")
        return a ** b              # float overflow raises OverflowError, caught by run_program

    def sequence_binop(self, op, a, b):
        ta, tb = type(a), type(b)
        # Both the length and the memory are checked *before* building: [0] * 10**10 never exists.
        if op is ast.Add and ta is tb and ta in (list, tuple, str):
            n = len(a) + len(b)
            if n > (self.max_str_len if ta is str else self.max_seq_len):
                raise ProgramError("sequence too long")
            if ta is str:
                self.charge(50 + (n if a.isascii() and b.isascii() else 4 * n))
            else:
                self.charge_copy(a, n)
            return a + b
        if op is ast.Mult:
            seq, n = (a, b) if tb in (int, bool) else (b, a)
            if type(seq) in (list, tuple, str) and type(n) in (int, bool):
                limit = self.max_str_len if type(seq) is str else self.max_seq_len
                size = len(seq) * n
                if size > limit:
                    raise ProgramError("sequence too long")
                if type(seq) is str:
                    self.charge_str(seq, max(size, 0))
                else:
                    self.charge_copy(seq, max(size, 0))
                return seq * n
        # str % x would be printf-style formatting with unbounded widths: not offered.
        raise ProgramError(f"unsupported operand types for {op.__name__}: {ta.__name__}, {tb.__name__}")

    def compare(self, op, a, b) -> bool:
        op = type(op)
        if type(a) in _LIST_TYPES or type(b) in _LIST_TYPES:
            # Comparing or searching 10,000 elements is bulk work (~8 ms when they are big ints
            # equal but for their last digit): have the clock read right after it.
            self.bulk_work()
        if op is ast.Eq:
            return a == b
        if op is ast.NotEq:
            return a != b
        if op is ast.Lt:
            return a < b
        if op is ast.LtE:
            return a <= b
        if op is ast.Gt:
            return a > b
        if op is ast.GtE:
            return a >= b
        if op is ast.Is:
            return a is b
        if op is ast.IsNot:
            return a is not b
        # in / not in
        if type(b) not in _SEQUENCES:
            raise ProgramError(f"'in' needs a sequence, not {type(b).__name__}")
        if type(b) is range and type(a) not in (int, bool):
            self.eager_len(b)      # `0.5 in range(10**12)` scans element by element in C
        if type(b) is str and type(a) is not str:
            raise ProgramError("'in <string>' requires a string")
        found = a in b
        return found if op is ast.In else not found


# --------------------------------------------------------------------------------------------------
# Whitelisted functions. Each receives the interpreter (for budgets) and already-evaluated values,
# which can only be int/float/bool/str/None or flat list/tuple/range: calling the real builtins on
# them is safe, as long as the amount of work is bounded first.
# --------------------------------------------------------------------------------------------------
def _number(x, fname: str):
    if type(x) not in _NUMBERS:
        raise ProgramError(f"{fname}() needs a number, not {type(x).__name__}")
    return x


def _b_abs(it, x):
    return abs(_number(x, "abs"))


def _min_max(it, fn, args):
    if len(args) == 1:
        it.eager_len(args[0])
        return fn(args[0])
    return fn(args)


def _b_min(it, *args):
    return _min_max(it, min, args)


def _b_max(it, *args):
    return _min_max(it, max, args)


def _b_round(it, x, ndigits=None):
    _number(x, "round")
    if ndigits is None:
        return round(x)
    if type(ndigits) not in (int, bool) or abs(ndigits) > 400:   # round(5, -10**9) computes 10**10**9
        raise ProgramError("round() digits must be an integer in [-400, 400]")
    return round(x, ndigits)


def _b_int(it, x=0, base=None):
    if type(x) is str and len(x) > 1000:
        raise ProgramError("int() of a very long string")
    if base is None:
        return int(x) if type(x) in (int, float, bool, str) else _number(x, "int")
    if type(x) is not str:
        raise ProgramError("int() with a base needs a string")
    return int(x, base)


def _b_float(it, x=0.0):
    if type(x) not in (int, float, bool, str):
        raise ProgramError(f"float() of {type(x).__name__}")
    return float(x)


def _b_sum(it, seq, start=0):
    it.eager_len(seq)
    for x in seq:
        _number(x, "sum")
    # Numbers only, at most max_seq_len of them: an int sum grows by at most 14 bits, checked after.
    return sum(seq, _number(start, "sum"))


def _b_len(it, seq):
    if type(seq) not in _SEQUENCES:
        raise ProgramError(f"len() of {type(seq).__name__}")
    return len(seq)            # len(range(10**30)) raises OverflowError, caught


def _b_range(it, *args):
    if not 1 <= len(args) <= 3 or any(type(a) not in (int, bool) for a in args):
        raise ProgramError("range() needs 1 to 3 integers")
    return range(*args)        # lazy: costs nothing until iterated (each iteration costs steps)


def _b_pow(it, a, b, mod=None):
    _number(a, "pow"), _number(b, "pow")
    if mod is None:
        return it.power(a, b)
    if type(a) is float or type(b) is float or type(mod) not in (int, bool):
        raise ProgramError("pow() with a modulus needs integers")
    # Modular: every intermediate is smaller than mod, so the size is harmless, but the time is not.
    # Square-and-multiply does one squaring and one reduction modulo `mod` per bit of the exponent
    # (a negative exponent first inverts a, which costs about as much as one reduction), each about
    # d*d digit operations for a d-digit modulus; reducing a first costs digits(a) * d. With
    # 10,000-bit operands that is ~10**9: seconds inside one C call that no timer can interrupt.
    d = _digits(abs(mod).bit_length())
    it.op_cost((abs(b).bit_length() + 1) * d * d + _digits(abs(a).bit_length()) * d, "pow() with a modulus")
    return pow(a, b, mod)


def _b_divmod(it, a, b):
    q, r = divmod(_number(a, "divmod"), _number(b, "divmod"))
    return it.check(q), it.check(r)        # two new numbers: checked (and charged) like any other


def _b_bool(it, x=False):
    return bool(x)


def _b_list(it, seq=()):
    it.charge_copy(seq, it.eager_len(seq))
    return list(seq)


def _b_tuple(it, seq=()):
    it.charge_copy(seq, it.eager_len(seq))
    return tuple(seq)


def _b_sorted(it, seq):
    it.charge_copy(seq, it.eager_len(seq))
    return sorted(seq)


def _b_print(it, *args):
    # Output is discarded (a reward function must not write to stdout); only the count is bounded.
    it.prints_left -= 1
    if it.prints_left < 0:
        raise ProgramError("too many print() calls")
    return None


_MULT = ast.Mult()

_BUILTINS = {
    "abs": _b_abs, "min": _b_min, "max": _b_max, "round": _b_round, "int": _b_int,
    "float": _b_float, "sum": _b_sum, "len": _b_len, "range": _b_range, "pow": _b_pow,
    "divmod": _b_divmod, "bool": _b_bool, "list": _b_list, "tuple": _b_tuple,
    "sorted": _b_sorted, "print": _b_print,
}
assert set(_BUILTINS) == _BUILTIN_NAMES


def _m_plain(fn):
    """math functions that cannot blow up (bounded inputs in, float or small int out)."""
    return lambda it, *args: fn(*args)


# factorial, comb and perm: the size of the answer is known in advance, through log-gamma:
# log2(n!) = lgamma(n + 1) / ln 2. A float estimate is good to many digits here; a margin of 2 bits
# covers its rounding. When n is too big for that (or for a float), the plain bound
# "a product of k factors of at most bits(n) bits each" decides, and is just as cheap.
_LOG2_E = 1 / math.log(2)


def _log2_falling(n: int, k: int) -> float:
    """log2(n * (n-1) * ... * (n-k+1)) = log2(n! / (n-k)!), for 0 <= k <= n."""
    if n < 2**50:
        return (math.lgamma(n + 1) - math.lgamma(n - k + 1)) * _LOG2_E
    return float(k * n.bit_length())           # each factor has at most bits(n) bits


def _check_result_bits(it, log2_result: float, what: str) -> None:
    if log2_result - 2 > it.max_int_bits:
        raise ProgramError(f"integer larger than {it.max_int_bits} bits")
    # CPython builds these by splitting the product in halves; the last multiply, two halves of the
    # answer, dominates: about a quarter of d*d digit operations for a d-digit answer.
    d = _digits(max(int(log2_result), 0))
    it.op_cost(d * d // 4, what)


def _m_factorial(it, n):
    if type(n) not in (int, bool):
        raise ProgramError("factorial() needs an integer")
    if n > 0:                                  # (negative n: math.factorial raises ValueError, caught)
        if n > it.max_int_bits:                # n! > 2**n from n = 4 on: no need to estimate
            raise ProgramError(f"integer larger than {it.max_int_bits} bits")
        _check_result_bits(it, _log2_falling(n, n), "factorial()")
    return it.check(math.factorial(n))


def _m_comb(it, n, k):
    if type(n) not in (int, bool) or type(k) not in (int, bool):
        raise ProgramError("comb() needs integers")
    if n >= 0 and 0 <= k <= n:                 # (otherwise 0, or ValueError: cheap)
        k = min(k, n - k)                      # C(n, k) = C(n, n-k): the shorter product
        if k > 1:
            if k > it.max_int_bits:            # C(n, k) >= (n/k)**k >= 2**k when k <= n/2
                raise ProgramError(f"integer larger than {it.max_int_bits} bits")
            # log2 C(n, k) = log2(n!/(n-k)!) - log2(k!), and C(n, k) < 2**n whatever k is.
            _check_result_bits(it, min(n, _log2_falling(n, k) - _log2_falling(k, k)), "comb()")
    return it.check(math.comb(n, k))


def _m_perm(it, n, k=None):
    if type(n) not in (int, bool) or (k is not None and type(k) not in (int, bool)):
        raise ProgramError("perm() needs integers")
    kk = n if k is None else k
    if n >= 0 and 1 < kk <= n:
        if kk > it.max_int_bits:               # perm(n, k) >= k! >= 2**k from k = 4 on
            raise ProgramError(f"integer larger than {it.max_int_bits} bits")
        _check_result_bits(it, _log2_falling(n, kk), "perm()")
    return it.check(math.perm(n, k))


def _m_prod(it, seq, start=1):
    it.eager_len(seq)
    total = _number(start, "prod")
    for x in seq:                                      # our checked multiply, one factor at a time
        it.tick()
        total = it.binop(_MULT, total, _number(x, "prod"))
    return total


def _m_fsum(it, seq):
    it.eager_len(seq)
    return math.fsum(seq)


def _m_pow(it, a, b):
    return math.pow(_number(a, "pow"), _number(b, "pow"))   # float pow: overflow raises, caught


def _m_lcm(it, *args):
    total = 1
    for x in args:                                     # lcm(a, b) <= a * b: check as we go
        if type(x) not in (int, bool):
            raise ProgramError("lcm() needs integers")
        if total.bit_length() + x.bit_length() > it.max_int_bits + 1:
            raise ProgramError(f"integer larger than {it.max_int_bits} bits")
        total = math.lcm(total, x)
    return total


# (This getattr runs once, at import, on the real math module with names from our own list; the
# program never gets to name an attribute that is looked up on a real object.)
_MATH_FUNCTIONS = {name: _m_plain(getattr(math, name)) for name in _MATH_FUNCTION_NAMES}
_MATH_FUNCTIONS.update({"factorial": _m_factorial, "comb": _m_comb, "perm": _m_perm,
                        "prod": _m_prod, "fsum": _m_fsum, "pow": _m_pow, "lcm": _m_lcm})

_STMT = {getattr(ast, n[2:]): f for n, f in vars(_Interpreter).items() if n.startswith("s_")}
_EXPR = {getattr(ast, n[2:]): f for n, f in vars(_Interpreter).items() if n.startswith("e_")}


# --------------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------------
def run_program(
    source: str,
    *,
    max_steps: int = MAX_STEPS,
    timeout_s: float = TIMEOUT_S,
    max_int_bits: int = MAX_INT_BITS,
    max_seq_len: int = MAX_SEQ_LEN,
    max_str_len: int = MAX_STR_LEN,
    max_prints: int = MAX_PRINTS,
    max_alloc_bytes: int = MAX_ALLOC_BYTES,
) -> ProgramResult:
    """Run a P-CoT program safely and return its numeric answer or an error message. Never raises.

    The answer is `solution()`'s return value when `solution` is defined, else the top-level
    variable `result` (or `answer`). It must be a finite int or float (not bool).
    """
    start = time.perf_counter()                 # the time budget covers parsing too
    if not isinstance(source, str):
        return ProgramResult(None, f"program must be a string, not {type(source).__name__}")
    try:
        tree, error = _parse_and_check(source)
    except Exception as e:                      # defensive: the parser's own failures are caught inside
        return ProgramResult(None, _short(f"unparsable program ({type(e).__name__}: {e})"))
    if error is not None:
        return _failure(error, error.line)
    try:
        it = _Interpreter(start + timeout_s, max_steps, max_int_bits, max_seq_len, max_str_len, max_prints,
                          max_alloc_bytes)
    except Exception as e:                      # e.g. min(64, "a") from a nonsense budget argument
        return ProgramResult(None, _short(f"bad budget ({type(e).__name__}: {e})"))
    try:
        it.run_block(tree.body)
        if it.solution is not None:
            it.line = it.solution.lineno
            value = it.call_solution()
            where = "solution() returned"
        elif "result" in it.globals or "answer" in it.globals:
            value = it.globals.get("result", it.globals.get("answer"))
            where = "result is"
        else:
            return ProgramResult(None, "no solution() function and no `result` variable")
    except ProgramError as e:
        return _failure(e, it.line)
    except (_Break, _Continue, _Return):        # cannot happen after the checks; belt and braces
        return ProgramResult(None, f"misplaced control flow (line {it.line})")
    except Exception as e:                      # ZeroDivisionError, OverflowError, TypeError, ...
        return ProgramResult(None, f"{_short(f'{type(e).__name__}: {e}')} (line {it.line})")
    if type(value) not in (int, float):         # type() is exact: this also refuses bool
        kind = "None" if value is None else type(value).__name__
        return ProgramResult(None, f"{where} {kind}, not a number")
    if type(value) is float and not math.isfinite(value):
        return ProgramResult(None, f"{where} {value}, not a finite number")
    return ProgramResult(value, None)


def _failure(error: ProgramError, line: int | None) -> ProgramResult:
    line = error.line if error.line is not None else line
    suffix = f" (line {line})" if line is not None else ""
    return ProgramResult(None, f"{_short(str(error))}{suffix}")


def _short(message: str, limit: int = 200) -> str:
    """Error messages can quote the program (int('xxx...')); keep them log-sized."""
    return message if len(message) <= limit else message[: limit - 3] + "..."
