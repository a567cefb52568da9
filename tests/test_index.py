"""The function index (search/language/index.py): one space's token strings -> expression, fingerprint and screen
verdict, computed once per process and shared; every enumeration of a space by function, with one size limit."""
import pytest

from controller import ControllerSettings, make_proposer
from controller.base import Proposal
from search.language import identity
from search.language.errors import UserError
from search.language.expression import Expression
from search.language.index import ENUMERATION_LIMIT, FunctionIndex
from search.language.space import Space
from search.loop.rewards import RewardBook

SMALL = Space(1, unary=("x", "neg", "abs", "square", "sin", "relu", "sigmoid", "beta"),
              binary=("add", "mul", "max", "sigmul", "sub"))  # 320 token strings


def test_an_entry_is_what_the_expression_says_and_the_screen_depends_on_reject_linear():
    index = FunctionIndex.of(SMALL)
    swish = index.entry(("x", "x", "x", "sigmoid", "mul"), reject_linear=True)
    assert swish.expression == Expression.parse("x * sigmoid(x)")
    assert swish.fingerprint == Expression.parse("sigmul(x, x)").fingerprint()
    assert swish.verdict.ok
    linear = ("x", "x", "x", "beta", "mul")  # x * beta
    assert not index.entry(linear, reject_linear=True).verdict.ok
    assert index.entry(linear, reject_linear=False).verdict.ok
    assert index.verdict(linear, reject_linear=True).reason == "linear function (no nonlinearity)"


def test_one_index_per_space_definition():
    assert FunctionIndex.of(SMALL) is FunctionIndex.of(Space(1, unary=SMALL.unary, binary=SMALL.binary))
    assert FunctionIndex.of(SMALL) is not FunctionIndex.of(Space(1))


def test_distinct_functions_in_enumeration_order_first_token_string_each():
    index = FunctionIndex.of(SMALL)
    functions = index.functions()
    assert sum(len(group) for group in functions.values()) == SMALL.size
    positions = [SMALL.indices_from_tokens(group[0]) for group in functions.values()]
    assert positions == sorted(positions)  # functions in the order of their first token string
    for fp, group in functions.items():
        assert {SMALL.decode(t).fingerprint() for t in group} == {fp}
    assert index.distinct() == {fp: group[0] for fp, group in functions.items()}
    assert len(index.distinct()) == len({SMALL.decode(t).fingerprint() for t in SMALL.enumerate()})


def test_a_space_above_the_limit_is_refused_by_name():
    big = Space(2)
    assert big.size > ENUMERATION_LIMIT and not FunctionIndex.of(big).enumerable
    with pytest.raises(UserError, match=f"ENUMERATION_LIMIT, is {ENUMERATION_LIMIT:,}"):
        FunctionIndex.of(big).functions()


def test_computed_once_and_shared(monkeypatch):
    """After the index fingerprinted and screened a token string, nobody computes either again: not the index, not
    ``Expression.fingerprint`` / ``screen`` on another copy of the expression (what the search loop calls)."""
    index = FunctionIndex.of(SMALL)
    tokens = ("x", "x", "sin", "relu", "max")
    entry = index.entry(tokens, reject_linear=True)

    def no_probe(*args, **kwargs):
        raise AssertionError("probed again")

    monkeypatch.setattr(identity, "probe", no_probe)
    assert index.fingerprint(tokens) == entry.fingerprint
    again = SMALL.decode(tokens)
    assert again is not entry.expression
    assert (again.fingerprint(), again.screen()) == (entry.fingerprint, entry.verdict)
    judgement = RewardBook(0.0, reject_linear=True).judge(again, fingerprint=entry.fingerprint)
    assert (judgement.fingerprint, judgement.status) == (entry.fingerprint, "new")


def test_encode_by_units_or_by_fingerprint():
    index = FunctionIndex.of(Space(2))
    swish = Expression.parse("x * sigmoid(x)")
    tokens = index.encode(swish)
    assert tokens[:5] == ("x", "x", "x", "x", "add") and Space(2).decode(tokens) == swish  # by its units
    # -(-x) is no core unit's tree: found through the one-unit space's fingerprints (the first token string for x)
    double = Expression.parse("-(-x)")
    assert Space(1).match(double) is None
    found = FunctionIndex.of(Space(1)).encode(double)
    assert found == FunctionIndex.of(Space(1)).distinct()[Expression.parse("x").fingerprint()]
    assert FunctionIndex.of(Space(2)).encode(double) == ("x", "x", "x", "x", "add") + found
    assert FunctionIndex.of(Space(1)).encode(Expression.parse("sin(sin(sin(sin(x))))")) is None


def test_proposals_carry_their_fingerprint_and_old_records_still_load():
    proposals = make_proposer(ControllerSettings(kind="exhaustive"), SMALL, seed=0).ask(20)
    assert all(p.fingerprint == SMALL.decode(p.tokens).fingerprint() for p in proposals)
    assert Proposal.from_dict(proposals[3].to_dict()) == proposals[3]
    old = {"index": 4, "tokens": list(proposals[4].tokens), "logp": None, "policy_version": 0}
    assert Proposal.from_dict(old) == Proposal(4, proposals[4].tokens)
    fake = "0123456789abcdef"  # the judgement takes the fingerprint it is given
    assert RewardBook(0.0, True).judge(SMALL.decode(proposals[0].tokens), fingerprint=fake).fingerprint == fake
