"""Tests for tools/exercises.py: the classroom exercises and their checks.

Fast tests work on source text and run the checks in this process against the reference code. The slow
ones write real student copies into tmp_path and run `python tools/exercises.py check ...` inside
them in a subprocess (so the copy's own files are imported): every hole fails with its instructions,
re-inserting the reference text makes every check pass, and a planted bug fails with the hint aimed
at it.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import exercises as X   # tools/exercises.py (tools/ is on pytest's pythonpath)

REPO = Path(__file__).resolve().parents[1]
NAMES = list(X.EXERCISES)


def reference_text(name: str) -> str:
    return (REPO / X.EXERCISES[name].file).read_text(encoding="utf-8")


def run_check(copy: Path, spec: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python tools/exercises.py check spec` inside a copy, with nothing pointing at this repo.

    At the copy's root (cwd None) it runs the copy's own tool, as a student types it. From elsewhere (cwd
    a sub-folder of the copy) it runs THIS repository's tools/exercises.py, which must hand over to the
    copy's own tool and check the copy's code, not this repository's."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REFT_MINI_EXERCISES_REEXEC")}
    tool = "tools/exercises.py" if cwd is None else str(REPO / "tools" / "exercises.py")
    return subprocess.run([sys.executable, tool, "check", spec], cwd=cwd or copy, env=env,
                          capture_output=True, text=True, timeout=120)


def sections(output: str) -> dict[str, str]:
    """Split a check report into {exercise name: its "[PASS] name ..." / "[FAIL] name ..." section}."""
    out, name = {}, None
    for line in output.splitlines():
        if line.startswith(("[PASS] ", "[FAIL] ")):
            name = line.split()[1]
            out[name] = line
        elif name and line.startswith("    "):
            out[name] += "\n" + line
        else:
            name = None
    return out


# ------------------------------------------------------------------------------------------ fast

def test_every_exercise_has_one_region_in_its_file_and_every_region_is_registered():
    for name, ex in X.EXERCISES.items():
        text = reference_text(name)
        assert name in X.find_regions(text), f"{ex.file} has no region {name}"
        assert X.region_body(text, name).strip(), f"region {name} is empty"
        assert not X.is_blank(text, name)
        assert 1 <= ex.stars <= 3 and ex.minutes > 0 and ex.instructions.strip()
    marked = set()
    for path in (REPO / "reft_mini").glob("*.py"):
        marked |= set(X.find_regions(path.read_text(encoding="utf-8")))
    assert marked == set(NAMES)


def test_blanked_region_keeps_indentation_compiles_and_restores_byte_for_byte():
    text = reference_text("gae")
    region = X.find_regions(text)["gae"]
    original = X.region_body(text, "gae")
    blank = X.replace_region(text, "gae", X.blank_body(X.EXERCISES["gae"], region.indent))
    compile(blank, "ppo.py", "exec")
    body = X.region_body(blank, "gae")
    assert all(line.startswith(region.indent) and not line.startswith(region.indent + " ")
               for line in body.splitlines())
    assert body.splitlines()[-1] == (f'{region.indent}raise NotImplementedError("exercise gae: see the comment '
                                     'above / python tools/exercises.py check gae")')
    assert X.is_blank(blank, "gae")
    assert "A_t     = delta_t + gamma * lam * A_next" in body and "# Check your work" in body
    assert X.replace_region(blank, "gae", original) == text
    # the text outside the region is untouched
    assert blank.split("# EXERCISE gae: begin")[0] == text.split("# EXERCISE gae: begin")[0]
    assert blank.split("# EXERCISE gae: end")[1] == text.split("# EXERCISE gae: end")[1]


def test_find_regions_rejects_unbalanced_markers():
    with pytest.raises(ValueError, match="no end marker"):
        X.find_regions("def f():\n    # EXERCISE a: begin\n    pass\n")
    with pytest.raises(ValueError, match="without its begin"):
        X.find_regions("def f():\n    pass\n    # EXERCISE a: end\n")


def test_reference_code_passes_every_check():
    failures = {}
    for name in NAMES:
        ok, report = X.run_check(name)
        if not ok:
            failures[name] = report
    assert not failures, "\n".join(failures.values())


def test_list_markdown_table_has_every_exercise_with_stars_and_time():
    md = X.table(markdown=True)
    assert md.splitlines()[0].startswith("| # | exercise | file |")
    for ex in X.EXERCISES.values():
        row = next(line for line in md.splitlines() if f"`{ex.name}`" in line)
        assert f"`{ex.file}`" in row and "★" * ex.stars + " |" in row and f"{ex.minutes} min" in row
    plain = X.table()
    assert all(name in plain for name in NAMES)


def test_project_files_without_git_skips_caches_venv_and_runs(tmp_path):
    for rel in ("a.py", "pkg/b.py", "pkg/__pycache__/b.pyc", ".venv/bin/python", "runs/x/metrics.jsonl",
                ".git/HEAD", "out/ckpt.pt", "x.egg-info/PKG-INFO"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert X.project_files(tmp_path) == ["a.py", "pkg/b.py"]


def test_make_only_blanks_the_named_exercises_and_refuses_a_full_folder(tmp_path):
    dst = tmp_path / "student"
    assert X.main(["make", str(dst), "--only", "gae,logprob"]) == 0
    for name in NAMES:
        text = (dst / X.EXERCISES[name].file).read_text(encoding="utf-8")
        assert X.is_blank(text, name) == (name in ("gae", "logprob")), name
    assert not (dst / ".git").exists()
    assert (dst / "tests" / "test_exercises.py").is_file()
    assert (dst / "tools" / "exercises.py").is_file()   # the student runs the copy's own tool
    assert X.main(["make", str(dst)]) == 2          # not empty: refuse rather than mix two copies
    with pytest.raises(SystemExit):
        X.main(["make", str(tmp_path / "other"), "--only", "no_such_exercise"])


# ------------------------------------------------------------------------------------------ slow

@pytest.fixture(scope="module")
def student_copy(tmp_path_factory):
    """A full student copy (every exercise blanked) and the report of `check all` run from its tests/."""
    dst = tmp_path_factory.mktemp("exercises") / "student"
    assert X.make_copy(dst, None, log=lambda *a: None) == NAMES
    # Run from a sub-folder: the command must find and check this copy, not the installed repository.
    result = run_check(dst, "all", cwd=dst / "tests")
    return dst, result


@pytest.mark.slow
def test_student_copy_every_check_fails_with_its_instructions(student_copy):
    dst, result = student_copy
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"checking the code in {dst / 'reft_mini'}" in result.stdout
    report = sections(result.stdout)
    assert list(report) == NAMES
    for name in NAMES:
        section = report[name]
        first_line = X.EXERCISES[name].instructions.splitlines()[0]
        assert section.startswith(f"[FAIL] {name} "), section
        assert "not implemented yet" in section and first_line in section, section
        assert X.not_implemented_message(name) in section, section
    assert "0/11 passed" in result.stdout


@pytest.mark.slow
def test_round_trip_reinserting_the_reference_regions_passes_every_check(student_copy, tmp_path):
    blank, _ = student_copy
    dst = tmp_path / "restored"
    shutil.copytree(blank, dst, ignore=shutil.ignore_patterns("__pycache__"))
    for name in NAMES:
        path = dst / X.EXERCISES[name].file
        text = path.read_text(encoding="utf-8")
        assert X.is_blank(text, name)
        path.write_text(X.replace_region(text, name, X.region_body(reference_text(name), name)), encoding="utf-8")
    for rel in {ex.file for ex in X.EXERCISES.values()}:
        assert (dst / rel).read_text(encoding="utf-8") == (REPO / rel).read_text(encoding="utf-8"), rel
    result = run_check(dst, "all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(s.startswith("[PASS]") for s in sections(result.stdout).values())
    assert f"{len(NAMES)}/{len(NAMES)} passed" in result.stdout


# Planted bugs: (exercise, [(reference text, wrong text), ...], words the report must contain).
# Each substitution must apply inside the reference region, so a refactor cannot make a test pass silently.
BUGS = [
    ("gae", [("gamma * lam * next_adv", "gamma * next_adv")], ["ignore lambda", "expected advantages"]),
    ("gae", [("torch.where(m, advantages + values,", "torch.where(m, advantages,")],
     ["returns = advantages + values"]),
    ("gae", [("next_value = torch.where(valid, values[:, t], next_value)", "next_value = values[:, t]")],
     ["pad's value"]),
    ("kl_reward", [("rewards = -kl_coef * kl", "rewards = kl_coef * kl")], ["KL sign flipped", "expected rewards"]),
    ("kl_reward", [("on_last = positions == last[:, None]", "on_last = positions == 0")],
     ["score placed on the first token"]),
    ("kl_reward", [("kl = torch.where(m, logp_old - logp_ref, torch.zeros((), dtype=logp_old.dtype, "
                    "device=logp_old.device))", "kl = (logp_old - logp_ref) * m")], ["nan", "torch.where"]),
    ("ppo_losses", [("torch.clamp(ratio, 1.0 - clip, 1.0 + clip)", "ratio")], ["ratio not clipped", "expected loss"]),
    ("ppo_losses", [("torch.maximum(loss_unclipped, loss_clipped)", "torch.minimum(loss_unclipped, loss_clipped)")],
     ["min instead of max"]),
    ("ppo_losses", [("ratio = torch.exp(log_ratio)", "ratio = torch.exp(logp_new - logp_old)")],
     ["gradient", "BEFORE the exp"]),
    ("value_loss", [("per_token = 0.5 * torch.maximum(err_unclipped, err_clipped)", "per_token = 0.5 * err_unclipped")],
     ["value not clipped"]),
    ("value_loss", [("0.5 * torch.maximum", "torch.maximum")], ["factor 0.5 is missing"]),
    ("value_loss", [("v_clipped = values_old + torch.clamp(values_new - values_old, -clip, clip)",
                     "v_clipped = torch.clamp(values_new, -clip, clip)")], ["change relative to values_old"]),
    ("attention", [("is_causal=True", "is_causal=False")], ["no causal mask", "expected output"]),
    ("attention", [("attn_mask=attn_mask, dropout_p=p", "is_causal=True, dropout_p=p")], ["attn_mask ignored"]),
    ("kv_cache", [("            cache.k[layer][:, :, start:start + T] = k\n"
                   "            cache.v[layer][:, :, start:start + T] = v\n", "")], ["cache not appended"]),
    ("kv_cache", [("k = cache.k[layer][:, :, :start + T]", "k = k"), ("v = cache.v[layer][:, :, :start + T]", "v = v")],
     ["rebind k = cache.k[layer][:, :, :start + T]"]),
    ("sampling", [("if top_k is not None and 0 < top_k < logits.size(-1):", "if False:")], ["no top-k filter"]),
    ("sampling", [("logits < kth", "logits <= kth")], ["top-k off by one"]),
    ("sampling", [("drop_sorted = (probs.cumsum(-1) - probs) >= top_p", "drop_sorted = probs.cumsum(-1) >= top_p")],
     ["nucleus too small"]),
    ("logprob", [("/ temperature", "")], ["temperature ignored", "expected logp"]),
    ("logprob", [("entropy = -(logp_all.exp() * logp_all).sum(-1)", "entropy = (logp_all.exp() * logp_all).sum(-1)")],
     ["sign is flipped"]),
    ("logprob", [("logp = logp_all.gather", "logp = logits.gather")], ["raw logit"]),
    ("loss_mask", [("[0] * len(prompt_ids) + [1] * (len(completion_ids) + 1)", "[1] * len(ids)")],
     ["prompt tokens are included in the loss mask"]),
    ("loss_mask", [("ids = prompt_ids + completion_ids + [enc.eot_token]", "ids = prompt_ids + completion_ids")],
     ["append the end-of-text token"]),
    ("loss_mask", [("completion_ids = enc.encode_ordinary(target_completion(problem, style))\n"
                    "    ids = prompt_ids + completion_ids + [enc.eot_token]",
                    "ids = enc.encode_ordinary(format_prompt(problem.question, style) "
                    "+ target_completion(problem, style)) + [enc.eot_token]\n"
                    "    completion_ids = ids[len(prompt_ids):-1]")], ["tokenise the two separately"]),
    ("extract_answer", [("triggers[-1]", "triggers[0]")], ["LAST trigger"]),
    ("extract_answer", [("return _number_from_match(m)", "return m.group(0)")], ["canonical spelling"]),
    ("extract_answer", [("    if not triggers:\n        return None",
                         "    if not triggers:\n        nums = list(_NUMBER.finditer(text))\n"
                         "        return _number_from_match(nums[-1]) if nums else None")], ["no trigger"]),
    ("majority_vote", [("key = _answer_key(answer)", "key = answer")], ["same answer", "_answer_key"]),
    ("majority_vote", [("for key, votes in counts.items():", "for key, votes in reversed(counts.items()):")],
     ["tie goes to the answer that appeared first"]),
    ("majority_vote", [("        if key is not None:\n", "        if True:\n")], ["it is not an answer"]),
]


def _bug_groups():
    """Pack the bugs into as few copies as possible: one bug per exercise per copy, and never an attention
    bug next to a kv_cache one (the kv_cache check runs the attention)."""
    groups: list[list[int]] = []
    for i, (name, _, _) in enumerate(BUGS):
        for group in groups:
            names = {BUGS[j][0] for j in group}
            if name not in names and not ({name} | names) >= {"attention", "kv_cache"}:
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def test_every_planted_bug_applies_inside_its_reference_region():
    for name, subs, _ in BUGS:
        body = X.region_body(reference_text(name), name)
        for old, new in subs:
            assert old in body, f"planted bug for {name}: {old!r} is not in the reference region"
            body = body.replace(old, new)
        assert body != X.region_body(reference_text(name), name)
    assert {name for name, _, _ in BUGS} == set(NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("group", _bug_groups(), ids=lambda g: f"{len(g)}_bugs_from_{BUGS[g[0]][0]}")
def test_planted_bug_fails_with_its_hint(group, tmp_path):
    dst = tmp_path / "buggy"
    X.make_copy(dst, [], log=lambda *a: None)           # a plain copy: no holes
    for i in group:
        name, subs, _ = BUGS[i]
        path = dst / X.EXERCISES[name].file
        text = path.read_text(encoding="utf-8")
        body = X.region_body(text, name)
        for old, new in subs:
            assert old in body
            body = body.replace(old, new)
        path.write_text(X.replace_region(text, name, body), encoding="utf-8")
    result = run_check(dst, ",".join(BUGS[i][0] for i in group))
    assert result.returncode == 1, result.stdout + result.stderr
    report = sections(result.stdout)
    for i in group:
        name, subs, words = BUGS[i]
        section = report[name]
        assert section.startswith(f"[FAIL] {name} "), section
        assert "not implemented" not in section and "your code raised" not in section, section
        for word in words:
            assert word.lower() in section.lower(), f"bug {subs[0][1]!r} in {name}: {word!r} not in\n{section}"
