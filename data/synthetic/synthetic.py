"""Offline synthetic grade-school math problems in GSM8K's shape (+ SVAMP-style and MathQA-style splits).

Paper: ReFT (Luong et al. 2024) trains on GSM8K, SVAMP and MathQA with N-CoT (natural-language chains of
thought ending "#### N") and P-CoT (a Python `solution()`); its gain over SFT rests on RL exploring
*several valid reasoning paths* per question. This module makes a data set with the same shape that a
~1-10 M parameter GPT on a 2-core CPU can learn -- but only imperfectly from SFT, so RL has room.

Example problems, produced by this generator (`python data/synthetic/synthetic.py --show 3`, train split):

    --- syn-train-0-library ---
    Question: Ella sorts 8 crates of atlases, and each crate has 38 atlases. She lends out 49 of the atlases.
        How many atlases does Ella have left?
    N-CoT:
    Ella sorts 8*38=304 atlases.
    After lending out 49, 304-49=255 atlases are left.
    #### 255
    P-CoT:
    def solution():
        \"\"\"Ella sorts 8 crates of atlases, and each crate has 38 atlases. She lends out 49 of the atlases. How
            many atlases does Ella have left?\"\"\"
        atlas_crates = 8
        atlases_per_crate = 38
        atlases_lent = 49
        atlases = atlas_crates * atlases_per_crate
        atlases_left = atlases - atlases_lent
        result = atlases_left
        return result

    --- syn-train-1-music_practice ---
    Question: On Monday, Leo practices 18 minutes. On Tuesday, he practices 29 more. Amara practices 37
        minutes in June and 27 minutes in July. Lily practices 12 minutes in the morning and 27 minutes in the
        afternoon. How many minutes do Leo, Amara and Lily practice together?
    N-CoT:
    Amara practices 37+27=64 minutes in the two months.
    Lily practices 12+27=39 minutes that day.
    Leo practices 18+29=47 minutes on the two days.
    Together they practice 47+64+39=150 minutes.
    #### 150
    P-CoT:
    def solution():
        \"\"\"On Monday, Leo practices 18 minutes. On Tuesday, he practices 29 more. Amara practices 37 minutes
            in June and 27 minutes in July. Lily practices 12 minutes in the morning and 27 minutes in the
            afternoon. How many minutes do Leo, Amara and Lily practice together?\"\"\"
        leo_minutes_monday = 18
        leo_minutes_tuesday = 29
        amara_minutes_june = 37
        amara_minutes_july = 27
        lily_minutes_morning = 12
        lily_minutes_afternoon = 27
        amara_minutes = amara_minutes_june + amara_minutes_july
        lily_minutes = lily_minutes_morning + lily_minutes_afternoon
        leo_minutes = leo_minutes_monday + leo_minutes_tuesday
        total_minutes = leo_minutes + amara_minutes + lily_minutes
        result = total_minutes
        return result

    --- syn-train-2-savings ---
    Question: Mina saves 25 dollars. Sara saves 24 dollars per week for 7 weeks. Jack saves 2 times as many
        dollars as Mina. Mina uses 3 of the dollars to buy lunch. How many dollars remain?
    N-CoT:
    Sara saves 7*24=168 dollars.
    Jack saves 25*2=50 dollars.
    Together they save 25+168+50=243 dollars.
    After spending 3, 243-3=240 dollars are left.
    #### 240
    P-CoT:
    def solution():
        \"\"\"Mina saves 25 dollars. Sara saves 24 dollars per week for 7 weeks. Jack saves 2 times as many
            dollars as Mina. Mina uses 3 of the dollars to buy lunch. How many dollars remain?\"\"\"
        mina_dollars = 25
        dollars_per_week = 24
        sara_weeks = 7
        jack_times_as_many = 2
        dollars_spent_on_lunch = 3
        sara_dollars = sara_weeks * dollars_per_week
        jack_dollars = mina_dollars * jack_times_as_many
        total_dollars = mina_dollars + sara_dollars + jack_dollars
        dollars_left = total_dollars - dollars_spent_on_lunch
        result = dollars_left
        return result

(long lines wrapped here; `--show` prints them as generated)

The splits are files beside this script, data/synthetic/{split}.jsonl (not committed: they are made in
about three seconds). reft_mini/data.py runs this script once when they are missing or were made by
another version of it (meta.json holds this file's sha256); to make them by hand (deterministic bytes):

    python data/synthetic/synthetic.py

How a problem is built (and why):
  * A *world* (one of >= 20 story templates: shopping, baking, farm, library, savings, ...) supplies the
    nouns, verbs and phrasings. Several phrasings per fact and per question, 40 names, several item
    kinds and containers per world: the test set is not a memory test of sentences.
  * The computation is a small expression DAG: 1-3 *parts* (a count, "a bags of b", "a on Monday and b
    on Tuesday", "b more than <another part>") that are added up, then 0-3 *post operations* on the
    total (take some away, give g friends h each, share equally, pack into boxes of k, sell at $p each,
    how many more to reach a goal). Parts are independent of each other, so a problem often has more
    than one valid order of steps (e.g. total = a*b + c*d: either product first): ~48% of the default
    training problems do, ~72% of those with 3-4 steps (a 2-step problem always has exactly one order;
    the knob keep_single_order sets how many single-order 3+-step problems are kept). The gold CoT is
    written in ONE order drawn uniformly from all valid orders (`valid_orders` lists them,
    `all_cots` renders every one). The data itself thus shows varied orders, and sampled reasoning
    paths can differ while being right -- the situation ReFT's RL exploits. (A throwaway prototype
    that always wrote the steps in sentence order gave each question essentially one chain, and PPO
    then had little to explore.)
  * Arithmetic a tiny model can learn digit by digit: + - * / with exact non-negative integer results
    (division only when exact), stated numbers mostly 2..50, every intermediate result <= 1000.
  * Every number in the story is written in digits, so "copying a quantity" is a skill the model can
    pick up; one sentence per step in the N-CoT with the arithmetic spelled `a*b=c`, so prompt + N-CoT
    is ~70-160 tokens with the project's digit-per-token BPE (train: mean 101, max 159; P-CoT repeats
    the question in its docstring: mean 154, max 237).
  * P-CoT: the question's quantities used by the solution become named variables (in story order), then
    one assignment per step in the same order as the N-CoT, then `result = ...; return result`.
    Distractor quantities are NOT assigned: the program is the solution, and picking the relevant facts
    is part of what the model has to learn. Division is written `//` (always exact here), so the
    program returns an int equal to the answer.

Splits (`DEFAULT_SPLITS`; fixed seeds; questions unique within a split):
    train         3000  steps 2-4 (uniform), no distractors, facts told in construction order
    test          1000  same distribution, disjoint questions
    svamp_test    1000  SVAMP-style robustness: 1-2 distractor sentences, shuffled facts, and for ~1/4
                        a question about an intermediate quantity, for ~1/4 the "other unknown" (the
                        result is given, one stated quantity is asked for: the inverse problem)
    mathqa_train  2000  MathQA-style multiple choice: the question ends with an options line
    mathqa_test   1000    "a ) 38 , b ) 27 , c ) 30 , d ) 45 , e ) 12"; answer and N-CoT end with a letter
Train-like splits (train, mathqa_train) and test-like splits (test, svamp_test, mathqa_test) are
disjoint *by construction*: a stable hash (sha256) of the question text puts every possible question
in the train pool or the test pool, and each split only keeps questions of its pool. (Python's hash()
is randomised per process; sha256 is not.) MathQA-style problems have no P-CoT (cot_program None), as
in the paper, which reports MathQA multiple choice with N-CoT only.

Difficulty knobs (`Knobs`, pass as keyword arguments to make_split / load_synthetic):
    min_steps, max_steps     number of arithmetic steps, default 2-4, allowed 1-5
    max_operand              largest stated count/amount (default 50; factors of products stay smaller)
    max_value                largest intermediate or final result (default 1000)
    min_distractors, max_distractors   irrelevant sentences with numbers (default 0)
    shuffle_prob             probability of shuffling the story's movable facts (default 0)
    intermediate_prob        probability of asking for an intermediate quantity (default 0)
    inverse_prob             probability of an inverse ("other unknown") question (default 0)
    choices                  MathQA-style multiple choice (default False)
    keep_single_order        P(keep a >=3-step problem with only one valid step order) (default 0.35)
Everything is drawn from one `random.Random(seed)`; no set iteration or hash() order is ever used, so
splits are bit-for-bit reproducible on any machine and Python version with the same `random` module.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from reft_mini.data import DataError, Problem, format_prompt, load_problems_file_synthetic, program_header

GENERATOR_VERSION = 1   # bump when the generator's output changes: the cache is only used when it matches
CACHE_DIR = Path(__file__).resolve().parent  # the splits live beside this script: data/synthetic/


# ====================================================================================================
# Knobs and splits
# ====================================================================================================

@dataclass(frozen=True)
class Knobs:
    min_steps: int = 2            # arithmetic steps per problem (each is one CoT line / program line)
    max_steps: int = 4            #   allowed range 1..5
    max_operand: int = 50         # largest number stated in a story (except goals like "the book has 300 pages")
    max_value: int = 1000         # largest intermediate or final result
    min_distractors: int = 0      # sentences with irrelevant numbers ("Mia is 9 years old.")
    max_distractors: int = 0
    shuffle_prob: float = 0.0     # P(story facts shuffled out of the order the solution uses them)
    intermediate_prob: float = 0.0  # P(question asks for an intermediate quantity)      (SVAMP-style)
    inverse_prob: float = 0.0     # P(result given, a stated quantity asked for instead)  (SVAMP-style)
    choices: bool = False         # MathQA-style multiple choice (options a-e, letter answer)
    keep_single_order: float = 0.35  # P(keep a >=3-step problem whose steps have only ONE valid order);
    #   < 1 favours problems with several valid orders (2-step problems always have exactly one)

    def __post_init__(self):
        if not 1 <= self.min_steps <= self.max_steps <= 5:
            raise DataError(f"steps must satisfy 1 <= min_steps <= max_steps <= 5, "
                             f"got {self.min_steps}..{self.max_steps}")
        if self.max_operand < 6 or self.max_value < 4 * self.max_operand:
            raise DataError("max_operand must be >= 6 and max_value >= 4 * max_operand")
        if not 0 <= self.min_distractors <= self.max_distractors <= 5:
            raise DataError("distractors must satisfy 0 <= min_distractors <= max_distractors <= 5")


# name -> n, seed, pool ("train" or "test": which half of the question space), knob overrides
DEFAULT_SPLITS = {
    "train": dict(n=3000, seed=1001, pool="train", knobs={}),
    "test": dict(n=1000, seed=2002, pool="test", knobs={}),
    "svamp_test": dict(n=1000, seed=3003, pool="test",
                       knobs=dict(min_distractors=1, max_distractors=2, shuffle_prob=1.0,
                                  intermediate_prob=0.25, inverse_prob=0.25)),
    "mathqa_train": dict(n=2000, seed=4004, pool="train", knobs=dict(choices=True)),
    "mathqa_test": dict(n=1000, seed=5005, pool="test", knobs=dict(choices=True)),
}
TEST_POOL_SHARE = 5  # 1 in 5 possible questions belongs to the test pool


def pool_of(question: str) -> str:
    """'train' or 'test': a stable function of the question text (without a MathQA options line)."""
    h = int(hashlib.sha256(question.encode("utf-8")).hexdigest()[:8], 16)
    return "test" if h % TEST_POOL_SHARE == 0 else "train"


# ====================================================================================================
# Vocabulary: names and story worlds
# ====================================================================================================

NAMES = [("Mia", "she"), ("Leo", "he"), ("Ava", "she"), ("Sam", "he"), ("Zoe", "she"), ("Max", "he"),
         ("Lily", "she"), ("Ben", "he"), ("Emma", "she"), ("Noah", "he"), ("Ella", "she"), ("Omar", "he"),
         ("Nina", "she"), ("Jack", "he"), ("Rosa", "she"), ("Liam", "he"), ("Aria", "she"), ("Ravi", "he"),
         ("Maya", "she"), ("Theo", "he"), ("Ivy", "she"), ("Eli", "he"), ("Lucy", "she"), ("Tom", "he"),
         ("Chloe", "she"), ("Finn", "he"), ("Hana", "she"), ("Kai", "he"), ("Sara", "she"), ("Owen", "he"),
         ("Jade", "she"), ("Luis", "he"), ("Nora", "she"), ("Adam", "he"), ("Mina", "she"), ("Hugo", "he"),
         ("Amara", "she"), ("Jonas", "he"), ("Priya", "she"), ("Diego", "he")]


@dataclass(frozen=True)
class Noun:
    s: str                 # singular
    p: str                 # plural
    var: str               # identifier stem for programs (from the plural)
    prep: str = "in"       # container preposition: "in each bag", "on each tray"


def N(s: str, p: str | None = None, var: str | None = None, prep: str = "in") -> Noun:
    p = p or s + "s"
    return Noun(s, p, var or re.sub(r"\W+", "_", p).strip("_").lower(), prep)


@dataclass(frozen=True)
class Sub:          # the running total shrinks by a stated amount d
    fact: str       # "{O} eats {d} of the {W}."
    did: str        # "eating {d}"  -> CoT "After eating 5, 24-5=19 cookies are left."
    pp: str         # "eaten"       -> variable cookies_eaten, label "the cookies eaten"
    ask: str        # question whose answer is d (inverse problems)


@dataclass(frozen=True)
class Share:        # x / k: equal shares
    recip: Noun
    fact: str = "{O} shares the {W} equally among {k} {rs}."
    line: str = "Each {r} gets {x}/{k}={y} {W}."
    ask: str = "How many {W} does each {r} get?"
    state: str = "Each {r} gets {y} {W}."


@dataclass(frozen=True)
class Pack:         # x / k: how many groups of k
    unit: Noun
    fact: str = "{O} puts the {W} into {us} of {k}."
    line: str = "{O} fills {x}/{k}={y} {us}."
    ask: str = "How many {us} does {O} fill?"
    state: str = "{O} fills {y} {us}."


@dataclass(frozen=True)
class Price:        # x * p dollars
    kind: str = "sell"   # "sell": may follow any other step; "buy": directly after the purchase only
    fact: str = "{O} sells each {u} for ${p}."
    line: str = "{O} makes {x}*{p}=${y}."
    ask: str = "How much money does {O} make?"
    state: str = "{O} makes ${y}."
    var: str = "money"


@dataclass(frozen=True)
class Rest:         # T - x: how far from a goal
    fact: str       # "The book has {T} pages."
    line: str       # "{O_has} {T}-{x}={y} pages left to read."
    ask: str        # "How many more pages {does_O} need to read?"
    state: str      # "{O_has} {y} pages left to read."
    var_t: str      # "book_pages"
    var: str        # "pages_left"


@dataclass(frozen=True)
class World:
    name: str
    verbs: tuple                  # ((3rd person, base), ...)
    kinds: tuple                  # Nouns counted in the story
    whole: Noun | None = None     # umbrella noun when the parts are different kinds ("pieces of fruit")
    conts: tuple = ()             # containers: "a bags of b apples"
    rates: tuple = ()             # periods: "b pages every day for a days"
    subs: tuple = ()
    give: Noun | None = None      # "gives g friends h cookies each"
    shares: tuple = ()
    packs: tuple = ()
    price: Price | None = None
    rests: tuple = ()
    distract: tuple = ()          # extra irrelevant sentences with {n} (and {X}: someone's name)
    owners_only: bool = False     # parts always belong to different people (one kind)


FRIEND, COUSIN, NEIGHBOR, CLASSMATE = N("friend"), N("cousin"), N("neighbor"), N("classmate")
SELL = Price(line="That is {x}*{p}=${y}.", ask="How much money {does_O} make?", state="{O_has} made ${y}.")
BUY = Price(kind="buy", fact="Each {u} costs ${p}.", line="{O} pays {x}*{p}=${y}.",
            ask="How many dollars does {O} spend?", state="{O} spends ${y}.", var="cost")

WORLDS = [
    World("shopping", (("buys", "buy"), ("gets", "get")),
          (N("apple"), N("pear"), N("orange"), N("peach", "peaches"), N("plum")),
          whole=N("piece of fruit", "pieces of fruit", "fruit"),
          conts=(N("bag"), N("box", "boxes"), N("basket")),
          subs=(Sub("{O} eats {d} of the {W}.", "eating {d}", "eaten", "How many of the {W} does {O} eat?"),
                Sub("{d} of the {W} are bruised, so {O} throws them away.", "throwing away {d}", "thrown_away",
                    "How many of the {W} are bruised?")),
          give=NEIGHBOR, shares=(Share(FRIEND),), price=BUY,
          distract=("The store is {n} minutes from {X}'s house.", "{X} has {n} dollars in a wallet.")),
    World("baking", (("bakes", "bake"), ("makes", "make")),
          (N("cookie"), N("muffin"), N("cupcake"), N("brownie"), N("roll")),
          whole=N("treat"), conts=(N("tray", prep="on"), N("batch", "batches"), N("pan", prep="on")),
          subs=(Sub("{O} eats {d} of the {W}.", "eating {d}", "eaten", "How many of the {W} does {O} eat?"),
                Sub("{d} of the {W} get burnt and are thrown away.", "throwing away {d}", "burnt",
                    "How many of the {W} get burnt?")),
          give=FRIEND, shares=(Share(NEIGHBOR),), packs=(Pack(N("box", "boxes")), Pack(N("bag"))), price=SELL,
          distract=("The oven takes {n} minutes to heat up.", "{X}'s recipe book has {n} recipes.")),
    World("egg farm", (("collects", "collect"), ("gathers", "gather")),
          (N("hen egg"), N("duck egg"), N("goose egg", var="goose_eggs")), whole=N("egg"),
          conts=(N("basket"), N("bucket")),
          subs=(Sub("{d} of the {W} break.", "{d} break", "broken", "How many of the {W} break?"),
                Sub("{O} uses {d} of the {W} for breakfast.", "using {d}", "used",
                    "How many {W} does {O} use for breakfast?")),
          give=NEIGHBOR, packs=(Pack(N("carton")),), price=SELL,
          distract=("The farm has {n} cows.", "{X} walks {n} minutes to the barn.")),
    World("animal farm", (("keeps", "keep"), ("raises", "raise")),
          (N("cow"), N("sheep", "sheep"), N("goat"), N("pig"), N("horse")), whole=N("animal"),
          conts=(N("pen"), N("barn"), N("field")),
          subs=(Sub("{O} sells {d} of the {W}.", "selling {d}", "sold", "How many of the {W} does {O} sell?"),
                Sub("{d} of the {W} move to another farm.", "{d} move away", "moved",
                    "How many of the {W} move to another farm?")),
          distract=("The farm is {n} miles from town.", "{X}'s tractor is {n} years old.")),
    World("school supplies", (("buys", "buy"),),
          (N("pencil"), N("pen"), N("eraser"), N("marker"), N("crayon")),
          whole=N("school supply", "school supplies", "supplies"),
          conts=(N("pack"), N("box", "boxes"), N("case")),
          subs=(Sub("{O} loses {d} of the {W}.", "losing {d}", "lost", "How many of the {W} does {O} lose?"),),
          give=CLASSMATE, shares=(Share(CLASSMATE),), price=BUY,
          distract=("{X}'s class has {n} students.", "School starts in {n} days.")),
    World("stickers", (("has", "have"), ("gets", "get")),
          (N("star sticker"), N("animal sticker"), N("heart sticker")), whole=N("sticker"),
          conts=(N("sheet", prep="on"), N("roll"), N("pad")),
          subs=(Sub("{O} puts {d} of the {W} on a poster.", "using {d}", "used",
                    "How many {W} does {O} put on the poster?"),),
          give=CLASSMATE, shares=(Share(N("student")),), rests=(Rest("{O}'s album has room for {T} stickers.",
              "{O_has} room for {T}-{x}={y} more stickers.", "How many more stickers can {O} put in the album?",
              "{O}'s album has room for {y} more stickers.", "album_space", "space_left"),),
          distract=("{X} is {n} years old.", "The poster is {n} inches wide.")),
    World("library", (("shelves", "shelve"), ("sorts", "sort")),
          (N("novel"), N("comic"), N("cookbook"), N("atlas", "atlases"), N("picture book")), whole=N("book"),
          conts=(N("cart", prep="on"), N("box", "boxes"), N("crate")),
          subs=(Sub("{O} lends out {d} of the {W}.", "lending out {d}", "lent",
                    "How many of the {W} does {O} lend out?"),
                Sub("{d} of the {W} are too damaged to keep.", "removing {d}", "damaged",
                    "How many of the {W} are damaged?")),
          shares=(Share(N("shelf", "shelves"), fact="{O} puts the {W} equally on {k} {rs}.",
                        line="Each {r} gets {x}/{k}={y} {W}.", ask="How many {W} go on each {r}?",
                        state="Each {r} gets {y} {W}."),),
          distract=("The library opens at {n9} o'clock.", "{X} has worked at the library for {n} months.")),
    World("garden", (("plants", "plant"),),
          (N("tulip"), N("rose"), N("daisy", "daisies"), N("sunflower"), N("lily", "lilies")), whole=N("flower"),
          conts=(N("row"), N("bed"), N("pot")),
          subs=(Sub("Rabbits eat {d} of the {W}.", "the rabbits eat {d}", "eaten",
                    "How many of the {W} do the rabbits eat?"),
                Sub("{d} of the {W} wilt.", "{d} wilt", "wilted", "How many of the {W} wilt?")),
          give=NEIGHBOR, packs=(Pack(N("vase"), fact="{O} cuts the {W} and puts them into {us} of {k}."),), price=SELL,
          rests=(Rest("The garden has room for {T} flowers.", "There is room for {T}-{x}={y} more flowers.",
                      "How many more flowers can {O} plant?", "There is room for {y} more flowers.",
                      "garden_space", "room_left"),),
          distract=("The garden is {n} feet long.", "{X} waters the garden for {n} minutes.")),
    World("road trip", (("drives", "drive"),), (N("mile"),), rates=(N("day"), N("hour")), owners_only=True,
          rests=(Rest("The whole trip is {T} miles long.", "{O_has} {T}-{x}={y} miles left to drive.",
                      "How many more miles {does_O} have to drive?", "{O_has} {y} miles left to drive.",
                      "trip_miles", "miles_left"),),
          distract=("The car has {n} gallons of gas.", "{X} listens to {n} songs on the way.")),
    World("bike rides", (("rides", "ride"), ("bikes", "bike")), (N("kilometer"),), rates=(N("day"), N("week")),
          owners_only=True,
          rests=(Rest("The race route is {T} kilometers long.", "{O_has} {T}-{x}={y} kilometers left to ride.",
                      "How many more kilometers {does_O} have to ride?", "{O_has} {y} kilometers left to ride.",
                      "route_kilometers", "kilometers_left"),),
          distract=("{X}'s bike has {n} gears.", "The park has {n} benches.")),
    World("savings", (("saves", "save"), ("puts away", "put away")), (N("dollar"),), rates=(N("week"), N("month")),
          owners_only=True,
          subs=(Sub("{O} spends {d} of the {W} on a gift.", "spending {d}", "spent",
                    "How many dollars does {O} spend on the gift?"),
                Sub("{O} uses {d} of the {W} to buy lunch.", "spending {d}", "spent_on_lunch",
                    "How many dollars does {O} spend on lunch?")),
          shares=(Share(COUSIN, fact="{O} splits the {W} equally among {k} {rs}."),),
          rests=(Rest("{O} wants a bike that costs {T} dollars.", "{O_has} to save {T}-{x}={y} more dollars.",
                      "How many more dollars {does_O} need for the bike?", "{O_has} to save {y} more dollars.",
                      "bike_price", "dollars_needed"),),
          distract=("{X}'s piggy bank is {n} years old.", "{X} is {n} years old.")),
    World("basketball", (("scores", "score"),), (N("point"),), rates=(N("game"), N("quarter")), owners_only=True,
          rests=(Rest("The school record is {T} points.", "{O_has} to score {T}-{x}={y} more points.",
                      "How many more points {does_O} need to reach the record?", "{O_has} to score {y} more points.",
                      "record_points", "points_needed"),),
          distract=("The gym has {n} rows of seats.", "{X} wears jersey number {n}.")),
    World("reading", (("reads", "read"),), (N("page"),), rates=(N("day"), N("night")), owners_only=True,
          rests=(Rest("The book has {T} pages.", "{O_has} {T}-{x}={y} pages left to read.",
                      "How many more pages {does_O} need to read to finish the book?",
                      "{O_has} {y} pages left to read.", "book_pages", "pages_left"),),
          distract=("The book has {n} chapters.", "{X} reads in a room with {n} lamps.")),
    World("aquarium", (("keeps", "keep"), ("has", "have")),
          (N("goldfish", "goldfish"), N("guppy", "guppies"), N("tetra")), whole=N("fish", "fish"),
          conts=(N("tank"), N("bowl")),
          subs=(Sub("{O} gives {d} of the {W} to a friend.", "giving away {d}", "given_away",
                    "How many {W} does {O} give to a friend?"),),
          packs=(Pack(N("bag"), fact="{O} puts the {W} into {us} with {k} {W} in each."),), price=SELL,
          distract=("Each tank holds {n} liters of water.", "{X} feeds the fish at {n9} o'clock.")),
    World("party", (("buys", "buy"), ("blows up", "blow up")),
          (N("red balloon"), N("blue balloon"), N("green balloon")), whole=N("balloon"), conts=(N("pack"), N("bag")),
          subs=(Sub("{d} of the {W} pop.", "{d} pop", "popped", "How many of the {W} pop?"),),
          give=N("guest"),
          shares=(Share(N("table"), fact="{O} ties the {W} equally to {k} {rs}.", line="Each {r} gets {x}/{k}={y} {W}.",
                        ask="How many {W} are on each {r}?", state="Each {r} gets {y} {W}."),),
          packs=(Pack(N("bunch", "bunches"), fact="{O} ties the {W} into {us} of {k}."),),
          distract=("The party starts at {n9} o'clock.", "{X} invites {n} people.")),
    World("cafe", (("serves", "serve"), ("sells", "sell")),
          (N("cup of coffee", "cups of coffee", "coffees"), N("cup of tea", "cups of tea", "teas"),
           N("glass of juice", "glasses of juice", "juices")), whole=N("drink"), rates=(N("hour"), N("day")),
          price=Price(fact="Each {u} costs ${p}.", line="The cafe makes {x}*{p}=${y}.",
                      ask="How much money does the cafe make?", state="The cafe makes ${y}."),
          distract=("The cafe has {n} tables.", "{X} has worked at the cafe for {n} weeks.")),
    World("trading cards", (("buys", "buy"), ("gets", "get")),
          (N("baseball card"), N("football card"), N("hockey card")), whole=N("card"),
          conts=(N("pack"), N("box", "boxes")),
          subs=(Sub("{O} trades away {d} of the {W}.", "trading away {d}", "traded",
                    "How many {W} does {O} trade away?"),),
          give=FRIEND, shares=(Share(FRIEND),),
          rests=(Rest("{O}'s binder holds {T} cards.", "The binder has room for {T}-{x}={y} more cards.",
                      "How many more cards fit in the binder?", "The binder has room for {y} more cards.",
                      "binder_space", "space_left"),),
          distract=("{X} has been collecting for {n} months.", "The card shop is {n} blocks away.")),
    World("beach", (("collects", "collect"), ("finds", "find")),
          (N("white shell"), N("pink shell"), N("striped shell")), whole=N("shell"), conts=(N("bucket"), N("jar")),
          subs=(Sub("{d} of the {W} break.", "{d} break", "broken", "How many of the {W} break?"),),
          give=FRIEND, shares=(Share(COUSIN),), packs=(Pack(N("jar")),),
          distract=("The beach is {n} miles long.", "The water is {n} degrees.")),
    World("crafts", (("has", "have"), ("buys", "buy")),
          (N("red bead"), N("gold bead"), N("glass bead")), whole=N("bead"),
          conts=(N("bag"), N("box", "boxes"), N("tube")),
          subs=(Sub("{O} drops {d} of the {W} and cannot find them.", "losing {d}", "lost",
                    "How many {W} does {O} drop?"),),
          packs=(Pack(N("bracelet"), fact="Each bracelet needs {k} {W}.", line="{O} can make {x}/{k}={y} {us}.",
                      ask="How many bracelets can {O} make?", state="{O} can make {y} bracelets."),),
          price=SELL, distract=("{X} has made bracelets for {n} years.", "The craft fair has {n} stalls.")),
    World("camping", (("packs", "pack"), ("brings", "bring")),
          (N("marshmallow"), N("granola bar"), N("apple")), whole=N("snack"), conts=(N("bag"), N("box", "boxes")),
          subs=(Sub("The campers eat {d} of the {W} on the first night.", "eating {d}", "eaten",
                    "How many {W} do the campers eat on the first night?"),),
          give=N("camper"), shares=(Share(N("camper")),),
          distract=("The campsite is {n} miles from home.", "The tent sleeps {n9} people.")),
    World("orchard", (("picks", "pick"),), (N("apple"), N("cherry", "cherries"), N("lemon")), whole=N("piece of fruit",
          "pieces of fruit", "fruit"), conts=(N("basket"), N("bucket")), rates=(N("hour"),),
          subs=(Sub("{d} of the {W} are rotten and get thrown away.", "throwing away {d}", "rotten",
                    "How many of the {W} are rotten?"),),
          give=NEIGHBOR, packs=(Pack(N("crate")),), price=SELL,
          distract=("The orchard has {n} trees.", "{X} drives {n} miles to the orchard.")),
    World("toy factory", (("makes", "make"), ("builds", "build")),
          (N("toy car"), N("toy train"), N("doll")), whole=N("toy"), rates=(N("hour"), N("day")),
          subs=(Sub("{d} of the {W} fail the quality check.", "removing {d}", "rejected",
                    "How many {W} fail the check?"),),
          packs=(Pack(N("box", "boxes"), fact="{O} packs the {W} into {us} of {k}."),), price=SELL,
          distract=("The factory has {n} workers.", "{X} has worked there for {n} years.")),
    World("lemonade stand", (("sells", "sell"),), (N("cup of lemonade", "cups of lemonade", "lemonades"),),
          rates=(N("hour"), N("day")), owners_only=True,
          price=Price(fact="Each {u} costs ${p}.", line="That makes {x}*{p}=${y}.",
                      ask="How much money {does_O} make?", state="{O_has} made ${y}."),
          rests=(Rest("The goal is to sell {T} cups.", "{O_has} to sell {T}-{x}={y} more cups.",
                      "How many more cups {does_O} need to sell to reach the goal?", "{O_has} to sell {y} more cups.",
                      "goal_cups", "cups_needed"),),
          distract=("It is {n} degrees outside.", "The stand is {n} steps from the park gate.")),
    World("music practice", (("practices", "practice"),), (N("minute"),), rates=(N("day"), N("week")), owners_only=True,
          rests=(Rest("The teacher asks for {T} minutes of practice.", "{O_has} {T}-{x}={y} minutes left to practice.",
                      "How many more minutes {does_O} need to practice?", "{O_has} {y} minutes left to practice.",
                      "goal_minutes", "minutes_left"),),
          distract=("The piano has {n} white keys in the middle octaves.", "{X} knows {n} songs.")),
]
WORLD_NAMES = [w.name for w in WORLDS]

TIMES = [("on Monday", "on Tuesday", "on the two days", "monday", "tuesday"),
         ("on Saturday", "on Sunday", "over the weekend", "saturday", "sunday"),
         ("in the morning", "in the afternoon", "that day", "morning", "afternoon"),
         ("last week", "this week", "in the two weeks", "last_week", "this_week"),
         ("in June", "in July", "in the two months", "june", "july")]

GENERIC_DISTRACT = ("{X} is {n} years old.", "{X}'s house is {n} minutes from school.",
                    "{X} has {n} marbles at home.", "It is {n} degrees outside today.")

# Phrasings of the parts (the facts the total is built from). {O}: owner, {verb}/{vb}: 3rd person/base,
# {a} {b}: numbers, {kind(s)} the item, {cont(s)} container / period, {prep}: "in"/"on".
GROUP_FACTS = ("{O} {verb} {a} {conts} of {kinds} with {b} {kinds} {prep} each {cont}.",
               "{O} {verb} {a} {conts} of {kinds}, and each {cont} has {b} {kinds}.",
               "{O} {verb} {a} {conts} with {b} {kinds} {prep} each.",
               "Each {cont} holds {b} {kinds}, and {O} {verb} {a} {conts} of them.")
RATE_FACTS = ("{O} {verb} {b} {kinds} every {cont} for {a} {conts}.",
              "For {a} {conts}, {O} {verb} {b} {kinds} each {cont}.",
              "{O} {verb} {b} {kinds} per {cont} for {a} {conts}.")
PLAIN_FACTS = ("{O} {verb} {a} {kinds}.", "{O} also {verb} {a} {kinds}.")
SPLIT_FACTS = ("{O} {verb} {a} {kinds} {t1} and {b} {kinds} {t2}.",
               "{O} {verb} {a} {kinds} {t1} and {b} more {t2}.",
               "{T1}, {O} {verb} {a} {kinds}. {T2}, {pron} {verb} {b} more.")
RELATIVE_FACTS = {"more": "{O} {verb} {b} more {kinds} than {R}.",
                  "fewer": "{O} {verb} {b} fewer {kinds} than {R}.",
                  "times": "{O} {verb} {b} times as many {kinds} as {R}."}
PART_ASKS = ("How many {kinds} does {O} {vb}?", "How many {kinds} does {O} {vb} in all?")
SUM_ASKS_KINDS = ("How many {W} does {O} {vb} in total?", "How many {W} does {O} {vb} altogether?",
                  "What is the total number of {W} that {O} {verb}?")
SUM_ASKS_OWNERS = ("How many {W} do {names} {vb} together?", "How many {W} do {names} {vb} in all?")
LEFT_ASKS = ("How many {W} does {O} have left?", "How many {W} are left?", "How many {W} remain?")


# ====================================================================================================
# The structured problem
# ====================================================================================================

@dataclass
class Fact:
    """One story sentence (or two), kept as template + values so it can be re-rendered with a number
    replaced by "some" (inverse problems)."""
    template: str
    ctx: dict
    movable: bool = True      # may be shuffled (static facts); actions that change the total may not

    def render(self, unknown_key: str | None = None) -> str:
        ctx = dict(self.ctx)
        if unknown_key is not None:
            ctx[unknown_key] = "some"
        text = self.template.format(**ctx)
        return text[0].upper() + text[1:]


@dataclass
class Leaf:
    """A quantity stated in the story."""
    var: str
    value: int
    fact: Fact                # the story fact that states it (an object of SynthProblem.facts)
    key: str                  # placeholder of that fact holding the number
    label: str                # noun phrase for inverse CoT lines ("the number of bags")
    ask: str | None = None    # question asking for it (None: cannot be the unknown of an inverse problem)


@dataclass
class Step:
    """One arithmetic step = one N-CoT line = one program line."""
    var: str
    op: str                   # "+", "-", "*", "//"
    args: list                # variable names (leaves or earlier steps)
    value: int
    line: str                 # N-CoT sentence with the arithmetic, e.g. "Mia bakes 4*6=24 cookies."
    label: str                # noun phrase ("the cookies Mia bakes")
    ask: str | None = None    # question whose answer is this step's value
    state: str | None = None  # sentence stating the value ("Mia has 19 cookies left.")


@dataclass
class SynthProblem:
    world: str
    facts: list               # Fact, in story order
    leaves: dict              # var -> Leaf
    steps: list               # Step, in a valid (construction) order; the last one is the answer
    question: str
    order: list = field(default_factory=list)   # the gold order (indices into steps)
    story_unknown: tuple | None = None          # (Fact, key) rendered as "some" (inverse problems)
    options: list | None = None                 # MathQA-style: 5 option values (ints)
    letter: str | None = None

    @property
    def answer(self) -> int:
        return self.steps[-1].value

    def story(self) -> str:
        out, prev_owner = [], None
        for i, f in enumerate(self.facts):
            key = self.story_unknown[1] if self.story_unknown and self.story_unknown[0] is f else None
            text = f.render(key)
            owner, pron = f.ctx.get("O"), f.ctx.get("pron")
            starts_with_owner = bool(owner) and text.startswith(owner + " ")
            if i == 0:
                text = text.replace(" also ", " ", 1)   # "also" only makes sense after another fact
            elif starts_with_owner and pron and prev_owner == owner:
                text = pron.capitalize() + text[len(owner):]  # "Mia ... Mia ..." -> "Mia ... She ..."
            # the next sentence may use a pronoun only if this one has the same person as its subject
            prev_owner = owner if starts_with_owner else None
            out.append(text)
        return " ".join(out)

    def base_question(self) -> str:
        return self.story() + " " + self.question

    def full_question(self) -> str:
        q = self.base_question()
        if self.options is not None:
            q += "\n" + " , ".join(f"{L} ) {v}" for L, v in zip("abcde", self.options))
        return q


# ----------------------------------------------------------------------------------------------------
# Orders of steps: the DAG's linear extensions
# ----------------------------------------------------------------------------------------------------

def _deps(steps: list) -> list:
    index = {s.var: i for i, s in enumerate(steps)}
    return [[index[a] for a in s.args if a in index] for s in steps]


def valid_orders(sp: SynthProblem, limit: int = 5000) -> list:
    """Every order of sp.steps in which each step comes after the steps it uses (up to `limit`),
    in a fixed (lexicographic) enumeration order."""
    deps = _deps(sp.steps)
    n, out, cur, done = len(sp.steps), [], [], [False] * len(sp.steps)

    def rec():
        if len(out) >= limit:
            return
        if len(cur) == n:
            out.append(tuple(cur))
            return
        for i in range(n):
            if not done[i] and all(done[j] for j in deps[i]):
                done[i] = True
                cur.append(i)
                rec()
                cur.pop()
                done[i] = False

    rec()
    return out


def render_cot(sp: SynthProblem, order) -> str:
    """N-CoT: one line per step in `order`, then GSM8K's answer line ("#### 19" or, MathQA-style, "#### c")."""
    lines = [sp.steps[i].line for i in order]
    if sp.letter is not None:
        lines.append(f"{sp.answer} is option {sp.letter}.")
        lines.append(f"#### {sp.letter}")
    else:
        lines.append(f"#### {sp.answer}")
    return "\n".join(lines)


def all_cots(sp: SynthProblem, limit: int = 5000) -> list:
    """The N-CoT of every valid step order (the gold one among them)."""
    return [render_cot(sp, o) for o in valid_orders(sp, limit)]


def _in_story_order(sp: SynthProblem, leaf_vars) -> list:
    """Leaf variables sorted by where their number appears in the story."""
    position = {id(f): i for i, f in enumerate(sp.facts)}

    def key(v):
        leaf = sp.leaves[v]
        return position[id(leaf.fact)], leaf.fact.template.find("{" + leaf.key + "}")

    return sorted(leaf_vars, key=key)


def render_program(sp: SynthProblem, order, question: str | None = None) -> str:
    """P-CoT: docstring = question, used quantities as variables (story order), steps in `order`."""
    question = sp.base_question() if question is None else question
    used = []
    for i in order:
        for a in sp.steps[i].args:
            if a in sp.leaves and a not in used:
                used.append(a)
    body = [f"{v} = {sp.leaves[v].value}" for v in _in_story_order(sp, used)]
    for i in order:
        s = sp.steps[i]
        body.append(f"{s.var} = {f' {s.op} '.join(s.args)}")
    body += [f"result = {sp.steps[-1].var}", "return result"]
    return program_header(question) + "\n".join("    " + b for b in body)


# ====================================================================================================
# Building one problem
# ====================================================================================================

PART_STEPS = {"P": 0, "G": 1, "T": 1, "R": 1}
POST_STEPS = {"S": 1, "X": 2, "D": 1, "K": 1, "M": 1, "R": 1}
# Allowed sequences of post operations (S: take away d, X: give g people h each, D: share equally,
# K: pack into groups of k, M: price, R: distance to a goal). Price only comes last; "buy" prices only
# directly after the purchase (you pay for what you bought, not for what is left).
POST_SEQS = [(), ("S",), ("X",), ("D",), ("K",), ("M",), ("R",), ("S", "D"), ("X", "D"), ("S", "K"), ("X", "K"),
             ("S", "M"), ("K", "M"), ("S", "S"), ("S", "R"), ("X", "R"), ("S", "K", "M"), ("S", "X")]
_CONFIGS: dict = {}


def _has(world: World, op: str, owners: bool) -> bool:
    return {"S": bool(world.subs), "X": world.give is not None, "D": bool(world.shares), "K": bool(world.packs),
            "M": world.price is not None and not (owners and world.price.kind == "buy"), "R": bool(world.rests)}[op]


def _configs(world: World, owners: bool) -> dict:
    """steps -> list of (part kinds, post ops) this world can tell, in a fixed order."""
    key = (world.name, owners)
    if key not in _CONFIGS:
        by_steps: dict = {}
        part_lists = [("P",), ("G",), ("T",)]
        for n in (2, 3):
            part_lists += [tuple(p) for p in _product(["P", "G", "T", "R"], n) if p[0] != "R"]
        if world.whole is None and not owners:
            part_lists = [p for p in part_lists if len(p) == 1]
        if not (world.conts or world.rates):
            part_lists = [p for p in part_lists if "G" not in p]
        for parts in part_lists:
            for post in POST_SEQS:
                if not all(_has(world, op, owners) for op in post):
                    continue
                if "M" in post and world.price.kind == "buy" and post != ("M",):
                    continue
                if post == ("S", "S") and len(world.subs) < 2:
                    continue
                steps = sum(PART_STEPS[p] for p in parts) + (len(parts) > 1) + sum(POST_STEPS[o] for o in post)
                if steps >= 1:
                    by_steps.setdefault(steps, []).append((parts, post))
        _CONFIGS[key] = by_steps
    return _CONFIGS[key]


def _product(items, n):
    if n == 0:
        return [[]]
    return [[x] + rest for x in items for rest in _product(items, n - 1)]


_IDENT = re.compile(r"\W+")


class _Fail(Exception):
    """Numbers did not work out (e.g. no exact divisor); the caller draws again."""


class _Builder:
    def __init__(self, rng: random.Random, knobs: Knobs, world: World):
        self.rng, self.k, self.w = rng, knobs, world
        self.facts, self.leaves, self.steps, self.vars = [], {}, [], set()

    # -- small helpers -------------------------------------------------------------------------------
    def var(self, name: str, prefix: str = "") -> str:
        """A fresh Python identifier from story words; on a clash, the owner's name or a number is added."""
        name = _IDENT.sub("_", name.lower()).strip("_")
        if name[0].isdigit():
            name = "n_" + name
        for c in (name, f"{prefix}_{name}" if prefix else name, *(f"{name}_{i}" for i in range(2, 20))):
            if c not in self.vars and c not in ("result", "solution"):
                self.vars.add(c)
                return c
        raise _Fail()

    def num(self, lo: int, hi: int) -> int:
        if hi < lo:
            raise _Fail()
        return self.rng.randint(lo, hi)

    def fact(self, template: str, ctx: dict, movable: bool = True) -> Fact:
        self.facts.append(Fact(template, ctx, movable))
        return self.facts[-1]

    def leaf(self, var, value, fact, key, label, ask=None) -> str:
        self.leaves[var] = Leaf(var, value, fact, key, label, ask)
        return var

    def step(self, var, op, args, line, label, ask=None, state=None, ctx=None) -> Step:
        vals = [self.value(a) for a in args]
        if op == "+":
            v = sum(vals)
        elif op == "-":
            v = vals[0] - sum(vals[1:])
        elif op == "*":
            v = vals[0] * vals[1]
        else:
            if vals[1] == 0 or vals[0] % vals[1]:
                raise _Fail()
            v = vals[0] // vals[1]
        if v < 0 or v > self.k.max_value:
            raise _Fail()
        sym = {"+": "+", "-": "-", "*": "*", "//": "/"}[op]
        ctx = dict(ctx or {}, expr=sym.join(str(x) for x in vals), y=v)
        s = Step(var, op, list(args), v, _cap(line.format(**ctx)), label.format(**ctx),
                 ask.format(**ctx) if ask else None, _cap(state.format(**ctx)) if state else None)
        self.steps.append(s)
        return s

    def value(self, var: str) -> int:
        if var in self.leaves:
            return self.leaves[var].value
        for s in self.steps:
            if s.var == var:
                return s.value
        raise KeyError(var)

    # -- the problem ---------------------------------------------------------------------------------
    def build(self, s: int) -> SynthProblem:
        """A problem with exactly `s` arithmetic steps: parts -> total -> post operations.

        Two ways to have several parts: "owners" (Mia, Leo and Ava each bake cookies; one kind of item)
        or "kinds" (Mia buys apples, pears and plums: pieces of fruit). Parts never depend on each
        other except a relative part ("5 more than Leo"), so their steps can be done in any order:
        that is where the several valid orders of a problem come from."""
        rng, w, K = self.rng, self.w, self.k
        owners = w.owners_only or (w.whole is not None and rng.random() < 0.4)
        by_steps = _configs(w, owners)
        if s not in by_steps:
            raise _Fail()
        parts, post = rng.choice(by_steps[s])
        verb, vb = rng.choice(w.verbs)
        people = rng.sample(NAMES, len(parts) if owners else 1)
        if owners or len(parts) == 1:
            kind = rng.choice(w.kinds)
            kinds = [kind] * len(parts)
            W = kind
        else:
            kinds = rng.sample(list(w.kinds), len(parts))
            W = w.whole
        owner0, pron0 = people[0]
        names = _join_names([p[0] for p in people]) if owners else owner0
        base = dict(verb=verb, vb=vb, W=W.p, Ws=W.s, names=names,
                    O=owner0, pron=pron0,
                    does_O="do they" if owners and len(parts) > 1 else f"does {owner0}",
                    O_has="they have" if owners and len(parts) > 1 else f"{owner0} has")

        # ---- goal first ("The book has 300 pages."): a static fact, natural at the start ----
        rest = rng.choice(w.rests) if "R" in post else None
        rest_fact = self.fact(rest.fact, dict(base)) if rest else None

        # ---- parts: each is a count of one kind of item, owned by one person ----
        part_vars, used_conts = [], []
        for i, pk in enumerate(parts):
            O, pron = people[i] if owners else people[0]
            kd = kinds[i]
            prefix = O.lower() if owners else ""               # variable names: mia_cookies vs apples
            pv = f"{prefix}_{kd.var}" if owners else kd.var
            ctx = dict(base, O=O, pron=pron, kind=kd.s, kinds=kd.p)
            fmt = lambda t: t.format(**ctx)                     # noqa: E731  (ctx grows below)
            ask_part = rng.choice(PART_ASKS)
            label = "the {kinds} {O} {verb}"
            if pk == "P":                                       # "Mia buys 12 apples."   (no step)
                a = self.num(2, K.max_operand)
                ctx["a"] = a
                f = self.fact(rng.choice(PLAIN_FACTS[:1] if i == 0 else PLAIN_FACTS), dict(ctx))
                part_vars.append(self.leaf(self.var(pv, prefix), a, f, "a", fmt(label), fmt(ask_part)))
            elif pk == "G":                                     # "3 bags of 8 apples" / "8 pages a day for 3 days"
                pool = [(c, False) for c in w.conts] + [(c, True) for c in w.rates]
                fresh = [c for c in pool if c[0] not in used_conts]   # two parts in "bags" would make
                cont, is_rate = rng.choice(fresh or pool)             # "each bag holds 8" ambiguous
                used_conts.append(cont)
                a = self.num(2, 7 if is_rate else 10)
                b = self.num(2, K.max_operand)
                ctx.update(cont=cont.s, conts=cont.p, prep=cont.prep, a=a, b=b)
                f = self.fact(rng.choice(RATE_FACTS if is_rate else GROUP_FACTS), ctx)
                if is_rate:
                    name_a = f"{prefix}_{cont.p}" if owners else f"{cont.p}_of_{kd.var}"
                    ask_a, label_b = "For how many {conts} does {O} {vb} {kinds}?", "the {kinds} per {cont}"
                    ask_b = "How many {kinds} does {O} {vb} each {cont}?"
                else:
                    name_a = f"{prefix}_{cont.p}" if owners else f"{kd.s}_{cont.p}"
                    ask_a, label_b = "How many {conts} of {kinds} does {O} {vb}?", "the {kinds} {prep} each {cont}"
                    ask_b = "How many {kinds} are {prep} each {cont}?"
                va = self.leaf(self.var(name_a, prefix), a, f, "a", fmt("the number of {conts}"), fmt(ask_a))
                vbv = self.leaf(self.var(f"{kd.var}_per_{cont.s}", prefix), b, f, "b", fmt(label_b), fmt(ask_b))
                st = self.step(self.var(pv, prefix), "*", [va, vbv], "{O} {verb} {expr}={y} {kinds}.", label,
                               ask_part, None, ctx)
                part_vars.append(st.var)
            elif pk == "T":                                     # "12 apples on Monday and 7 on Tuesday"
                t1, t2, tboth, v1, v2 = rng.choice(TIMES)
                a, b = self.num(2, K.max_operand), self.num(2, K.max_operand)
                ctx.update(t1=t1, t2=t2, T1=_cap(t1), T2=_cap(t2), a=a, b=b)
                f = self.fact(rng.choice(SPLIT_FACTS), ctx)
                ask_t = "How many {kinds} does {O} {vb} {when}?"
                va = self.leaf(self.var(f"{pv}_{v1}"), a, f, "a", f"the {kd.p} {t1}", ask_t.format(**ctx, when=t1))
                vbv = self.leaf(self.var(f"{pv}_{v2}"), b, f, "b", f"the {kd.p} {t2}", ask_t.format(**ctx, when=t2))
                st = self.step(self.var(pv, prefix), "+", [va, vbv], "{O} {verb} {expr}={y} {kinds} " + tboth + ".",
                               label, ask_part, None, ctx)
                part_vars.append(st.var)
            else:  # "R": relative to an earlier part ("5 more than Mia", "3 times as many pears as apples")
                j = rng.randrange(i)
                ref = part_vars[j]
                x = self.value(ref)
                rel = rng.choice(["more", "fewer", "times"])
                if rel == "times":
                    b = self.num(2, 5)
                elif rel == "fewer":
                    b = self.num(2, min(K.max_operand, x - 2))
                else:
                    b = self.num(2, K.max_operand)
                R = (people[j][0] if owners else kinds[j].p)
                ctx.update(b=b, R=R)
                f = self.fact(RELATIVE_FACTS[rel], ctx)
                if rel == "times":   # "some times as many" does not read: never the unknown (ask None)
                    name_b = f"{prefix}_times_as_many" if owners else f"{kd.var}_times_as_many"
                    vb_ = self.leaf(self.var(name_b), b, f, "b", "how many times as many")
                else:
                    name_b = f"{prefix}_{rel}_{kd.var}" if owners else f"{rel}_{kd.var}"
                    vb_ = self.leaf(self.var(name_b), b, f, "b", f"how many {rel} {kd.p} than {R}",
                                    f"How many {rel} {kd.p} than {R} does {O} {vb}?")
                op = {"more": "+", "fewer": "-", "times": "*"}[rel]
                st = self.step(self.var(pv, prefix), op, [ref, vb_], "{O} {verb} {expr}={y} {kinds}.", label,
                               ask_part, None, ctx)
                part_vars.append(st.var)

        # ---- the total ----
        if len(parts) > 1:
            if owners:
                line, asks, state = "Together they {vb} {expr}={y} {W}.", SUM_ASKS_OWNERS, "Together they {vb} {y} {W}."
            else:
                line = rng.choice(["In total, {O} {verb} {expr}={y} {W}.", "{O} {verb} {expr}={y} {W} in total."])
                asks, state = SUM_ASKS_KINDS, "In total, {O} {verb} {y} {W}."
            cur = self.step(self.var(f"total_{W.var}"), "+", part_vars, line, "the total number of {W}",
                            rng.choice(asks), state, base).var
        else:
            cur = part_vars[0]
            last = self.steps[-1] if self.steps else None
            if last is not None and last.var == cur:
                last.state = _cap("{O} {verb} {y} {kinds} in all.".format(**dict(base, kinds=W.p, y=last.value)))
        noun = W   # what the running total counts (changes to "boxes" after packing)

        # ---- post operations on the running total (take away, give, share, pack, sell, goal) ----
        subs = list(w.subs)
        rng.shuffle(subs)
        for op in post:
            x = self.value(cur)
            ctx = dict(base, W=noun.p, Ws=noun.s, u=noun.s, x=x)
            left_ask = rng.choice(LEFT_ASKS[1:] if owners and len(parts) > 1 else LEFT_ASKS)
            left_state = "There are {y} {W} left." if owners and len(parts) > 1 else "{O} has {y} {W} left."
            if op == "S":
                sub = subs.pop()
                d = self.num(2, min(K.max_operand, x - 2))
                ctx["d"] = d
                f = self.fact(sub.fact, ctx, movable=False)
                vd = self.leaf(self.var(f"{noun.var}_{sub.pp}"), d, f, "d",
                               f"the {noun.p} {sub.pp.replace('_', ' ')}", sub.ask.format(**ctx))
                line = "After " + sub.did.format(**ctx) + ", {expr}={y} {W} are left."
                cur = self.step(self.var(f"{noun.var}_left"), "-", [cur, vd], line, "the {W} left",
                                left_ask, left_state, ctx).var
            elif op == "X":
                r = w.give
                g = self.num(2, 6)
                h = self.num(2, min(12, K.max_operand, (x - 2) // g))
                ctx.update(g=g, h=h, r=r.s, rs=r.p)
                f = self.fact(rng.choice(["{O} gives {g} {rs} {h} {W} each.", "{O} gives each of {g} {rs} {h} {W}."]),
                              ctx, movable=False)
                vg = self.leaf(self.var(r.var), g, f, "g", f"the number of {r.p}",
                               f"How many {r.p} get {noun.p} from {owner0}?")
                vh = self.leaf(self.var(f"{noun.var}_per_{r.s}"), h, f, "h", f"the {noun.p} each {r.s} gets",
                               f"How many {noun.p} does each {r.s} get?")
                given = self.step(self.var(f"{noun.var}_given"), "*", [vg, vh], "{O} gives away {expr}={y} {W}.",
                                  "the {W} given away", "How many {W} does {O} give away?", None, ctx)
                ctx["d"] = given.value
                cur = self.step(self.var(f"{noun.var}_left"), "-", [cur, given.var],
                                "After giving away {d}, {expr}={y} {W} are left.", "the {W} left",
                                left_ask, left_state, ctx).var
            elif op in "DK":
                spec = rng.choice(w.shares if op == "D" else w.packs)
                cands = [k for k in range(2, 13) if x % k == 0 and x // k >= 2]
                if not cands:
                    raise _Fail()
                k = rng.choice(cands)
                if op == "D":
                    r = spec.recip
                    ctx.update(k=k, r=r.s, rs=r.p)
                    f = self.fact(spec.fact, ctx, movable=False)
                    vk = self.leaf(self.var(r.var), k, f, "k", f"the number of {r.p}", f"How many {r.p} are there?")
                    cur = self.step(self.var(f"{noun.var}_per_{r.s}"), "//", [cur, vk], spec.line,
                                    f"each {r.s}'s share", spec.ask, spec.state, ctx).var
                else:
                    u = spec.unit
                    ctx.update(k=k, us=u.p)
                    f = self.fact(spec.fact, ctx, movable=False)
                    vk = self.leaf(self.var(f"{noun.var}_per_{u.s}"), k, f, "k", f"the {noun.p} per {u.s}")
                    cur = self.step(self.var(u.var), "//", [cur, vk], spec.line, f"the number of {u.p}",
                                    spec.ask, spec.state, ctx).var
                    noun = u
            elif op == "M":
                pr = w.price
                p = self.num(2, min(12, K.max_operand))
                ctx["p"] = p
                f = self.fact(pr.fact, ctx, movable=False)
                vp = self.leaf(self.var(f"price_per_{noun.s}"), p, f, "p", f"the price of each {noun.s}")
                cur = self.step(self.var(pr.var), "*", [cur, vp], pr.line, "the money", pr.ask, pr.state, ctx).var
            else:  # "R"
                T = x + self.num(2, K.max_operand)
                ctx["T"] = T
                rest_fact.ctx["T"] = T
                vT = self.leaf(self.var(rest.var_t), T, rest_fact, "T", "the goal")
                # the arithmetic reads goal - progress, so the args are [goal, progress]
                cur = self.step(self.var(rest.var), "-", [vT, cur], rest.line.replace("{T}-{x}", "{expr}"),
                                "what is left", rest.ask, rest.state, ctx).var

        final = self.steps[-1]
        if final.ask is None:
            raise _Fail()
        return SynthProblem(w.name, self.facts, self.leaves, self.steps, final.ask)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _join_names(names: list) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# ----------------------------------------------------------------------------------------------------
# Story-level variations: distractors, shuffled facts, other targets, inverse problems, options
# ----------------------------------------------------------------------------------------------------

def _add_distractors(rng: random.Random, sp: SynthProblem, world: World, count: int) -> None:
    """Irrelevant sentences with numbers, at random places (SVAMP's main perturbation)."""
    owners = list(dict.fromkeys(f.ctx["O"] for f in sp.facts if "O" in f.ctx))
    others = [n for n, _ in NAMES if n not in owners]
    pool = list(world.distract) + list(GENERIC_DISTRACT)
    for _ in range(count):
        t = pool.pop(rng.randrange(len(pool)))
        X = rng.choice(owners + [rng.choice(others)])
        f = Fact(t, {"n": rng.randint(2, 50), "n9": rng.randint(7, 11), "X": X})
        sp.facts.insert(rng.randint(0, len(sp.facts)), f)


def _shuffle_facts(rng: random.Random, sp: SynthProblem) -> None:
    # Only the static facts at the start of the story move (what someone has, buys, bakes; a goal).
    # Actions on the total (eat, share, pack, sell) stay after them and in their order, so the story
    # still makes sense; the solution then uses the facts in a different order than they are told.
    head = 0
    while head < len(sp.facts) and sp.facts[head].movable:
        head += 1
    block = sp.facts[:head]
    rng.shuffle(block)
    sp.facts[:head] = block


def _ancestors(sp: SynthProblem, target: int) -> list:
    deps = _deps(sp.steps)
    keep, todo = set(), [target]
    while todo:
        i = todo.pop()
        if i not in keep:
            keep.add(i)
            todo.extend(deps[i])
    return sorted(keep)


def _retarget(rng: random.Random, sp: SynthProblem) -> bool:
    """SVAMP-style: ask for an intermediate quantity; the rest of the story becomes context."""
    cands = [i for i, s in enumerate(sp.steps[:-1]) if s.ask]
    if not cands:
        return False
    t = rng.choice(cands)
    keep = _ancestors(sp, t)
    sp.question = sp.steps[t].ask
    sp.steps = [sp.steps[i] for i in keep]
    return True


def _invert(rng: random.Random, sp: SynthProblem) -> bool:
    """SVAMP-style "other unknown": state the result, hide one stated quantity, ask for it.

    Walk from the result down to the hidden leaf; each step on that path is solved for the child that
    leads to the leaf (x - d = y -> x = y + d; x / k = y -> x = y * k; a + b + c = t -> b = t - a - c; ...).
    Steps off the path are computed forward as before, so the inverse problem still has several orders."""
    final = sp.steps[-1]
    if final.state is None:
        return False
    by_var = {s.var: s for s in sp.steps}
    parents: dict = {}
    for s in sp.steps:
        for a in s.args:
            parents.setdefault(a, []).append(s.var)

    def path_to_root(v):   # the unique path v -> ... -> final, or None when v is used more than once
        path = [v]
        while path[-1] != final.var:
            ps = parents.get(path[-1], [])
            if len(ps) != 1:
                return None
            path.append(ps[0])
        return path

    cands = [v for v, l in sp.leaves.items() if l.ask and any(v in s.args for s in sp.steps) and path_to_root(v)]
    if not cands:
        return False
    unknown = rng.choice(cands)
    path = path_to_root(unknown)[::-1]          # final, ..., unknown
    new_steps = [s for s in sp.steps if s.var not in path]
    for cur, child in zip(path, path[1:]):      # cur: known now (stated or solved); child: solve for it
        s = by_var[cur]
        u = s.args.index(child)
        others = [a for a in s.args if a != child]
        target = _val(sp, child)
        if s.op == "+":
            op, args = "-", [cur] + others
        elif s.op == "-" and u == 0:
            op, args = "+", [cur] + others
        elif s.op == "-":
            op, args = "-", [s.args[0], cur]
        elif s.op == "*":
            op, args = "//", [cur] + others
        elif u == 0:   # x // k = y  ->  x = y * k
            op, args = "*", [cur, s.args[1]]
        else:          # x // k = y  ->  k = x // y
            op, args = "//", [s.args[0], cur]
        nums = [_val(sp, a) for a in args]
        sym = {"+": "+", "-": "-", "*": "*", "//": "/"}[op]
        label = sp.leaves[child].label if child in sp.leaves else by_var[child].label
        line = _cap(f"{label} must be {sym.join(str(n) for n in nums)}={target}.")
        new_steps.append(Step(child, op, args, target, line, label))
    # the old result is now stated in the story; the hidden quantity is the answer (the last step)
    stated = Fact("{text}", {"text": final.state}, movable=False)
    sp.facts.append(stated)
    old = sp.leaves.pop(unknown)
    sp.leaves[final.var] = Leaf(final.var, final.value, stated, "text", final.label)
    sp.story_unknown = (old.fact, old.key)
    sp.question = old.ask
    sp.steps = new_steps
    return True


def _val(sp: SynthProblem, var: str) -> int:
    if var in sp.leaves:
        return sp.leaves[var].value
    return next(s.value for s in sp.steps if s.var == var)


def _add_options(rng: random.Random, sp: SynthProblem) -> None:
    """MathQA-style: the right value and four plausible wrong ones, shuffled into a..e."""
    ans = sp.answer
    last = sp.steps[-1]
    vals = [_val(sp, a) for a in last.args]
    near = []   # mistakes a solver could make: stop one step early, use the wrong operation
    near += [s.value for s in sp.steps[:-1]]
    if len(vals) >= 2:
        a, b = vals[0], sum(vals[1:]) if last.op in "+-" else vals[1]
        near += {"+": [a - b], "-": [a + b], "*": [a + b], "//": [a * b, a - b]}[last.op]
    # plausible means the same order of magnitude: no 10287 next to 208
    near = [v for v in dict.fromkeys(near) if 0 <= v <= 2 * ans + 20 and v != ans]
    rng.shuffle(near)
    wrong = near[:2]
    small = [ans + d for d in (-10, -5, -3, -2, -1, 1, 2, 3, 5, 10) if ans + d >= 0]
    rng.shuffle(small)
    for v in small:
        if len(wrong) == 4:
            break
        if v not in wrong and v != ans:
            wrong.append(v)
    opts = wrong + [ans]
    rng.shuffle(opts)
    sp.options = opts
    sp.letter = "abcde"[opts.index(ans)]


def generate_problem(rng: random.Random, knobs: Knobs = Knobs(), world: World | None = None) -> SynthProblem:
    """One fresh problem (structured). Draws from `rng` only; retries internally until numbers work out."""
    # The number of steps is drawn once, *then* we retry until a problem with that many steps works
    # out, so failures (no exact divisor, ...) and the order filter below do not skew the distribution.
    s = rng.randint(knobs.min_steps, knobs.max_steps)
    for _ in range(2000):
        w = world or rng.choice(WORLDS)
        try:
            sp = _Builder(rng, knobs, w).build(s)
        except _Fail:
            continue
        if s >= 3 and rng.random() >= knobs.keep_single_order and len(valid_orders(sp, limit=2)) == 1:
            continue
        r = rng.random()
        if r < knobs.inverse_prob:
            if not _invert(rng, sp):
                continue
        elif r < knobs.inverse_prob + knobs.intermediate_prob:
            if not _retarget(rng, sp):
                continue
        n_d = rng.randint(knobs.min_distractors, knobs.max_distractors)
        if knobs.shuffle_prob and rng.random() < knobs.shuffle_prob:
            _shuffle_facts(rng, sp)
        if n_d:
            _add_distractors(rng, sp, w, n_d)
        orders = valid_orders(sp)
        sp.order = list(rng.choice(orders))
        if knobs.choices:
            _add_options(rng, sp)
        return sp
    raise DataError(f"could not generate a problem with {knobs}; the knobs may be too narrow")


def to_problem(sp: SynthProblem, ident: str, source: str) -> Problem:
    q = sp.full_question()
    return Problem(ident, q, sp.letter if sp.letter else str(sp.answer), cot_nl=render_cot(sp, sp.order),
                   cot_program=None if sp.options is not None else render_program(sp, sp.order, q),
                   options=[str(v) for v in sp.options] if sp.options is not None else None, source=source)


# ====================================================================================================
# Splits, cache, CLI
# ====================================================================================================

def split_spec(name: str, n: int | None = None, seed: int | None = None, **knobs) -> dict:
    if name not in DEFAULT_SPLITS:
        raise DataError(f"unknown synthetic split {name!r}: choose one of {list(DEFAULT_SPLITS)}")
    d = DEFAULT_SPLITS[name]
    k = Knobs(**{**d["knobs"], **knobs})
    return dict(name=name, n=d["n"] if n is None else n, seed=d["seed"] if seed is None else seed, pool=d["pool"],
                knobs=asdict(k), version=GENERATOR_VERSION)


def make_split(name: str, n: int | None = None, seed: int | None = None, structured: bool = False, **knobs):
    """Generate a split: list[Problem] (or list[SynthProblem] with structured=True), deterministic in
    (name, n, seed, knobs). Questions are unique and all belong to the split's pool (train or test)."""
    spec = split_spec(name, n, seed, **knobs)
    K = Knobs(**spec["knobs"])
    rng = random.Random(spec["seed"])
    out, seen = [], set()
    attempts = 0
    while len(out) < spec["n"]:
        attempts += 1
        if attempts > 50 * spec["n"] + 1000:
            raise DataError(f"split {name}: only {len(out)} unique questions after {attempts} attempts")
        sp = generate_problem(rng, K)
        key = sp.base_question()
        if pool_of(key) != spec["pool"] or key in seen:
            continue
        seen.add(key)
        out.append(sp)
    if structured:
        return out
    return [to_problem(sp, problem_id(name, i, sp), f"synthetic:{name}") for i, sp in enumerate(out)]


def problem_id(split: str, i: int, sp: SynthProblem) -> str:
    """'syn-train-42-egg_farm': split, index, and the world (template) the problem was told in."""
    return f"syn-{split}-{i}-{sp.world.replace(' ', '_')}"


def problem_to_json(p: Problem) -> str:
    d = {"id": p.id, "question": p.question, "answer": p.answer, "cot_nl": p.cot_nl, "cot_program": p.cot_program,
         "options": p.options}
    return json.dumps(d, ensure_ascii=False)


def write_splits(out_dir: Path, names=None, n: int | None = None) -> dict:
    """Write {split}.jsonl for each split and meta.json (the specs the files were made with, and the
    sha256 of this script, which reft_mini/data.py compares to decide whether the files are current).
    n: override every split's size (for quick tests); the default writes the DEFAULT_SPLITS sizes.
    Every file is written to a temporary name and renamed, meta.json last: two processes that make the
    splits at once (two torchrun ranks) never leave a half-written file behind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"generator_version": GENERATOR_VERSION, "generator_sha256": generator_sha256(), "splits": {}}
    questions = {}
    for name in names or list(DEFAULT_SPLITS):
        spec = split_spec(name, n)
        probs = make_split(name, n)
        questions[name] = {p.question.split("\n")[0] for p in probs}
        _write_atomic(out_dir / f"{name}.jsonl", "".join(problem_to_json(p) + "\n" for p in probs))
        meta["splits"][name] = spec
    _check_disjoint(questions)
    _write_atomic(out_dir / "meta.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return meta


def generator_sha256() -> str:
    """sha256 of this file: the splits on disk are current when meta.json records the same digest."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(text.encode("utf-8"))                             # bytes: no newline translation
    os.replace(tmp, path)


def _check_disjoint(questions: dict) -> None:
    for a, qa in questions.items():
        for b, qb in questions.items():
            if DEFAULT_SPLITS[a]["pool"] == "train" and DEFAULT_SPLITS[b]["pool"] == "test" and qa & qb:
                raise DataError(f"splits {a} and {b} share {len(qa & qb)} questions")


def load_synthetic(split: str = "train", n: int | None = None, seed: int | None = None, root: Path | None = None,
                   **knobs) -> list:
    """The split from the cache (data/synthetic/{split}.jsonl) when it was written with the same n, seed,
    knobs and generator version; otherwise generated in memory (a few seconds)."""
    spec = split_spec(split, n, seed, **knobs)
    root = Path(root) if root is not None else CACHE_DIR
    meta_file, data_file = root / "meta.json", root / f"{split}.jsonl"
    if meta_file.is_file() and data_file.is_file():
        try:
            cached = json.loads(meta_file.read_text(encoding="utf-8"))["splits"].get(split)
        except (ValueError, KeyError):
            cached = None
        if cached == spec:
            probs = load_problems_file_synthetic(data_file, split)
            for p in probs:
                p.source = f"synthetic:{split}"
            return probs
    return make_split(split, n, seed, **knobs)


# ----------------------------------------------------------------------------------------------------
# Stage-0 text: unlimited fresh skill practice (optional; for a later "pretraining stand-in")
# ----------------------------------------------------------------------------------------------------

def skill_corpus(rng: random.Random, n: int) -> list:
    """n fresh training texts for language-model pretraining: arithmetic facts ("17+25=42"), short
    1-2-step problems with their N-CoT or P-CoT, and quantity-copying drills. Only train-pool questions are used,
    so no test question ever appears."""
    K = Knobs(min_steps=1, max_steps=2)
    out = []
    while len(out) < n:
        r = rng.random()
        if r < 0.3:
            a, b = rng.randint(2, 50), rng.randint(2, 50)
            op = rng.choice("+-*/")
            if op == "-" and a < b:
                a, b = b, a
            if op == "/":
                a = a * b if a * b <= 1000 else a
                if a % b:
                    continue
            v = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
            out.append(f"{a}{op}{b}={v}")
            continue
        sp = generate_problem(rng, K)
        q = sp.base_question()
        if pool_of(q) != "train":
            continue
        if r < 0.65:
            out.append(format_prompt(q, "nl") + render_cot(sp, sp.order))
        elif r < 0.85:
            # P-CoT: the prompt ends with the program header, the text goes on with the body.
            program = render_program(sp, sp.order, q)
            header = format_prompt(q, "program")
            out.append(header + program[program.index('"""', program.index('"""') + 3) + 4:])
        else:
            nums = [str(sp.leaves[v].value) for v in _in_story_order(sp, list(sp.leaves))]
            out.append(sp.story() + " The numbers in the story are " + ", ".join(nums) + ".")
    return out


def _examples_text(k: int = 3) -> str:
    probs = make_split("train", n=k)
    return "\n\n".join(f"--- {p.id} ---\nQuestion: {p.question}\nN-CoT:\n{p.cot_nl}\nP-CoT:\n{p.cot_program}"
                       for p in probs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python data/synthetic/synthetic.py",
                                 description="Write the synthetic splits as JSONL (deterministic bytes).")
    ap.add_argument("--out", default=str(CACHE_DIR), help="output folder (default data/synthetic)")
    ap.add_argument("--show", type=int, default=0, help="only print this many example training problems")
    args = ap.parse_args(argv)
    if args.show:
        print(_examples_text(args.show))
        return 0
    meta = write_splits(Path(args.out))
    for name, spec in meta["splits"].items():
        f = Path(args.out) / f"{name}.jsonl"
        print(f"{f}: {spec['n']} problems, {f.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
