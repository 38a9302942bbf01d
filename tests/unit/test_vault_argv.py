"""restic argv builders (pure), version gating, and the runner's pure decisions (exit codes, env, masking)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.errors import (
    ConfigError,
    IncompleteSnapshot,
    RepositoryLocked,
    RepositoryMissing,
    ResticCancelled,
    ResticFailed,
    WrongPassword,
)
from appliance.vault import argv
from appliance.vault.argv import Feature, Version
from appliance.vault.runner import Endpoint, build_env, classify, mask_location

V14 = Version(0, 14, 0)
V16 = Version(0, 16, 4)
V17 = Version(0, 17, 0)
V171 = Version(0, 17, 1)
V18 = Version(0, 18, 0)


# --- versions --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("banner", "expected"),
    [
        ("restic 0.14.0 compiled with go1.19.8 on linux/amd64\n", Version(0, 14, 0)),
        ("restic 0.18.0 compiled with go1.24.4 on linux/amd64", Version(0, 18, 0)),
        ("restic 0.17.1-dev (compiled manually) compiled with go1.22 on linux/arm64", Version(0, 17, 1)),
        ("restic 0.9 compiled with go1.10", Version(0, 9, 0)),
    ],
)
def test_version_parses_restic_banners(banner: str, expected: Version) -> None:
    assert Version.parse(banner) == expected


@pytest.mark.parametrize("banner", ["", "rustic 0.5.0", "borg 1.2.4"])
def test_version_rejects_other_programs(banner: str) -> None:
    with pytest.raises(ValueError, match="not a restic version"):
        Version.parse(banner)


def test_versions_order_numerically() -> None:
    assert Version(0, 9, 0) < Version(0, 14, 0) < Version(0, 17, 1) < Version(1, 0, 0)
    assert str(Version(0, 14, 0)) == "0.14.0"


def test_feature_table_pins_the_releases_we_rely_on() -> None:
    assert Feature.REPOSITORY_V2.available(V14)
    assert not Feature.FULL_SNAPSHOT_ID.available(V14)
    assert Feature.FULL_SNAPSHOT_ID.available(Version(0, 15, 0))
    assert not Feature.EXIT_CODES_10_11.available(V16)
    assert Feature.EXIT_CODES_10_11.available(V17)
    assert not Feature.EXIT_CODE_12.available(V17)
    assert Feature.EXIT_CODE_12.available(V171)
    assert not Feature.CLEAN_SIGTERM.available(V14)


# --- secrets never on argv ---------------------------------------------------------------------------------------


def test_secret_options_point_at_inherited_descriptors_only() -> None:
    options = argv.secret_options(repository_fd=5, password_fd=6)
    assert options == ("--repository-file", "/dev/fd/5", "--password-file", "/dev/fd/6")
    both = argv.secret_options(repository_fd=5, password_fd=6, from_repository_fd=7, from_password_fd=8)
    assert both[4:] == ("--from-repository-file", "/dev/fd/7", "--from-password-file", "/dev/fd/8")


def test_secret_options_refuse_half_a_source_repository() -> None:
    with pytest.raises(ValueError, match="both"):
        argv.secret_options(repository_fd=5, password_fd=6, from_repository_fd=7)


# --- builders ------------------------------------------------------------------------------------------------------


def test_init_uses_format_2_and_json_only_where_supported() -> None:
    assert argv.init(V14) == ("init", "--repository-version", "2")
    assert argv.init(V14, copy_chunker_params=True) == ("init", "--repository-version", "2", "--copy-chunker-params")
    assert argv.init(V18)[-1] == "--json"


def test_backup_argv_on_014() -> None:
    assert argv.backup(V14, host="org-abc", tags=["org:abc", "run:42"]) == (
        "backup",
        "--json",
        "--host",
        "org-abc",
        "--compression",
        "auto",
        "--tag",
        "org:abc,run:42",
        "--",
        ".",
    )


def test_backup_drops_flags_014_does_not_know() -> None:
    old = argv.backup(V14, host="h", skip_if_unchanged=True, retry_lock_seconds=60)
    assert "--skip-if-unchanged" not in old
    assert "--retry-lock" not in old
    new = argv.backup(V18, host="h", skip_if_unchanged=True, retry_lock_seconds=60)
    assert "--skip-if-unchanged" in new
    assert new[new.index("--retry-lock") + 1] == "60s"
    assert argv.backup(V16, host="h", retry_lock_seconds=5).count("--retry-lock") == 1


def test_backup_time_is_written_in_the_local_zone() -> None:
    naive = datetime(2025, 6, 3, 2, 0, 0)
    built = argv.backup(V14, host="h", time=naive)
    assert built[built.index("--time") + 1] == "2025-06-03 02:00:00"
    aware = datetime(2025, 6, 3, 2, 0, 0, tzinfo=UTC)
    expected = aware.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    built = argv.backup(V14, host="h", time=aware)
    assert built[built.index("--time") + 1] == expected


@pytest.mark.parametrize("tags", [["a,b"], [""]])
def test_backup_rejects_tags_restic_would_split(tags: list[str]) -> None:
    with pytest.raises(ValueError, match="tags"):
        argv.backup(V14, host="h", tags=tags)


@pytest.mark.parametrize("host", ["", "--repo=/elsewhere"])
def test_backup_rejects_hosts_that_are_not_hosts(host: str) -> None:
    with pytest.raises(ValueError, match="host"):
        argv.backup(V14, host=host)


def test_snapshots_filters_by_host_and_all_tags() -> None:
    assert argv.snapshots(V14, host="org-1", tags=["org:1", "daily"]) == (
        "snapshots",
        "--json",
        "--host",
        "org-1",
        "--tag",
        "org:1,daily",
    )
    assert argv.snapshots(V14, snapshot_ids=["0123abcd"])[-1] == "0123abcd"


def test_forget_policy_dry_run_needs_no_lock_and_never_prunes() -> None:
    built = argv.forget(V14, keep_flags=("--keep-daily", "7"), host="org-1", dry_run=True)
    assert built == ("--no-lock", "forget", "--json", "--keep-daily", "7", "--host", "org-1", "--dry-run")
    assert "--prune" not in built


def test_forget_by_ids_puts_ids_after_a_separator() -> None:
    ids = ["a" * 64, "0123abcd"]
    assert argv.forget(V14, snapshot_ids=ids) == ("forget", "--json", "--", *ids)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"keep_flags": ("--keep-daily", "7"), "snapshot_ids": ["0123abcd"]},
        {"keep_flags": ("--prune", "x")},
        {"keep_flags": ("--keep-daily",)},
        {"snapshot_ids": ["--remove-all"]},
    ],
)
def test_forget_rejects_malformed_requests(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        argv.forget(V14, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("subset", ["1/7", "7/7", "5%", "2.5%", "50M", "1G", "100"])
def test_check_accepts_the_subset_forms_014_accepts(subset: str) -> None:
    built = argv.check(V14, read_data_subset=subset)
    assert built == ("check", "--read-data-subset", subset)


@pytest.mark.parametrize("subset", ["0/7", "8/7", "x", "-1", "5%%", "1/7 --remove-all"])
def test_check_rejects_bad_subsets(subset: str) -> None:
    with pytest.raises(ValueError, match="read-data-subset"):
        argv.check(V14, read_data_subset=subset)


def test_check_json_only_on_018() -> None:
    assert "--json" not in argv.check(V17)
    assert "--json" in argv.check(V18)


def test_read_commands_validate_ids_and_snapshot_paths() -> None:
    assert argv.ls(V14, "latest") == ("ls", "--json", "--", "latest")
    assert argv.ls(V14, "0123abcd", "/records") == ("ls", "--json", "--recursive", "--", "0123abcd", "/records")
    assert argv.dump(V14, "0123abcd", "/records/a.ndjson") == ("dump", "--", "0123abcd", "/records/a.ndjson")
    assert argv.dump(V14, "0123abcd", "/records", archive="zip")[:3] == ("dump", "--archive", "zip")
    with pytest.raises(ValueError, match="absolute"):
        argv.dump(V14, "0123abcd", "records/a.ndjson")
    with pytest.raises(ValueError, match="snapshot id"):
        argv.dump(V14, "-x", "/a")
    with pytest.raises(ValueError, match="archive"):
        argv.dump(V14, "latest", "/a", archive="7z")


def test_restore_targets_an_absolute_directory() -> None:
    assert argv.restore(V14, "0123abcd", target="/tmp/out", include=["/records"]) == (
        "restore",
        "--target",
        "/tmp/out",
        "--include",
        "/records",
        "--",
        "0123abcd",
    )
    with pytest.raises(ValueError, match="absolute"):
        argv.restore(V14, "0123abcd", target="out")


def test_the_rest_of_the_catalogue() -> None:
    assert argv.version_cmd() == ("version",)
    assert argv.cat_config(V14) == ("cat", "config")
    assert argv.stats(V14) == ("stats", "--json", "--mode", "raw-data")
    assert argv.unlock(V14) == ("unlock",)
    assert argv.unlock(V14, remove_all=True) == ("unlock", "--remove-all")
    assert argv.prune(V14) == ("prune", "--compression", "auto")
    assert argv.prune(V14, max_unused="10%")[-2:] == ("--max-unused", "10%")
    assert argv.copy(V14, host="org-1") == ("copy", "--compression", "auto", "--host", "org-1")
    with pytest.raises(ValueError, match="stats mode"):
        argv.stats(V14, mode="everything")


# --- the runner's pure parts: exit codes, environment, masking -----------------------------------------------------

LOCKED_014 = (
    "unable to create lock in backend: repository is already locked by PID 4242 on box by root (UID 0, GID 0)\n"
    "lock was created at 2026-11-25 01:00:00 (1.2s ago)"
)
MISSING_014 = (
    "Fatal: unable to open config file: stat /srv/repo/config: no such file or directory\n"
    "Is there a repository at the following location?\n/srv/repo"
)


@pytest.mark.parametrize(
    ("command", "code", "stderr", "version", "expected"),
    [
        ("snapshots", 1, LOCKED_014, V14, RepositoryLocked),
        ("snapshots", 1, "Fatal: wrong password or no key found", V14, WrongPassword),
        ("snapshots", 1, MISSING_014, V14, RepositoryMissing),
        # a REST server's 401 looks like a missing repository on 0.14: it must not invite `init`
        (
            "snapshots",
            1,
            "Fatal: unable to open config file: unexpected HTTP response (401): 401 Unauthorized\n"
            "Is there a repository at the following location?",
            V14,
            ResticFailed,
        ),
        ("snapshots", 1, "unknown flag: --retry-lock", V14, ResticFailed),
        ("backup", 3, "Warning: at least one source file could not be read", V14, IncompleteSnapshot),
        ("forget", 3, "removing snapshot failed", Version(0, 19, 0), ResticFailed),
        ("backup", 130, "signal interrupt received, cleaning up", V14, ResticCancelled),
        ("snapshots", 10, "Fatal: repository does not exist", V18, RepositoryMissing),
        ("snapshots", 11, "Fatal: repository is already locked", V18, RepositoryLocked),
        ("snapshots", 12, "Fatal: wrong password", V18, WrongPassword),
        ("snapshots", 12, "Fatal: wrong password", V17, ResticFailed),  # 12 means nothing before 0.17.1
        ("snapshots", 10, "?", V14, ResticFailed),
        ("dump", 2, 'cannot dump file: path "/x" not found in snapshot', V14, ResticFailed),
        ("backup", -9, "", V14, ResticFailed),
    ],
)
def test_classify_maps_exit_codes_and_014_stderr(
    command: str, code: int, stderr: str, version: Version, expected: type[Exception]
) -> None:
    error = classify(command, code, stderr, version)
    assert type(error) is expected


def test_classify_success_and_our_own_interrupts() -> None:
    assert classify("backup", 0, "", V14) is None
    cancelled = classify("backup", 130, "", V14, interrupted="timed out after 5 s")
    assert isinstance(cancelled, ResticCancelled)
    assert "timed out" in str(cancelled)


def test_classify_prefers_the_json_exit_error_message() -> None:
    errors = [{"message_type": "exit_error", "code": 11, "message": "repository is already locked by PID 7"}]
    error = classify("prune", 11, '{"message_type":"exit_error"}', V18, errors=errors)
    assert isinstance(error, RepositoryLocked)
    assert error.message == "repository is already locked by PID 7"


def test_build_env_drops_inherited_restic_and_cloud_variables(tmp_path: Path) -> None:
    base = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "RESTIC_PASSWORD": "leak",
        "RESTIC_REPOSITORY": "/elsewhere",
        "AWS_SECRET_ACCESS_KEY": "leak",
        "STRONGROOM_DATA_DIR": "/x",
    }
    endpoint = Endpoint("s3:http://127.0.0.1:9/b", "pw", tmp_path / "cache", {"AWS_ACCESS_KEY_ID": "AK"})
    env = build_env([endpoint], base=base)
    assert env["PATH"] == "/usr/bin"
    assert env["RESTIC_CACHE_DIR"] == str(tmp_path / "cache")
    assert env["AWS_ACCESS_KEY_ID"] == "AK"
    assert "leak" not in env.values()
    assert not {"RESTIC_PASSWORD", "RESTIC_REPOSITORY", "STRONGROOM_DATA_DIR"} & env.keys()


def test_build_env_refuses_secrets_and_conflicting_backend_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RESTIC_PASSWORD"):
        build_env([Endpoint("/r", "pw", tmp_path, {"RESTIC_PASSWORD": "x"})], base={})
    eu = Endpoint("s3:http://a/b", "pw", tmp_path, {"AWS_ACCESS_KEY_ID": "EU"})
    us = Endpoint("s3:http://c/d", "pw", tmp_path, {"AWS_ACCESS_KEY_ID": "US"})
    with pytest.raises(ConfigError, match="rclone"):
        build_env([eu, us], base={})


def test_locations_are_masked_for_logs() -> None:
    assert mask_location("rest:https://acme:s3cret@host:8000/acme/") == "rest:https://acme:***@host:8000/acme/"
    assert mask_location("/srv/strongroom/repos/org-1") == "/srv/strongroom/repos/org-1"
    assert "s3cret" not in repr(Endpoint("rest:http://u:s3cret@h/", "pw-123456", Path("/c")))


def test_endpoint_secrets_are_masked_in_any_log_line() -> None:
    from appliance import logs

    Endpoint("rest:https://acme:url-secret-991@host/acme/", "repository-password-991", Path("/c"))
    line = logs.mask("restic said: repository-password-991 at rest:https://acme:url-secret-991@host/acme/")
    assert "repository-password-991" not in line
    assert "url-secret-991" not in line


def test_reads_go_without_restic_s_lock() -> None:
    args = argv.without_lock(argv.dump(V14, "a" * 64, "/"))
    assert args[0] == "--no-lock"
    assert args[1:] == argv.dump(V14, "a" * 64, "/")
