"""The exit-code table is a contract with scripts and systemd: pin it."""

from appliance import errors
from appliance.errors import ExitCode


def test_exit_code_table_is_pinned() -> None:
    assert {code.name: int(code) for code in ExitCode} == {
        "OK": 0,
        "FAILURE": 1,
        "USAGE": 2,
        "PARTIAL": 3,
        "XERO_UNAVAILABLE": 4,
        "LOCKED": 5,
        "INTERRUPTED": 130,
    }


def test_each_error_family_maps_to_its_exit_code() -> None:
    cases = {
        errors.ConfigError("x"): 2,
        errors.PartialFailure("x"): 3,
        errors.ConsentRequired("x"): 4,
        errors.XeroUnavailable("x"): 4,
        errors.RepositoryLocked("x"): 5,
        errors.OrganisationLocked("x"): 5,
        errors.ResticCancelled("x"): 130,
        errors.XeroRejected("x", status=400): 1,
        errors.ResticFailed("x"): 1,
    }
    for error, code in cases.items():
        assert errors.exit_code_for(error) == code, type(error).__name__
    assert errors.exit_code_for(KeyboardInterrupt()) == 130
    assert errors.exit_code_for(ValueError()) == 1


def test_rate_limited_carries_retry_after_and_limit() -> None:
    error = errors.DayBudgetExhausted("spent", retry_after=3600.0, limit="day")
    assert isinstance(error, errors.XeroRateLimited)
    assert (error.retry_after, error.limit) == (3600.0, "day")
    assert "hint" in str(errors.StrongroomError("m", hint="do x"))
