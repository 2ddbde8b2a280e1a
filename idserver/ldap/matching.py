"""
Filter evaluation: a filter is compiled once per search into a L{Matcher},
which tests entries with the three-valued logic of RFC 4511 §4.5.1.7
(TRUE, FALSE and Undefined, written C{True}, C{False} and C{None}) and
tells which entries an index can narrow the search to.

Assertion values are normalised at compile time with the rules of
L{idserver.ldap.schema}, so testing an entry compares prepared values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Protocol

from idserver.ldap.dn import DN, normalize_value
from idserver.ldap.filters import (
    And,
    Approx,
    Equality,
    Extensible,
    Filter,
    GreaterOrEqual,
    LessOrEqual,
    Not,
    Or,
    Present,
    Substrings,
    UnknownFilter,
)
from idserver.ldap.schema import (
    ATTRIBUTE_TYPES,
    AttributeType,
    InvalidValue,
    Syntax,
    attribute_type,
    normalize,
)

__all__ = [
    "Index",
    "Matchable",
    "Matcher",
    "compile_filter",
]

Candidates = Collection[int] | None

_SPACES = re.compile(r"\s+")


class Matchable(Protocol):
    """
    What a matcher reads from an entry.

    @ivar values: attribute key to normalised values; only attributes with
        values are present.
    @ivar attributes: attribute key to the values as published.
    @ivar parsed_dn: the entry's name, for C{:dn:} extensible matches.
    """

    values: dict[str, tuple[Any, ...]]
    attributes: dict[str, tuple[str, ...]]
    parsed_dn: DN


class Index(Protocol):
    """
    The indexes of a directory snapshot, as positions of entries.
    """

    def lookup(self, key: str, value: Any) -> Collection[int] | None:
        """
        Return the positions of the entries whose attribute C{key} has the
        normalised C{value}, or C{None} when C{key} is not indexed.
        """

    def substrings(
        self, key: str, initial: str | None, middle: tuple[str, ...], final: str | None
    ) -> Collection[int] | None:
        """
        Return the positions of the entries with a value of C{key} that
        matches the normalised components, or C{None} when C{key} is not
        indexed.
        """


@dataclass(frozen=True, slots=True)
class Matcher:
    """
    A compiled filter.

    @ivar match: tests an entry: C{True}, C{False} or C{None} (Undefined).
    @ivar plan: returns the positions of a superset of the matching entries,
        or C{None} when no index narrows the search.
    """

    match: Callable[[Matchable], bool | None]
    plan: Callable[[Index], Candidates]


def _everything(index: Index) -> Candidates:
    return None


def _nothing(index: Index) -> Candidates:
    return ()


def _undefined(entry: Matchable) -> bool | None:
    return None


_UNDEFINED = Matcher(_undefined, _nothing)


def compile_filter(node: Filter) -> Matcher:
    """
    Compile a filter for evaluation.
    """
    if isinstance(node, And):
        return _compile_and([compile_filter(f) for f in node.filters])
    if isinstance(node, Or):
        return _compile_or([compile_filter(f) for f in node.filters])
    if isinstance(node, Not):
        return _compile_not(compile_filter(node.filter))
    if isinstance(node, Present):
        return _compile_present(node)
    if isinstance(node, Equality | Approx):
        # Approximate matching is left to the server (RFC 4511
        # §4.5.1.7.6); here it is equality.
        return _compile_equality(node.attribute, node.value)
    if isinstance(node, Substrings):
        return _compile_substrings(node)
    if isinstance(node, GreaterOrEqual | LessOrEqual):
        return _compile_ordering(node)
    if isinstance(node, Extensible):
        return _compile_extensible(node)
    assert isinstance(node, UnknownFilter)
    return _UNDEFINED


def _compile_and(members: list[Matcher]) -> Matcher:
    tests = [m.match for m in members]

    def match(entry: Matchable) -> bool | None:
        result: bool | None = True
        for test in tests:
            outcome = test(entry)
            if outcome is False:
                return False
            if outcome is None:
                result = None
        return result

    plans = [m.plan for m in members]

    def plan(index: Index) -> Candidates:
        # Every match is in each member's candidates, so the smallest set
        # is enough; the whole filter is tested on each candidate anyway.
        best: Candidates = None
        for member_plan in plans:
            candidates = member_plan(index)
            if candidates is not None and (best is None or len(candidates) < len(best)):
                best = candidates
                if not best:
                    break
        return best

    return Matcher(match, plan)


def _compile_or(members: list[Matcher]) -> Matcher:
    tests = [m.match for m in members]

    def match(entry: Matchable) -> bool | None:
        result: bool | None = False
        for test in tests:
            outcome = test(entry)
            if outcome is True:
                return True
            if outcome is None:
                result = None
        return result

    plans = [m.plan for m in members]

    def plan(index: Index) -> Candidates:
        union: set[int] = set()
        for member_plan in plans:
            candidates = member_plan(index)
            if candidates is None:
                return None
            union.update(candidates)
        return union

    return Matcher(match, plan)


def _compile_not(member: Matcher) -> Matcher:
    test = member.match

    def match(entry: Matchable) -> bool | None:
        outcome = test(entry)
        return None if outcome is None else not outcome

    return Matcher(match, _everything)


def _resolve(description: str) -> AttributeType | None:
    return attribute_type(description)


def _compile_present(node: Present) -> Matcher:
    # RFC 4511 §4.5.1.7: an unrecognised attribute description makes the
    # item Undefined, so a NOT around it stays Undefined.
    attribute = _resolve(node.attribute)
    if attribute is None:
        return _UNDEFINED
    key = attribute.key

    def match(entry: Matchable) -> bool | None:
        return key in entry.values

    return Matcher(match, _everything)


def _compile_equality(description: str, value: str) -> Matcher:
    attribute = _resolve(description)
    if attribute is None:
        return _UNDEFINED
    try:
        wanted = normalize(attribute.syntax, value)
    except InvalidValue:
        return _UNDEFINED
    key = attribute.key

    def match(entry: Matchable) -> bool | None:
        return wanted in entry.values.get(key, ())

    def plan(index: Index) -> Candidates:
        return index.lookup(key, wanted)

    return Matcher(match, plan)


def _matches_substrings(
    value: str, initial: str | None, middle: tuple[str, ...], final: str | None
) -> bool:
    start = 0
    end = len(value)
    if initial is not None:
        if not value.startswith(initial):
            return False
        start = len(initial)
    if final is not None:
        if len(value) - len(final) < start or not value.endswith(final):
            return False
        end = len(value) - len(final)
    for component in middle:
        found = value.find(component, start, end)
        if found < 0:
            return False
        start = found + len(component)
    return True


def _compile_substrings(node: Substrings) -> Matcher:
    attribute = _resolve(node.attribute)
    if attribute is None or not attribute.substrings:
        return _UNDEFINED
    key = attribute.key
    # Components are prepared like values, except that spaces at their ends
    # may be significant ("*n s*" within "john smith").
    initial = _fold(node.initial)
    final = _fold(node.final)
    middle = tuple(_fold(v) or "" for v in node.any)
    middle = tuple(v for v in middle if v)

    def match(entry: Matchable) -> bool | None:
        for value in entry.values.get(key, ()):
            if _matches_substrings(value, initial, middle, final):
                return True
        return False

    def plan(index: Index) -> Candidates:
        return index.substrings(key, initial, middle, final)

    return Matcher(match, plan)


def _fold(component: str | None) -> str | None:
    if component is None:
        return None
    return _SPACES.sub(" ", component).casefold() or None


def _compile_ordering(node: GreaterOrEqual | LessOrEqual) -> Matcher:
    attribute = _resolve(node.attribute)
    if attribute is None or not attribute.ordered:
        return _UNDEFINED
    try:
        bound = normalize(attribute.syntax, node.value)
    except InvalidValue:
        return _UNDEFINED
    key = attribute.key
    greater = isinstance(node, GreaterOrEqual)

    def match(entry: Matchable) -> bool | None:
        for value in entry.values.get(key, ()):
            if (value >= bound) if greater else (value <= bound):
                return True
        return False

    return Matcher(match, _everything)


# Extensible matches (RFC 4511 §4.5.1.7.7)

_RULES = {
    "2.5.13.0": "oid",
    "objectidentifiermatch": "oid",
    "2.5.13.1": "dn",
    "distinguishednamematch": "dn",
    "2.5.13.2": "caseIgnore",
    "caseignorematch": "caseIgnore",
    "1.3.6.1.4.1.1466.109.114.2": "caseIgnore",
    "caseignoreia5match": "caseIgnore",
    "2.5.13.5": "caseExact",
    "caseexactmatch": "caseExact",
    "1.3.6.1.4.1.1466.109.114.1": "caseExact",
    "caseexactia5match": "caseExact",
    "2.5.13.14": "integer",
    "integermatch": "integer",
    "2.5.13.17": "octetString",
    "octetstringmatch": "octetString",
    "1.3.6.1.1.16.2": "uuid",
    "uuidmatch": "uuid",
    "2.5.13.27": "time",
    "generalizedtimematch": "time",
    # Active Directory's LDAP_MATCHING_RULE_IN_CHAIN. Groups here do not
    # nest, so the chain of a membership is the membership itself.
    "1.2.840.113556.1.4.1941": "dn",
    # Active Directory's bitwise AND and OR.
    "1.2.840.113556.1.4.803": "bitAnd",
    "1.2.840.113556.1.4.804": "bitOr",
}

# The syntaxes each rule applies to; the rules named after a syntax use
# the prepared values of that syntax.
_RULE_SYNTAXES = {
    "oid": {Syntax.oid},
    "dn": {Syntax.dn},
    "caseIgnore": {Syntax.string, Syntax.oid},
    "caseExact": {Syntax.string},
    "integer": {Syntax.integer},
    "octetString": set(Syntax),
    "uuid": {Syntax.uuid},
    "time": {Syntax.time},
    "bitAnd": {Syntax.integer},
    "bitOr": {Syntax.integer},
}


def _value_test(
    rule: str | None, attribute: AttributeType, value: str
) -> tuple[bool, Callable[[Any], bool]] | None:
    """
    Build the test of one value of C{attribute} under C{rule} (C{None}: the
    attribute's own equality rule).

    @return: C{(uses_prepared_values, test)}, or C{None} when the rule does
        not apply to the attribute or the assertion value is invalid for it.
    """
    if rule is None or rule in ("oid", "dn", "caseIgnore", "integer", "uuid", "time"):
        if rule is not None and attribute.syntax not in _RULE_SYNTAXES[rule]:
            return None
        try:
            wanted = normalize(attribute.syntax, value)
        except InvalidValue:
            return None
        return True, wanted.__eq__
    if attribute.syntax not in _RULE_SYNTAXES[rule]:
        return None
    if rule == "caseExact":
        exact = " ".join(value.split())
        return False, lambda v: " ".join(v.split()) == exact
    if rule == "octetString":
        return False, value.__eq__
    try:
        mask = int(value.strip())
    except ValueError:
        return None
    if rule == "bitAnd":
        return True, lambda v: v & mask == mask
    return True, lambda v: v & mask != 0


def _compile_extensible(node: Extensible) -> Matcher:
    rule: str | None = None
    if node.rule is not None:
        found = _RULES.get(node.rule.lower())
        if found is None:
            return _UNDEFINED
        rule = found

    if node.attribute is not None:
        attribute = _resolve(node.attribute)
        if attribute is None:
            return _UNDEFINED
        attributes = [attribute]
    else:
        attributes = list(ATTRIBUTE_TYPES)

    tests: list[tuple[str, bool, Callable[[Any], bool]]] = []
    for candidate in attributes:
        built = _value_test(rule, candidate, node.value)
        if built is not None:
            tests.append((candidate.key, *built))
    dn_test = _dn_test(rule, node) if node.dn_attributes else None
    if not tests and dn_test is None:
        return _UNDEFINED

    def match(entry: Matchable) -> bool | None:
        for key, prepared, test in tests:
            values = (
                entry.values.get(key, ()) if prepared else entry.attributes.get(key, ())
            )
            for value in values:
                if test(value):
                    return True
        if dn_test is not None and dn_test(entry.parsed_dn):
            return True
        return False

    plan: Callable[[Index], Candidates] = _everything
    if (
        node.attribute is not None
        and not node.dn_attributes
        and len(tests) == 1
        and (rule is None or rule == "dn" or rule == _natural_rule(attributes[0]))
    ):
        plan = _compile_equality(node.attribute, node.value).plan
    return Matcher(match, plan)


def _natural_rule(attribute: AttributeType) -> str:
    return {
        Syntax.string: "caseIgnore",
        Syntax.oid: "oid",
        Syntax.dn: "dn",
        Syntax.integer: "integer",
        Syntax.time: "time",
        Syntax.uuid: "uuid",
    }[attribute.syntax]


def _dn_test(rule: str | None, node: Extensible) -> Callable[[DN], bool] | None:
    # The attribute values of a name here are all strings compared without
    # case, so only the rules for strings apply to them.
    if rule not in (None, "caseIgnore", "caseExact", "octetString"):
        return None
    wanted_type = None
    if node.attribute is not None:
        attribute = _resolve(node.attribute)
        wanted_type = attribute.key if attribute is not None else node.attribute.lower()
    if rule in ("caseExact", "octetString"):
        exact = node.value

        def same(value: str) -> bool:
            return value == exact

    else:
        folded = normalize_value(node.value)

        def same(value: str) -> bool:
            return normalize_value(value) == folded

    def test(dn: DN) -> bool:
        for rdn in dn:
            for attribute_type_name, value in rdn:
                if wanted_type is not None and attribute_type_name != wanted_type:
                    continue
                if same(value):
                    return True
        return False

    return test
