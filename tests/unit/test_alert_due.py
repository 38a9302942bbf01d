"""Which grants' refresh tokens near Xero's 60-day expiry for unused tokens: the daemon's pure decision."""

from __future__ import annotations

from appliance.daemon.scheduler import REFRESH_TOKEN_LIFETIME_DAYS, AgeingToken, ageing_refresh_tokens

DAY = 86_400.0
NOW = 1_790_000_000.0


def test_only_tokens_older_than_the_warning_age_are_due_oldest_first() -> None:
    saved = {
        "fresh": NOW - 3 * DAY,
        "almost": NOW - 49.9 * DAY,
        "old": NOW - 55 * DAY,
        "older": NOW - 58 * DAY,
    }
    due = ageing_refresh_tokens(saved, now=NOW, warn_days=50)
    assert [token.grant_id for token in due] == ["older", "old"]
    assert due[1] == AgeingToken("old", NOW - 55 * DAY, NOW + 5 * DAY)


def test_the_expiry_is_sixty_days_after_the_token_was_saved() -> None:
    assert REFRESH_TOKEN_LIFETIME_DAYS == 60
    (token,) = ageing_refresh_tokens({"g": NOW - 51 * DAY}, now=NOW, warn_days=50)
    assert token.expires_at - token.saved_at == 60 * DAY


def test_the_boundary_is_not_yet_due_and_an_expired_token_still_is() -> None:
    assert ageing_refresh_tokens({"g": NOW - 50 * DAY}, now=NOW, warn_days=50) == []
    assert [t.grant_id for t in ageing_refresh_tokens({"g": NOW - 50 * DAY - 1}, now=NOW, warn_days=50)] == ["g"]
    (expired,) = ageing_refresh_tokens({"gone": NOW - 70 * DAY}, now=NOW, warn_days=50)
    assert expired.expires_at < NOW


def test_the_warning_age_is_a_setting() -> None:
    saved = {"g": NOW - 20 * DAY}
    assert ageing_refresh_tokens(saved, now=NOW, warn_days=50) == []
    assert [t.grant_id for t in ageing_refresh_tokens(saved, now=NOW, warn_days=14)] == ["g"]
    assert ageing_refresh_tokens({}, now=NOW, warn_days=50) == []
