"""Sessions, tickets and the same-origin rules of the dashboard (pure)."""

import doctest

from hypothesis import given
from hypothesis import strategies as st

from shoal.web import auth
from shoal.web.auth import Sessions, host_allowed, safe_next


def test_docstring_examples():
    result = doctest.testmod(auth)
    assert result.attempted > 0 and result.failed == 0


def test_sessions_expire_and_follow_the_token():
    clock = [1000.0]
    s = Sessions("token", now=lambda: clock[0])
    cookie = s.issue()
    assert s.valid(cookie)
    assert not Sessions("another token", now=lambda: clock[0]).valid(cookie)
    clock[0] += auth.SESSION_SECONDS + 1
    assert not s.valid(cookie)


def test_tickets_are_one_time_and_short_lived():
    clock = [0.0]
    s = Sessions("t", now=lambda: clock[0])
    a, b = s.ticket(), s.ticket()
    assert s.redeem(a) and not s.redeem(a)
    clock[0] += auth.TICKET_SECONDS + 1
    assert not s.redeem(b)
    for _ in range(auth.MAX_TICKETS + 50):
        s.ticket()
    assert len(s._tickets) <= auth.MAX_TICKETS


@given(st.text(max_size=60))
def test_next_is_always_a_local_path(target):
    out = safe_next(target)
    assert out.startswith("/") and not out.startswith("//") and "\\" not in out


@given(st.from_regex(r"[a-z][a-z0-9-]{0,20}\.(com|example|io)(:[0-9]{1,5})?", fullmatch=True))
def test_dns_names_are_refused_unless_configured(host):
    assert not host_allowed(host, ())
    assert host_allowed(host, (host.split(":")[0],))
