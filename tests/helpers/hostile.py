"""A corpus of hostile expressions and templates: each, unchecked, runs for seconds or builds hundreds of megabytes.

tests/unit/test_expr_hostile.py checks the sandbox refuses each quickly in little memory; tests/api/
test_hostile_process.py sends them to a real server and checks /healthz meanwhile.
"""

from __future__ import annotations

# A bare expression, or a template when it starts with "{".
HOSTILE = [
    # Shared references: tiny to build, huge to write out.
    "([[range(100000)|list]*10]*100)|string|length",
    "([[range(100000)|list]*10]*100)|tojson|length",
    "([[range(100000)|list]*10]*100)|pprint|length",
    "str([[range(100000)|list]*10]*100)|length",
    "{{ [[range(100000)|list]*10]*100 }}",
    "{{ ([range(100000)|list]*9) ~ 'x' }}",
    "'%s' % ([range(100000)|list]*9,)",
    "'{}'.format([range(100000)|list]*9)",
    "[range(100000)|list, range(100000)|list] + [range(100000)|list]*8",
    "{% set l = range(100000)|list %}{{ [l, l, l, l, l, l, l, l, l, l, l] | length }}",
    "{% set ns = namespace(x=[1]) %}{% for i in range(40) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}{{ ns.x }}",
    "{% set ns = namespace(x=[1]) %}{% for i in range(10000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ 1 }}",
    "dict(a=range(100000)|list, b=range(100000)|list, c=[range(100000)|list]*8)",
    "join([[range(100000)|list]*9]*2, ',')",
    # Work without a loop: iterating filters and functions.
    "([range(100000)|list]*300)|map('sum')|sum",
    "([range(100000)|list]*300)|map('unique')|map('list')|map('length')|sum",
    "range(100000)|map('string')|map('length')|sum",
    "range(100000)|list|sort|map('string')|join(',')|length",
    "range(100000)|select('odd')|map('string')|select('ne', '')|list|length",
    "range(100000)|map('string')|unique|list|length",
    "range(100000)|batch(3)|map('sum')|list|length",
    "{% set s = range(100000)|list|string %}{% for i in range(1000) %}{% set x = s|wordcount %}{% endfor %}",
    # Loops whose every iteration does bulk work.
    "{% set l = range(100000)|list %}{% for i in range(100000) %}{% if i in l %}{% endif %}{% endfor %}",
    "{% set l = range(100000)|list %}{% for i in range(100000) %}{% set x = l|tojson %}{% endfor %}",
    "{% set s = 'a' * 999999 %}{% for i in range(100000) %}{% set x = s[1:] %}{% endfor %}",
    "{% set s = 'ab' * 5000 %}{% for i in range(100000) %}{% if matches(s, '(a|b)*c') %}{% endif %}{% endfor %}",
    "{% set s = 'a' * 999999 %}{% for i in range(100000) %}{% set x = s.count('b') %}{% endfor %}",
    "{% set s = 'a' * 999999 %}{% for i in range(100000) %}{% set x = s|upper %}{% endfor %}",
    "{% for i in range(100000) %}{% set x = upper('a') ~ lower('B') %}{% endfor %}",
    "{% macro f() %}{% endmacro %}{% for i in range(100000) %}{{ f() }}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
]
