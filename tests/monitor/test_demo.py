"""``streamqc demo``: the live demo end to end, as a new user runs it on a bare machine."""

from __future__ import annotations

import re

from monitor.demo.live import FAULTS


def test_every_injected_fault_arrives_over_mqtt_with_its_timing(streamqc):
    run = streamqc("demo", "--duration", "35s", timeout=90)
    assert run.code == 0, run.stdout + run.stderr
    out = run.stdout
    assert re.search(r"mosquitto_sub -h 127\.0\.0\.1 -p \d+ -t 'streamqc/demo/#' -v", out)
    assert re.search(r"metrics: http://127\.0\.0\.1:\d+/metrics", out)
    summary = out.split("injected vs arrived over MQTT:")[1]
    for fault in FAULTS:
        span = f"{fault.span.start_s:g}-{fault.span.end_s:g} s"
        line = re.search(
            rf"{fault.channel} +{fault.what} {span} +{fault.alarm} arrived, "
            r"from ([\d.]+) s, lasted ([\d.]+) s",
            summary,
        )
        assert line, f"{fault}\n{out}"
        began_s, lasted_s = float(line[1]), float(line[2])
        assert abs(began_s - fault.span.start_s) < 1.0, line[0]
        assert abs(lasted_s - fault.span.duration_s) < 0.2, line[0]
    assert "sport  clean feed" in summary and "no alarm: right" in summary
    assert "UNEXPECTED" not in summary
    assert "every injected fault raised its alarm over MQTT, no false alarm" in out
    assert re.search(r"thumbnails: [1-9]\d* periodic JPEGs", summary)


def test_demo_options_are_checked_before_anything_starts(streamqc):
    run = streamqc("demo", "--duration", "soon")
    assert run.code == 2 and "--duration" in run.stderr and run.stdout == ""
    run = streamqc("demo", "--offline", "--duration", "10s")
    assert run.code == 2 and "--offline" in run.stderr and run.stdout == ""
