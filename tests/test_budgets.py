"""Budgets: refused at the start of a run, stopped before the next LLM request mid-run, at the edge
(exactly at, one token over, one token of room), across tenants, threads and processes.

Every LLM reply carries a known ``usage``, and the configurations carry their own prices, so that
every cost is exact: a call of 100,000 input and 50,000 output tokens at $1 and $2 per million
costs $0.20.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import warnings
from datetime import datetime, timedelta, timezone

import pytest

from conftest import API_KEY, make_settings, raw_sql
from mt_core import MTCore, QuotaExceededError, RunError, ValidationError
from mt_core.budgets import iso

PRICES = {"input_per_mtok": 1, "output_per_mtok": 2}
CALL_COST = 0.2
CALL_TOKENS = 150_000
STEP = {"content": "<code>print('working')</code>", "usage": {"prompt_tokens": 100_000, "completion_tokens": 50_000}}
FINAL = {"content": '<code>final_answer("done")</code>', "usage": {"prompt_tokens": 100_000, "completion_tokens": 50_000}}


def run(tenant, llm_id, **options):
    """run_query in the local jail: the result or the RunError."""
    options = {"max_steps": 10, **options}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return tenant.run_query([], llm_id, "Work.", use_docker=False, **options)
        except RunError as error:
            return error


def runs_stored(core, tenant="acme") -> int:
    return raw_sql(core, "SELECT COUNT(*) FROM runs WHERE tenant_id = ?", (tenant,))[0][0]


@pytest.fixture
def priced(core, llm_server):
    """acme with an LLM whose calls cost $0.20 each: one call, then (script) as many as asked."""
    def make(script, **options):
        server = llm_server(script)
        llm_id = core.tenant("acme").add_llm(base_url=server.base_url, api_key=API_KEY, model_name="acme-model",
                                             prices=PRICES, **options)
        return core.tenant("acme"), server, llm_id
    return make


# -- at the start of a run ------------------------------------------------------------------------


def test_a_tenant_exactly_at_its_token_budget_cannot_start_a_run(priced):
    acme, server, llm_id = priced([FINAL])
    assert run(acme, llm_id).status == "succeeded"  # 150,000 tokens
    acme.set_limits(tokens_per_day=CALL_TOKENS)

    with pytest.raises(QuotaExceededError) as refused:
        run(acme, llm_id)

    today = datetime.now(timezone.utc).date().isoformat()
    assert str(refused.value) == (f"tokens_per_day: this tenant has used 150,000 tokens on {today} (UTC); its"
                                  " budget is 150,000")
    assert runs_stored(acme.core) == 1 and len(server.requests) == 1  # nothing but the refusal


def test_one_token_over_is_refused_and_one_token_of_room_starts(priced):
    acme, server, llm_id = priced([FINAL])
    run(acme, llm_id)

    acme.set_limits(tokens_per_day=CALL_TOKENS - 1)
    with pytest.raises(QuotaExceededError, match="tokens_per_day: this tenant has used 150,000 tokens"):
        run(acme, llm_id)
    acme.set_limits(tokens_per_day=CALL_TOKENS + 1)  # one token of room: the run starts, its call goes out
    assert run(acme, llm_id).status == "succeeded"
    assert len(server.requests) == 2
    with pytest.raises(QuotaExceededError, match="used 300,000 tokens"):
        run(acme, llm_id)
    acme.set_limits(tokens_per_day=None)  # no budget
    assert run(acme, llm_id).status == "succeeded"


def test_a_usd_budget_exactly_spent_refuses_the_next_run_naming_budget_spent_and_limit(priced):
    acme, _, llm_id = priced([FINAL])
    first = run(acme, llm_id)
    assert first.cost_usd == CALL_COST
    acme.set_limits(budget_usd_per_day=0.2)

    with pytest.raises(QuotaExceededError) as refused:
        run(acme, llm_id)
    today = datetime.now(timezone.utc).date().isoformat()
    assert str(refused.value) == f"budget_usd_per_day: this tenant has spent $0.20 on {today} (UTC); its budget is $0.20"

    acme.set_limits(budget_usd_per_day=None, budget_usd_per_month=0.2)
    with pytest.raises(QuotaExceededError, match=rf"budget_usd_per_month: this tenant has spent \$0.20 in {today[:7]}"):
        run(acme, llm_id)
    acme.set_limits(budget_usd_per_month=0.2000001)
    assert run(acme, llm_id).status == "succeeded"
    assert runs_stored(acme.core) == 2


def test_spending_of_earlier_days_and_months_does_not_count(priced):
    acme, _, llm_id = priced([FINAL])
    run(acme, llm_id)
    core = acme.core
    now = datetime.now(timezone.utc)
    last_month = now.replace(day=1) - timedelta(days=1)
    raw_sql(core, "UPDATE llm_attempts SET started_at = ?", (iso(last_month),))
    acme.set_limits(budget_usd_per_day=0.2, budget_usd_per_month=0.2, tokens_per_day=CALL_TOKENS)
    assert run(acme, llm_id).status == "succeeded"
    if now.day > 1:  # yesterday (in this month) counts for the month only
        raw_sql(core, "UPDATE llm_attempts SET started_at = ? WHERE started_at > ?",
                (iso(now - timedelta(days=1)), iso(last_month)))
        acme.set_limits(budget_usd_per_month=None)
        assert run(acme, llm_id).status == "succeeded"  # yesterday's $0.20 leaves today's budgets whole
        acme.set_limits(budget_usd_per_day=None, tokens_per_day=None, budget_usd_per_month=0.3)
        with pytest.raises(QuotaExceededError, match=r"budget_usd_per_month: this tenant has spent \$0.40"):
            run(acme, llm_id)


# -- mid-run --------------------------------------------------------------------------------------


def test_a_run_crossing_its_budget_stops_before_its_next_llm_call(priced):
    acme, server, llm_id = priced([STEP])  # a run that never finishes by itself
    acme.set_limits(budget_usd_per_day=0.5)  # room for three calls: $0, $0.20, $0.40 spent before each

    error = run(acme, llm_id)

    assert isinstance(error, RunError) and error.status == "budget_exceeded"
    assert "budget_usd_per_day: this tenant has spent $0.60" in str(error)
    assert "the run stopped before its next LLM call" in str(error)
    record = acme.get_run(error.run_id)
    assert record["status"] == "budget_exceeded" and record["error"] == str(error).split(": ", 1)[1]
    assert len(record["llm_calls"]) == 3 and len(server.requests) == 3
    assert record["cost_usd"] == pytest.approx(0.6)
    assert raw_sql(acme.core, "SELECT COUNT(*) FROM llm_reservations")[0][0] == 0  # every reservation settled


def test_the_final_answer_call_at_max_steps_is_stopped_too(priced):
    """smolagents swallows errors of the call that asks for a final answer at max_steps: the run
    is still budget_exceeded, not max_steps."""
    acme, server, llm_id = priced([STEP])
    acme.set_limits(budget_usd_per_day=0.1)  # room for one call

    error = run(acme, llm_id, max_steps=1)

    assert isinstance(error, RunError) and error.status == "budget_exceeded"
    assert len(server.requests) == 1


def test_an_interrupted_request_gives_its_reservation_back(priced):
    import signal

    acme, server, llm_id = priced([{"hang": True}])
    acme.set_limits(budget_usd_per_day=1.0)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.alarm(2)  # while the request hangs
        with pytest.raises(KeyboardInterrupt):
            run(acme, llm_id)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

    assert len(server.requests) == 1
    [record] = acme.get_runs()
    assert record["status"] == "failed" and record["error"] == "interrupted (KeyboardInterrupt)"
    assert raw_sql(acme.core, "SELECT COUNT(*) FROM llm_reservations")[0][0] == 0


def test_one_tenants_spending_never_counts_against_anothers_budget(core, llm_server):
    server = llm_server([FINAL])
    acme, globex = core.tenant("acme"), core.tenant("globex")
    acme_llm = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", prices=PRICES)
    globex_llm = globex.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", prices=PRICES)
    for tenant in (acme, globex):
        tenant.set_limits(budget_usd_per_day=0.2)
    assert run(acme, acme_llm).status == "succeeded"
    with pytest.raises(QuotaExceededError):
        run(acme, acme_llm)
    assert run(globex, globex_llm).status == "succeeded"  # acme's $0.20 is acme's


def test_reservations_hold_room_until_settled_or_expired(core):
    storage = core.storage
    now = datetime.now(timezone.utc)
    budgets = {"tokens_per_day": 1000}
    for tenant in ("acme", "globex"):
        storage.start_run(tenant, {"id": "run_1", "llm_id": "llm_x", "tool_ids": [], "query": "q",
                                   "agent_type": "code", "status": "running", "started_at": iso(now),
                                   "deadline": iso(now + timedelta(hours=1))},
                          quota={"max_concurrent_runs": 8, "runs_per_minute": 100})

    def reserve(tenant, rid, tokens, expires=timedelta(minutes=1)):
        storage.reserve_llm_call(tenant, {"id": rid, "run_id": "run_1", "tokens": tokens, "cost_usd": 0.0,
                                          "created_at": iso(now), "expires_at": iso(now + expires)}, budgets)

    reserve("acme", "rsv_a", 1000)  # room: nothing used or held yet
    with pytest.raises(QuotaExceededError) as refused:
        reserve("acme", "rsv_b", 1)
    day = now.date().isoformat()
    assert str(refused.value) == (f"tokens_per_day: this tenant has used 0 tokens on {day} (UTC) (and LLM calls in"
                                  " flight hold 1,000 tokens more); its budget is 1,000")
    reserve("globex", "rsv_g", 1000)  # acme's reservation is acme's
    storage.add_llm_attempt("acme", {"run_id": "run_1", "seq": 1, "call_index": 1, "llm_id": "llm_x",
                                     "provider": "openai", "model": "m", "outcome": "failed", "latency_ms": 1,
                                     "started_at": iso(now), "finished_at": iso(now), "cost_usd": 0.0},
                            reservation="rsv_a")
    reserve("acme", "rsv_c", 1000)  # the failed attempt settled its reservation and used nothing
    storage.release_reservation("acme", "rsv_c")
    reserve("acme", "rsv_old", 1000, expires=timedelta(seconds=-1))  # a dead process's reservation
    reserve("acme", "rsv_d", 1000)  # does not count
    assert sorted(r[0] for r in raw_sql(core, "SELECT id FROM llm_reservations WHERE tenant_id = 'acme'")) == ["rsv_d"]


def test_budgets_are_validated_and_set_from_the_cli(core):
    acme = core.tenant("acme")
    for name, value in [("budget_usd_per_day", 0), ("budget_usd_per_day", -1), ("budget_usd_per_month", "5"),
                        ("budget_usd_per_day", True), ("budget_usd_per_day", float("inf")), ("tokens_per_day", 1.5),
                        ("tokens_per_day", 0)]:
        with pytest.raises(ValidationError, match=name):
            acme.set_limits(**{name: value})
    from decimal import Decimal

    limits = acme.set_limits(budget_usd_per_day=Decimal("5.50"), budget_usd_per_month=100, tokens_per_day=2_000_000)
    assert (limits.budget_usd_per_day, limits.budget_usd_per_month, limits.tokens_per_day) == (5.5, 100.0, 2_000_000)

    from test_usage import mt

    out = mt("limits", "set", "--tenant", "acme", "budget_usd_per_day=0.25", "tokens_per_day=default", home=core.home)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["budget_usd_per_day"] == 0.25 and shown["tokens_per_day"] is None
    assert shown["budget_usd_per_month"] == 100.0
    bad = mt("limits", "set", "--tenant", "acme", "budget_usd_per_day=lots", home=core.home)
    assert bad.returncode != 0 and "is not NAME=NUMBER" in bad.stderr
    negative = mt("limits", "set", "--tenant", "acme", "budget_usd_per_day=-1", home=core.home)
    assert negative.returncode == 1 and "must be a positive number of US dollars" in negative.stderr


# -- concurrency ----------------------------------------------------------------------------------

BUDGET = 1.0  # room for five calls when nothing else is in flight


def check_overshoot(core, runs: int) -> None:
    """Every run stopped on the budget; the tenant spent at least its budget, and at most the budget
    plus one call for each run that could have had a request in flight."""
    statuses = raw_sql(core, "SELECT status, COUNT(*) FROM runs GROUP BY status")
    assert dict(statuses) == {"budget_exceeded": runs}
    spent = raw_sql(core, "SELECT SUM(cost_usd) FROM llm_attempts")[0][0]
    assert BUDGET <= spent <= BUDGET + runs * CALL_COST + 1e-9, spent
    assert raw_sql(core, "SELECT COUNT(*) FROM llm_reservations")[0][0] == 0


def test_eight_threads_of_one_tenant_overshoot_by_at_most_the_calls_in_flight(tmp_path, llm_server):
    core = MTCore(settings=make_settings(tmp_path / "home"))
    server = llm_server([STEP], latency=0.2)  # calls overlap
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", prices=PRICES, max_tokens=50_000)
    acme.set_limits(budget_usd_per_day=BUDGET)
    errors: list[object] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        errors.append(run(acme, llm_id, max_steps=20))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)

    assert len(errors) == 8 and all(isinstance(e, RunError) and e.status == "budget_exceeded" for e in errors), errors
    check_overshoot(core, 8)
    with pytest.raises(QuotaExceededError, match="budget_usd_per_day"):
        run(acme, llm_id)
    core.close()


WORKER = textwrap.dedent('''
    import json, sys, threading, warnings
    from mt_core import MTCore, QuotaExceededError, RunError, Settings
    home, key, llm_id, database_url = sys.argv[1:5]
    settings = Settings(home=home, master_key=key, database_url=database_url or None, load_plugins=(),
                        llm_allowed_networks=("127.0.0.0/8",), allow_in_process=sys.argv[5] == "1")
    acme = MTCore(settings=settings).tenant("acme")
    warnings.simplefilter("ignore")
    barrier = threading.Barrier(4)
    outcomes = []

    def work():
        barrier.wait()
        try:
            acme.run_query([], llm_id, "Work.", use_docker=False, max_steps=20)
            outcomes.append("succeeded")
        except RunError as error:
            outcomes.append(error.status)
        except QuotaExceededError:
            outcomes.append("refused")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(outcomes))
''')


def test_two_processes_of_four_threads_share_one_budget(tmp_path, llm_server):
    from conftest import JAIL_REASON

    core = MTCore(settings=make_settings(tmp_path / "home"))
    server = llm_server([STEP], latency=0.2)
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", prices=PRICES, max_tokens=50_000)
    acme.set_limits(budget_usd_per_day=BUDGET)
    args = [str(core.home), core.settings.master_key, llm_id, core.settings.database_url or "",
            "1" if JAIL_REASON else "0"]
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = []
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
        outcomes += json.loads(out)

    started = [o for o in outcomes if o != "refused"]  # a run that starts after the budget is spent is refused
    assert set(started) == {"budget_exceeded"} and len(outcomes) == 8
    check_overshoot(core, len(started))
    core.close()
