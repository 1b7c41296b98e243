"""The bench runner's own logic: its options and the ratios a paired run prints.

The figures themselves come only from running the bench (bench/README.md);
these tests check that a paired run is asked for and summed up as documented.
"""

from __future__ import annotations

import re

import pytest

from bench import runner


def test_against_needs_the_nats_and_port_placeholders():
    for command in ["resgate", "resgate --nats {nats}", "resgate -p {port}"]:
        with pytest.raises(SystemExit):
            runner.parse_args(["--against", command])


def test_against_refuses_unknown_or_malformed_placeholders():
    for command in ["resgate --nats {nats} -p {port} {secret}", "resgate --nats {nats} -p {port} {",
                    "resgate --nats {nats} -p {port} {0}"]:
        with pytest.raises(SystemExit):
            runner.parse_args(["--against", command])


def test_rounds_default_to_three_against_another_gateway_and_one_alone():
    assert runner.parse_args([]).rounds == 1
    paired = runner.parse_args(["--against", "resgate --nats {nats} -i {host} -p {port}"])
    assert paired.rounds == 3
    assert paired.against == "resgate --nats {nats} -i {host} -p {port}"
    with pytest.raises(SystemExit):
        runner.parse_args(["--rounds", "0"])


def test_rounds_alternate_which_side_runs_first():
    sides = ["theirs", "ours"]
    assert [runner.round_order(sides, round_) for round_ in (1, 2, 3)] == [
        ["theirs", "ours"], ["ours", "theirs"], ["theirs", "ours"]]
    assert runner.round_order(["ours"], 2) == ["ours"]


def test_the_fifty_thousand_line_runs_only_when_named():
    assert "idle_50000_workers3" not in runner.parse_args([]).only
    assert "idle_19000" in runner.parse_args([]).only
    assert runner.parse_args(["idle_50000_workers3"]).only == {"idle_50000_workers3"}


def test_ratios_are_ours_over_theirs_per_round_with_their_median(capsys):
    def line(rate, p50):
        return runner.Line("", {"req/s": (rate, True), "p50 ms": (p50, False)})

    ours = [line(100, 2.0), line(120, 1.0), line(90, 3.0)]
    theirs = [line(100, 1.0), line(100, 2.0), line(100, 2.0)]
    medians = runner.ratios("http_get", ours, theirs)
    assert medians == {"req/s": 1.0, "p50 ms": 1.5}
    printed = capsys.readouterr().out
    assert "req/s 1.00 1.20 0.90 -> median 1.00" in printed
    assert "p50 ms 2.00 0.50 1.50 -> median 1.50" in printed


def test_the_call_count_covers_every_reference_of_a_warm_subscribe(capsys):
    from bench import calls

    calls.main(["--rounds", "2"])
    printed = capsys.readouterr().out
    match = re.fullmatch(r"warm subscribe of 1,000 references: ([\d,]+) gateway calls; "
                         r"disposing its connection: ([\d,]+) \(2 rounds\)\n"
                         r"cached HTTP GET: ([\d,]+) calls, ([\d,]+) of them the gateway's \(2 rounds\)\n", printed)
    assert match is not None, printed
    subscribing, disposing, getting, gateway_getting = (int(group.replace(",", "")) for group in match.groups())
    # Each of the 1,001 subscriptions is made, loaded, sent and disposed by gateway code:
    # a count below that means the gateway's modules were not the ones counted.
    assert subscribing > 1001 * 4 and disposing > 1001
    # A GET goes through twisted.web's parsing and writing as well as the gateway's code.
    assert getting > gateway_getting > 10
