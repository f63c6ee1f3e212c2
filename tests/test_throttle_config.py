"""The throttle's configuration: command options validated before anything is recorded (one-line
CommandError), TIERING['THROTTLE'] validated by a system check (tiering.E019)."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test.utils import override_settings

from tiering.checks import check_throttle
from tiering.models import MigrationRun

BAD_OPTIONS = [(["--max-latency-ratio", "0.5"], "--max-latency-ratio"),
               (["--max-latency-ratio", "nan"], "--max-latency-ratio"),
               (["--max-latency-ratio", "inf"], "--max-latency-ratio"),
               (["--max-replica-lag", "0"], "--max-replica-lag"),
               (["--max-replica-lag", "inf"], "--max-replica-lag"),
               (["--max-replica-lag", "1"], "TIERING['THROTTLE']['REPLICA']")]


@pytest.mark.django_db(databases="__all__")
@pytest.mark.parametrize("args,message", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_throttle_option_is_one_line_command_error_and_records_nothing(args, message):
    with pytest.raises(CommandError) as excinfo:
        call_command("migrate_cold", *args, "--no-input", stdout=StringIO(), stderr=StringIO())
    assert message in str(excinfo.value) and "\n" not in str(excinfo.value)
    with pytest.raises(CommandError, match="--max-latency-ratio must be a finite number >= 1"):
        call_command("restore_hot", "--model", "orders.Order", "--all", "--no-input", max_latency_ratio=True)
    assert not MigrationRun.objects.exists()


@pytest.mark.parametrize("throttle,message", [
    ({"MAX_LATENCY_RATIO": 0.9}, "MAX_LATENCY_RATIO"),
    ({"MAX_LATENCY_RATIO": float("nan")}, "MAX_LATENCY_RATIO"),
    ({"MAX_REPLICA_LAG": 1}, "needs ['REPLICA']"),
    ({"REPLICA": "nowhere"}, "['REPLICA']"),
    ({"REPLICA": "default"}, "other than HOT"),
    ({"WINDOW": 0}, "WINDOW"),
    ({"PROBE_INTERVAL": -1}, "PROBE_INTERVAL"),
    ({"PROBE": "no.such.probe"}, "PROBE"),
    ({"MAX_LATENCY": 2}, "unknown key 'MAX_LATENCY'"),
])
def test_bad_throttle_setting_is_a_system_check_error(settings, throttle, message):
    with override_settings(TIERING={**settings.TIERING, "THROTTLE": throttle}):
        errors = check_throttle()
    assert [e.id for e in errors] == ["tiering.E019"] and message in errors[0].msg


def test_valid_throttle_settings_pass(settings):
    with override_settings(TIERING={**settings.TIERING, "THROTTLE": {"MAX_LATENCY_RATIO": 1.5, "REPLICA": "cold",
                                                                      "MAX_REPLICA_LAG": 2.0}}):
        assert check_throttle() == []
    assert check_throttle() == []
