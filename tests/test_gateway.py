"""The LLM gateway end to end: retries, fallbacks, deadlines, circuit breakers, the response cache
and the attempt records, against fault-injecting OpenAI-compatible servers on 127.0.0.1.

Each test asserts what the servers received and what the run record (``get_run(...)["llm_calls"]``)
says.
"""

from __future__ import annotations

import email.utils
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

from conftest import API_KEY, make_settings, raw_sql
from mt_core import ConflictError, LLMConfigError, MTCore, RunError
from mt_core.testing import CONTENT_FILTER_ERROR, CONTEXT_LENGTH_ERROR, in_order

FINAL = '<code>final_answer("done")</code>'
BACKUP_KEY = "sk-backup-0123456789abcdefBACKUP"


def fast_core(tmp_path, **overrides):
    """An installation with short waits, so that retries and cooldowns fit in a test."""
    values = {"llm_backoff": 0.02, "llm_timeout": 20.0, **overrides}
    return MTCore(settings=make_settings(tmp_path / "home", **values))


def run(acme, llm_id, query="Say done."):
    """run_query in the local jail; returns (result or RunError, run record)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = acme.run_query([], llm_id, query, use_docker=False, max_steps=2)
        except RunError as error:
            return error, acme.get_run(error.run_id)
    return result, acme.get_run(result.run_id)


def outcomes(record):
    return [(call["outcome"], call["status_code"]) for call in record["llm_calls"]]


@pytest.fixture
def core(tmp_path):
    installation = fast_core(tmp_path)
    yield installation
    installation.close()


# -- retries inside one configuration ----------------------------------------------------------


@pytest.mark.parametrize("retry_after", ["1", "http-date"])
def test_429_with_retry_after_is_waited_for_then_retried(core, llm_server, retry_after):
    def header():  # made when the 429 is sent: a date two seconds ahead, at one-second resolution
        return retry_after if retry_after != "http-date" else email.utils.formatdate(time.time() + 2, usegmt=True)

    replies = in_order([None, FINAL])
    server = llm_server(responder=lambda body: replies(body) or {"status": 429, "headers": {"Retry-After": header()}})
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")

    result, record = run(acme, llm_id)

    assert str(result) == "done" and result.llm_calls == record["llm_calls"]
    assert len(server.requests) == 2
    gap = server.requests[1]["received_at"] - server.requests[0]["received_at"]
    assert gap >= 0.95  # the server asked for (at least) a second; a date has one-second resolution
    assert gap < 3.5
    assert outcomes(record) == [("retried", 429), ("ok", None)]
    first = record["llm_calls"][0]
    assert first["error_type"] == "RateLimitError" and first["llm_id"] == llm_id and first["call_index"] == 1
    assert record["llm_calls"][1]["input_tokens"] > 0


def test_429_without_retry_after_backs_off_exponentially_with_jitter(tmp_path, llm_server):
    core = fast_core(tmp_path, llm_backoff=0.2)
    server = llm_server(responder=in_order([{"status": 429}, {"status": 429}, FINAL]))
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")

    result, record = run(acme, llm_id)

    assert str(result) == "done"
    times = [request["received_at"] for request in server.requests]
    first, second = times[1] - times[0], times[2] - times[1]
    assert 0.1 <= first < 1.0  # half of 0.2 s at least, plus jitter up to 0.2 s (and the request's own time)
    assert 0.2 <= second < 1.5  # doubled: 0.4 s, half of it at least
    assert outcomes(record) == [("retried", 429), ("retried", 429), ("ok", None)]


def test_a_retry_after_longer_than_the_cap_moves_on_to_the_fallback(tmp_path, llm_server):
    core = fast_core(tmp_path, llm_retry_after_max=5.0)
    primary = llm_server(script=[{"status": 429, "headers": {"Retry-After": "120"}}])
    backup = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    backup_id = acme.add_llm(base_url=backup.base_url, api_key=BACKUP_KEY, model_name="backup", llm_name="backup")
    llm_id = acme.add_llm(base_url=primary.base_url, api_key=API_KEY, model_name="m", fallbacks=[backup_id])

    started = time.monotonic()
    result, record = run(acme, llm_id)

    assert str(result) == "done" and time.monotonic() - started < 10
    assert len(primary.requests) == 1 and len(backup.requests) == 1
    assert outcomes(record) == [("fell_back", 429), ("ok", None)]


@pytest.mark.parametrize(("status", "error_type"), [
    (500, "InternalServerError"), (502, "InternalServerError"), (503, "InternalServerError"),
])
def test_server_errors_are_retried(core, llm_server, status, error_type):
    server = llm_server(responder=in_order([{"status": status}, {"status": status}, FINAL]))
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")

    result, record = run(acme, llm_id)

    assert str(result) == "done" and len(server.requests) == 3
    assert outcomes(record) == [("retried", status), ("retried", status), ("ok", None)]
    assert {call["error_type"] for call in record["llm_calls"][:2]} == {error_type}


def test_retries_stop_at_max_retries_and_the_error_says_what_happened(core, llm_server):
    server = llm_server(script=[{"status": 503}])
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", llm_name="primary", max_retries=1)

    error, record = run(acme, llm_id)

    assert isinstance(error, RunError) and error.status == "failed"
    assert len(server.requests) == 2  # one try and one retry
    assert outcomes(record) == [("retried", 503), ("failed", 503)]
    text = str(error)
    assert "LLM request failed (openai endpoint http://127.0.0.1:" in text
    assert f"[1] {llm_id} 'primary'" in text and "503 InternalServerError (retried), 503 InternalServerError (failed)" in text
    assert record["error"] == text.split(": ", 1)[1]
    assert API_KEY not in text


def test_a_connection_reset_mid_response_is_retried(core, llm_server):
    server = llm_server(responder=in_order([{"reset": True}, FINAL]))
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")

    result, record = run(acme, llm_id)

    assert str(result) == "done" and len(server.requests) == 2
    assert outcomes(record) == [("retried", None), ("ok", None)]
    assert record["llm_calls"][0]["error_type"] == "APIConnectionError"


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retried(core, llm_server, status):
    server = llm_server(script=[{"status": status}])
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", max_retries=3)

    error, record = run(acme, llm_id)

    assert isinstance(error, RunError) and len(server.requests) == 1
    assert outcomes(record) == [("failed", status)]


# -- fallbacks -------------------------------------------------------------------------------


def _chain(acme, primary_server, backup_server, **primary_options):
    backup_id = acme.add_llm(base_url=backup_server.base_url, api_key=BACKUP_KEY, model_name="backup-model",
                             llm_name="backup")
    llm_id = acme.add_llm(base_url=primary_server.base_url, api_key=API_KEY, model_name="primary-model",
                          llm_name="primary", fallbacks=[backup_id], **primary_options)
    return llm_id, backup_id


def test_the_fallback_answers_with_its_own_model_key_and_usage(core, llm_server):
    primary = llm_server(script=[{"status": 503}])
    backup = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    llm_id, backup_id = _chain(acme, primary, backup, max_retries=1)

    result, record = run(acme, llm_id)

    assert str(result) == "done"
    assert len(primary.requests) == 2 and len(backup.requests) == 1
    sent = backup.requests[0]
    assert sent["body"]["model"] == "backup-model"
    assert sent["headers"]["authorization"] == f"Bearer {BACKUP_KEY}"
    assert primary.requests[0]["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert outcomes(record) == [("retried", 503), ("fell_back", 503), ("ok", None)]
    answered = record["llm_calls"][2]
    assert answered["llm_id"] == backup_id and answered["model"] == "backup-model" and answered["provider"] == "openai"
    assert answered["base_url"] == backup.base_url
    # the usage the backup's endpoint reported is what the run and the attempt record
    prompt_chars = sum(len(m["content"] if isinstance(m["content"], str) else "".join(p.get("text", "") for p in m["content"]))
                       for m in sent["body"]["messages"])
    assert answered["input_tokens"] == max(1, prompt_chars // 4) == record["input_tokens"]
    assert answered["output_tokens"] == record["output_tokens"] > 0
    assert all(call["input_tokens"] == 0 for call in record["llm_calls"][:2])
    assert all(call["started_at"] <= call["finished_at"] for call in record["llm_calls"])


@pytest.mark.parametrize("status", [401, 403, 404])
def test_auth_and_not_found_errors_fall_back_at_once(core, llm_server, status):
    primary = llm_server(script=[{"status": status}])
    backup = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    llm_id, _ = _chain(acme, primary, backup)

    result, record = run(acme, llm_id)

    assert str(result) == "done" and len(primary.requests) == 1 and len(backup.requests) == 1
    assert outcomes(record) == [("fell_back", status), ("ok", None)]


def test_a_context_length_error_falls_back_without_retrying(core, llm_server):
    primary = llm_server(script=[{"status": 400, "error": CONTEXT_LENGTH_ERROR}])
    backup = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    llm_id, backup_id = _chain(acme, primary, backup)

    result, record = run(acme, llm_id)

    assert str(result) == "done" and len(primary.requests) == 1 and len(backup.requests) == 1
    assert outcomes(record) == [("fell_back", 400), ("ok", None)]
    assert record["llm_calls"][0]["error_type"] == "BadRequestError"
    assert "maximum context length" in record["llm_calls"][0]["error"]


def test_a_content_filter_refusal_is_neither_retried_nor_sent_elsewhere(core, llm_server):
    primary = llm_server(script=[{"status": 400, "error": CONTENT_FILTER_ERROR}])
    backup = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    llm_id, _ = _chain(acme, primary, backup)

    error, record = run(acme, llm_id)

    assert isinstance(error, RunError) and error.status == "failed"
    assert len(primary.requests) == 1 and backup.requests == []
    assert outcomes(record) == [("failed", 400)]
    assert "content management policy" in str(error)


def test_a_failing_chain_names_every_configuration_and_never_a_key(core, llm_server):
    primary = llm_server(script=[{"status": 401, "content": f"invalid key {API_KEY}"}])
    backup = llm_server(script=[{"status": 500, "content": f"upstream rejected {BACKUP_KEY}"}])
    acme = core.tenant("acme")
    backup_id = acme.add_llm(base_url=backup.base_url, api_key=BACKUP_KEY, model_name="backup-model",
                             llm_name="backup", max_retries=0)
    llm_id = acme.add_llm(base_url=primary.base_url, api_key=API_KEY, model_name="primary-model",
                          llm_name="primary", fallbacks=[backup_id])

    error, record = run(acme, llm_id)

    text = str(error)
    assert "Tried 2 configurations" in text
    assert f"[1] {llm_id} 'primary' (openai model primary-model at {primary.base_url}): 401 AuthenticationError" \
           " (fell back)" in text
    assert f"[2] {backup_id} 'backup' (openai model backup-model at {backup.base_url}): 500 InternalServerError" \
           " (failed)" in text
    for stored in (text, record["error"], json.dumps(record["llm_calls"])):
        assert API_KEY not in stored and BACKUP_KEY not in stored
    assert "[REDACTED]" in record["llm_calls"][0]["error"] and "[REDACTED]" in record["llm_calls"][1]["error"]


# -- one deadline per call ----------------------------------------------------------------------


def test_a_hanging_primary_leaves_the_fallback_its_share_of_the_deadline(tmp_path, llm_server):
    core = fast_core(tmp_path, llm_timeout=4.0)
    primary = llm_server(script=[{"hang": True}])
    backup = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    llm_id, _ = _chain(acme, primary, backup)  # max_retries 2: a timeout is still not retried with a fallback

    started = time.monotonic()
    result, record = run(acme, llm_id)
    elapsed = time.monotonic() - started

    assert str(result) == "done"
    assert len(primary.requests) == 1 and len(backup.requests) == 1
    failover = backup.requests[0]["received_at"] - primary.requests[0]["received_at"]
    # half of the 4 s deadline: the chain's two configurations share it (building the primary's
    # client on first use comes out of its share)
    assert 1.5 <= failover < 3.0
    assert outcomes(record) == [("fell_back", None), ("ok", None)]
    assert record["llm_calls"][0]["error_type"] == "APITimeoutError"
    assert 1500 <= record["llm_calls"][0]["latency_ms"] <= 2100
    assert elapsed < 4.0 + 3.0


def test_a_configurations_own_timeout_fails_over_sooner(tmp_path, llm_server):
    core = fast_core(tmp_path, llm_timeout=10.0)
    primary = llm_server(script=[{"hang": True}])
    backup = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    llm_id, _ = _chain(acme, primary, backup, timeout=1)

    result, _ = run(acme, llm_id)

    assert str(result) == "done"
    failover = backup.requests[0]["received_at"] - primary.requests[0]["received_at"]
    assert 0.9 <= failover < 2.0


def test_a_hanging_only_configuration_ends_the_call_at_the_deadline(tmp_path, llm_server):
    core = fast_core(tmp_path, llm_timeout=2.0)
    server = llm_server(script=[{"hang": True}])
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", max_retries=2)

    started = time.monotonic()
    error, record = run(acme, llm_id)

    assert isinstance(error, RunError) and error.status == "timeout"
    assert time.monotonic() - started < 2.0 + 2.5  # the deadline, not 3 x the timeout
    assert record["status"] == "timeout"
    # timeouts are retried when no other configuration can take over, within the same deadline
    assert [call["error_type"] for call in record["llm_calls"]] == ["APITimeoutError"] * len(record["llm_calls"])
    assert sum(call["latency_ms"] for call in record["llm_calls"]) < 2300
    assert "APITimeoutError" in str(error)


def test_a_slow_response_body_is_cut_at_the_deadline(tmp_path, llm_server):
    """The deadline holds while the answer is being read too, not only while waiting for it."""
    core = fast_core(tmp_path, llm_timeout=1.5)
    server = llm_server(script=[{"delay": 5, "content": "too late"}])
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", max_retries=0)
    started = time.monotonic()
    error, record = run(acme, llm_id)
    assert isinstance(error, RunError) and error.status == "timeout"
    assert time.monotonic() - started < 1.5 + 2.5


# -- the circuit breaker -------------------------------------------------------------------------


class Switch:
    """A responder whose reply the test changes: a primary that goes down and comes back."""

    def __init__(self, reply):
        self.reply = reply

    def __call__(self, body):
        return self.reply


def test_a_primary_that_is_down_is_skipped_then_tried_again_after_the_cooldown(tmp_path, llm_server):
    core = fast_core(tmp_path, llm_breaker_failures=2, llm_breaker_window=60.0, llm_breaker_cooldown=3.0)
    switch = Switch({"status": 503})
    primary = llm_server(responder=switch)
    backup = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    llm_id, backup_id = _chain(acme, primary, backup, max_retries=1)

    _, first = run(acme, llm_id)  # two failures: the breaker opens
    assert outcomes(first) == [("retried", 503), ("fell_back", 503), ("ok", None)]
    assert len(primary.requests) == 2

    _, second = run(acme, llm_id)  # skipped without a request
    assert outcomes(second) == [("skipped", None), ("ok", None)]
    skipped = second["llm_calls"][0]
    assert skipped["llm_id"] == llm_id and skipped["error_type"] == "CircuitOpen"
    assert "circuit breaker open after 2 failures (last: 503 InternalServerError)" in skipped["error"]
    assert len(primary.requests) == 2 and len(backup.requests) == 2

    switch.reply = FINAL  # the primary recovers; after the cooldown one trial call goes through
    time.sleep(3.1)
    _, third = run(acme, llm_id)
    assert outcomes(third) == [("ok", None)] and third["llm_calls"][0]["llm_id"] == llm_id
    assert len(primary.requests) == 3 and len(backup.requests) == 2

    _, fourth = run(acme, llm_id)  # closed again
    assert outcomes(fourth) == [("ok", None)] and len(primary.requests) == 4


def test_a_failed_trial_opens_the_breaker_again(tmp_path, llm_server):
    core = fast_core(tmp_path, llm_breaker_failures=1, llm_breaker_cooldown=3.0)
    primary = llm_server(script=[{"status": 503}])
    backup = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    llm_id, _ = _chain(acme, primary, backup, max_retries=2)

    assert outcomes(run(acme, llm_id)[1]) == [("retried", 503), ("retried", 503), ("fell_back", 503), ("ok", None)]
    time.sleep(3.1)
    # the trial call, failed: not retried, since its failure opened the breaker again
    assert outcomes(run(acme, llm_id)[1]) == [("fell_back", 503), ("ok", None)]
    assert outcomes(run(acme, llm_id)[1]) == [("skipped", None), ("ok", None)]  # open again at once
    assert len(primary.requests) == 4


def test_an_answer_clears_the_failures_counted_so_far(tmp_path, llm_server):
    core = fast_core(tmp_path, llm_breaker_failures=2, llm_breaker_window=60.0)
    primary = llm_server(responder=in_order([{"status": 503}, FINAL, {"status": 503}, FINAL, FINAL]))
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=primary.base_url, api_key=API_KEY, model_name="m", max_retries=1)
    for _ in range(2):
        assert outcomes(run(acme, llm_id)[1]) == [("retried", 503), ("ok", None)]
    assert outcomes(run(acme, llm_id)[1]) == [("ok", None)]  # two failures in the window, but not in a row


def test_an_open_breaker_on_the_only_configuration_fails_fast_and_says_when(tmp_path, llm_server):
    core = fast_core(tmp_path, llm_breaker_failures=2, llm_breaker_cooldown=30.0)
    server = llm_server(script=[{"status": 503}])
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", llm_name="only", max_retries=1)
    run(acme, llm_id)
    assert len(server.requests) == 2

    started = time.monotonic()
    error, record = run(acme, llm_id)

    assert time.monotonic() - started < 5 and len(server.requests) == 2
    assert outcomes(record) == [("skipped", None)]
    text = str(error)
    assert "LLM call not sent: the circuit breaker of every configuration of the chain is open" in text
    assert f"{llm_id} 'only'" in text
    assert "circuit breaker open after 2 failures (last: 503 InternalServerError); it will be tried again at 20" in text
    assert "(in 2" in text or "(in 3" in text  # about 30 s from now


def test_an_answer_that_is_not_an_outage_does_not_open_the_breaker(tmp_path, llm_server):
    core = fast_core(tmp_path, llm_breaker_failures=1)
    server = llm_server(script=[{"status": 400, "error": CONTEXT_LENGTH_ERROR}])
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m")
    run(acme, llm_id)
    run(acme, llm_id)
    assert len(server.requests) == 2


def test_updating_a_configuration_closes_its_breaker(tmp_path, llm_server):
    core = fast_core(tmp_path, llm_breaker_failures=1, llm_breaker_cooldown=60.0)
    down = llm_server(script=[{"status": 503}])
    up = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=down.base_url, api_key=API_KEY, model_name="m", max_retries=0)
    run(acme, llm_id)
    assert outcomes(run(acme, llm_id)[1]) == [("skipped", None)]
    acme.update_llm(llm_id, base_url=up.base_url)
    result, record = run(acme, llm_id)
    assert str(result) == "done" and outcomes(record) == [("ok", None)]


WORKER = textwrap.dedent('''
    import json, sys, warnings
    from mt_core import MTCore, RunError, Settings
    home, key, llm_id, database_url = sys.argv[1:5]
    settings = Settings(home=home, master_key=key, database_url=database_url or None, load_plugins=(),
                        llm_allowed_networks=("127.0.0.0/8",), llm_backoff=0.02, llm_breaker_failures=2, llm_breaker_cooldown=60.0)
    acme = MTCore(settings=settings).tenant("acme")
    warnings.simplefilter("ignore")
    try:
        run_id = acme.run_query([], llm_id, "Say done.", use_docker=False, max_steps=2).run_id
    except RunError as error:
        run_id = error.run_id
    print(json.dumps([[c["llm_id"], c["outcome"]] for c in acme.get_run(run_id)["llm_calls"]]))
''')


def _worker(core, llm_id):
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(core.home), core.settings.master_key, llm_id,
         core.settings.database_url or ""],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_processes_on_one_database_share_the_breaker(tmp_path, llm_server):
    core = fast_core(tmp_path, llm_breaker_failures=2, llm_breaker_cooldown=60.0)
    primary = llm_server(script=[{"status": 503}])
    backup = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    llm_id, backup_id = _chain(acme, primary, backup, max_retries=1)

    first = _worker(core, llm_id)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert json.loads(out) == [[llm_id, "retried"], [llm_id, "fell_back"], [backup_id, "ok"]]
    assert len(primary.requests) == 2

    others = [_worker(core, llm_id) for _ in range(3)]  # at once: none of them asks the primary again
    for worker in others:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        assert json.loads(out) == [[llm_id, "skipped"], [backup_id, "ok"]]
    assert len(primary.requests) == 2 and len(backup.requests) == 4
    # and this process, on the same database, sees the same state
    assert outcomes(run(acme, llm_id)[1]) == [("skipped", None), ("ok", None)]


CRASHING_WORKER = textwrap.dedent('''
    import sys, warnings
    from mt_core import MTCore, Settings
    home, key, llm_id, database_url = sys.argv[1:5]
    settings = Settings(home=home, master_key=key, database_url=database_url or None, load_plugins=(),
                        llm_allowed_networks=("127.0.0.0/8",))
    warnings.simplefilter("ignore")
    MTCore(settings=settings).tenant("acme").run_query([], llm_id, "Say done.", use_docker=False, max_steps=2)
''')


def test_a_crashed_run_still_shows_the_attempts_it_paid_for(core, llm_server):
    primary = llm_server(script=[{"status": 400, "error": CONTEXT_LENGTH_ERROR}])
    backup = llm_server(script=[{"hang": True}])
    acme = core.tenant("acme")
    llm_id, _ = _chain(acme, primary, backup)
    worker = subprocess.Popen([sys.executable, "-c", CRASHING_WORKER, str(core.home), core.settings.master_key, llm_id,
                               core.settings.database_url or ""],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not backup.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backup.requests, "the worker never reached the fallback"
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()

    [record] = acme.get_runs()
    record = acme.get_run(record["id"])
    # it never finished: the next process to look marks it failed, and keeps what it spent
    assert record["status"] == "failed" and "ended without recording an outcome" in record["error"]
    assert outcomes(record) == [("fell_back", 400)]
    assert record["llm_calls"][0]["llm_id"] == llm_id and record["llm_calls"][0]["model"] == "primary-model"


# -- the response cache --------------------------------------------------------------------------


def test_a_deterministic_call_is_answered_from_the_cache(core, llm_server):
    server = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", temperature=0, cache_ttl=60)

    first, first_record = run(acme, llm_id)
    second, second_record = run(acme, llm_id)

    assert str(first) == str(second) == "done"
    assert len(server.requests) == 1  # the second run sent nothing
    assert outcomes(first_record) == [("ok", None)]
    assert outcomes(second_record) == [("cache_hit", None)]
    hit = second_record["llm_calls"][0]
    assert hit["input_tokens"] == hit["output_tokens"] == 0 and hit["llm_id"] == llm_id
    assert second_record["input_tokens"] == 0 and first_record["input_tokens"] > 0
    # a different query is a different key
    _, third = run(acme, llm_id, "Say done, please.")
    assert outcomes(third) == [("ok", None)] and len(server.requests) == 2


def test_the_cache_misses_when_a_sampling_parameter_changes(core, llm_server):
    server = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", temperature=0, cache_ttl=60)
    run(acme, llm_id)
    acme.update_llm(llm_id, temperature=0.7, seed=7)  # still deterministic (a seed), another request

    _, record = run(acme, llm_id)

    assert outcomes(record) == [("ok", None)] and len(server.requests) == 2
    assert server.requests[1]["body"]["temperature"] == 0.7 and server.requests[1]["body"]["seed"] == 7
    assert outcomes(run(acme, llm_id)[1]) == [("cache_hit", None)] and len(server.requests) == 2


def test_a_call_without_temperature_zero_or_a_seed_is_never_cached(core, llm_server):
    server = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", cache_ttl=60)
    run(acme, llm_id)
    assert outcomes(run(acme, llm_id)[1]) == [("ok", None)] and len(server.requests) == 2


def test_one_tenants_cache_is_never_served_to_another(core, llm_server):
    server = llm_server(script=[FINAL])
    ids = {}
    for tenant in ("acme", "globex"):
        ids[tenant] = core.tenant(tenant).add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m",
                                                  llm_name="same", temperature=0, cache_ttl=60)
    run(core.tenant("acme"), ids["acme"])
    _, record = run(core.tenant("globex"), ids["globex"])  # the same request, another tenant
    assert outcomes(record) == [("ok", None)] and len(server.requests) == 2
    # at the storage level: acme's key looked up as globex finds nothing
    [entry] = raw_sql(core, "SELECT cache_key FROM llm_cache WHERE tenant_id = 'acme'")
    assert core.storage.get_cached_response("acme", entry[0], time.time()) is not None
    assert core.storage.get_cached_response("globex", entry[0], time.time()) is None


def test_expired_entries_are_not_served_and_the_cache_is_capped_per_tenant(tmp_path, llm_server):
    core = fast_core(tmp_path, llm_cache_max_entries=2)
    server = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url=server.base_url, api_key=API_KEY, model_name="m", temperature=0, cache_ttl=1)
    run(acme, llm_id)
    time.sleep(1.1)
    assert outcomes(run(acme, llm_id)[1]) == [("ok", None)]  # expired: asked again
    for query in ("one", "two", "three"):
        run(acme, llm_id, query)
    count = raw_sql(core, "SELECT COUNT(*) FROM llm_cache WHERE tenant_id = 'acme'")[0][0]
    assert count == 2
    assert outcomes(run(acme, llm_id, "three")[1]) == [("cache_hit", None)]  # the newest stay
    assert outcomes(run(acme, llm_id, "one")[1]) == [("ok", None)]  # the oldest went


# -- fallback chains: configuration ---------------------------------------------------------------


def test_fallback_cycles_are_refused_naming_the_cycle(core):
    acme = core.tenant("acme")
    a = acme.add_llm(base_url="http://127.0.0.1:9/v1", model_name="m", llm_name="a")
    b = acme.add_llm(base_url="http://127.0.0.1:9/v1", model_name="m", llm_name="b", fallbacks=[a])
    c = acme.add_llm(base_url="http://127.0.0.1:9/v1", model_name="m", llm_name="c", fallbacks=[b])
    with pytest.raises(LLMConfigError, match=f"fallbacks: would make a cycle: {a} -> {c} -> {b} -> {a}"):
        acme.update_llm(a, fallbacks=[c])
    with pytest.raises(LLMConfigError, match=f"fallbacks: would make a cycle: {a} -> {a}"):
        acme.update_llm(a, fallbacks=[a])
    assert acme.get_llm_config(a)["fallbacks"] == []  # nothing changed
    with pytest.raises(LLMConfigError, match="lists .* twice"):
        acme.update_llm(c, fallbacks=[a, a])
    assert acme.update_llm(c, fallbacks=[b, a])["fallbacks"] == [b, a]
    assert [link.config.id for link in core.llms.resolve("acme", c)] == [c, b, a]


def test_a_configuration_in_use_as_a_fallback_cannot_be_deleted(core):
    acme = core.tenant("acme")
    a = acme.add_llm(base_url="http://127.0.0.1:9/v1", model_name="m", llm_name="a")
    b = acme.add_llm(base_url="http://127.0.0.1:9/v1", model_name="m", llm_name="b", fallbacks=[a])
    with pytest.raises(ConflictError, match=f"{a}' is a fallback of {b}"):
        acme.delete_llm(a)
    acme.update_llm(b, fallbacks=[])
    acme.delete_llm(a)
    assert [llm["id"] for llm in acme.get_llms()] == [b]


def test_update_llm_changes_only_what_it_is_given(core, llm_server):
    server = llm_server(script=[FINAL])
    acme = core.tenant("acme")
    llm_id = acme.add_llm(base_url="http://127.0.0.1:9/v1", api_key=API_KEY, model_name="m", llm_name="x",
                          temperature=0.2, max_tokens=100)
    updated = acme.update_llm(llm_id, base_url=server.base_url, max_tokens=None, cache_ttl=30)
    assert updated["base_url"] == server.base_url and updated["name"] == "x"
    assert updated["options"] == {"temperature": 0.2, "cache_ttl": 30}
    assert updated["api_key"] == "sk-te…ET"
    result, _ = run(acme, llm_id)
    assert str(result) == "done" and server.requests[0]["headers"]["authorization"] == f"Bearer {API_KEY}"
    with pytest.raises(LLMConfigError, match="temperature: must be a number from 0 to 2, got 9"):
        acme.update_llm(llm_id, temperature=9)
    assert acme.get_llm_config(llm_id)["options"]["temperature"] == 0.2


def test_the_module_level_update_llm(default_core):
    import mt_core

    a = mt_core.add_llm(base_url="http://127.0.0.1:9/v1", model_name="m", llm_name="a", tenant="acme")
    b = mt_core.add_llm(base_url="http://127.0.0.1:9/v1", model_name="m", llm_name="b", tenant="acme",
                        fallbacks=[a])
    assert mt_core.get_llm_config(b, tenant="acme")["fallbacks"] == [a]
    assert mt_core.update_llm(b, fallbacks=[], llm_name="bee", tenant="acme")["name"] == "bee"
    assert "update_llm" in mt_core.__all__
