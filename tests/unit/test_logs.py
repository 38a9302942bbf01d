import logging

from appliance import logs


def test_mask_hides_registered_secrets_and_token_shapes() -> None:
    logs.register_secret("sup3r-secret-value")
    line = (
        "token sup3r-secret-value Authorization: Bearer eyJabc.def refresh_token=abc123def "
        '{"access_token": "zzz999"} client_secret=hunter22'
    )
    masked = logs.mask(line)
    for leaked in ("sup3r-secret-value", "eyJabc.def", "abc123def", "zzz999", "hunter22"):
        assert leaked not in masked
    assert masked.count("***") >= 5


def test_context_tags_records(caplog) -> None:
    logs.setup()
    record_filter = logs._ContextFilter()
    with logs.context(org_id="org-1", run_id="run-9"):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
        record_filter.filter(record)
    assert (record.org_id, record.run_id) == ("org-1", "run-9")
    formatted = logs.MaskingFormatter("%(message)s").format(record)
    assert formatted == "[org=org-1 run=run-9] hello"
