"""The generated example settings file and line-precise checking."""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

import pytest

from appliance import settings
from appliance.config_file import Problem, check, check_text, index_keys, render_example

REPOSITORY = Path(__file__).resolve().parents[2]
EXAMPLE = REPOSITORY / "config" / "strongroom.example.toml"


def test_committed_example_is_the_generated_one() -> None:
    assert EXAMPLE.read_text() == render_example(), (
        "config/strongroom.example.toml is stale: run `strongroom config example > config/strongroom.example.toml`"
    )


def test_example_names_every_setting() -> None:
    live = tomllib.loads(render_example(commented=False))

    def walk(model: type[settings.BaseModel], data: dict[str, object], where: str) -> None:
        for name, field in model.model_fields.items():
            assert name in data, f"{where}{name} is missing from the example"
            value = data[name]
            annotation = field.annotation
            nested = [
                arg
                for arg in (annotation, *getattr(annotation, "__args__", ()))
                if isinstance(arg, type) and issubclass(arg, settings.BaseModel)
            ]
            is_mapping = getattr(annotation, "__origin__", None) is dict
            if nested and is_mapping and isinstance(value, dict):
                for key, entry in value.items():  # a map of tables, e.g. [regions.au]
                    walk(nested[0], entry, f"{where}{name}.{key}.")
            elif nested and isinstance(value, dict):
                walk(nested[0], value, f"{where}{name}.")
            elif nested and isinstance(value, list):
                walk(nested[0], value[0], f"{where}{name}[0].")

    walk(settings.Settings, live, "")


def test_uncommented_example_is_valid_settings(tmp_path: Path) -> None:
    path = tmp_path / "live.toml"
    path.write_text(render_example(commented=False))
    assert check(path) == []
    loaded = settings.load(path)
    assert loaded.data_dir == Path("/var/lib/strongroom")
    secret = loaded.app().client_secret
    assert secret is not None
    assert secret.credential == "xero-client-secret"


def test_commented_example_loads_as_defaults(tmp_path: Path) -> None:
    assert check_text(render_example()) == []
    assert tomllib.loads(render_example()) == {}


BROKEN = textwrap.dedent(
    """\
    # a settings file with one mistake of each kind
    dat_dir = "/srv/strongroom"

    [limits]
    tenant_per_minute = "lots"

    [[apps]]
    client_id = "first"

    [[apps]]
    name = "second"
    [apps.client_secret]
    fiel = "/etc/strongroom/keys/secret"

    [retention]
    scopes = [
      "daily = 1",
    ]
    note = '''
    weekly = 2
    '''
    monthly = -x
    """
)


def test_problems_point_at_their_lines() -> None:
    problems = check_text(BROKEN.replace("monthly = -x\n", ""))
    assert [(p.line, p.column, p.key) for p in problems] == [
        (2, 1, "dat_dir"),
        (5, 21, "limits.tenant_per_minute"),
        (10, 1, "apps[1].client_id"),  # missing: reported at its [[apps]] header
        (13, 1, "apps[1].client_secret.fiel"),
        (16, 1, "retention.scopes"),  # continuation lines of the array are not mistaken for keys
        (19, 1, "retention.note"),
    ]
    assert problems[0].message == "unknown setting `dat_dir` (did you mean `data_dir`?)"
    assert "valid integer" in problems[1].message
    assert problems[2].message == "`apps[1].client_id` is required"
    assert "did you mean `file`?" in problems[3].message


def test_syntax_errors_carry_tomllib_position() -> None:
    assert check_text(BROKEN) == [Problem(22, 11, "Invalid value")]


def test_check_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRONGROOM_LIMITS__TENANT_PER_MINUTE", "not a number")
    assert check_text("[limits]\ntenant_per_minute = 30\n") == []


def test_index_keys_handles_quoted_and_dotted_keys() -> None:
    positions = index_keys('[xero]\n  "api_url" = "x"\nlimits.max_retries = 2\n[[apps]]\n[[apps]]\nname = "b"\n')
    assert positions[("xero", "api_url")].line == 2
    assert positions[("xero", "api_url")].column == 3
    assert positions[("xero", "api_url")].value_column == 15
    assert positions[("xero", "limits", "max_retries")].line == 3
    assert positions[("apps", 1, "name")].line == 6
    assert positions[("apps", 0)].line == 4


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    from appliance.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot read"):
        check(tmp_path / "absent.toml")


def test_rendering_handles_the_shapes_settings_grow_into() -> None:
    """Regions keyed by name, times, durations, enums: what the daemon and replication settings add."""
    import datetime as dt
    import enum
    from typing import Literal

    from pydantic import BaseModel, ConfigDict, Field

    class Kind(enum.Enum):
        s3 = "s3"
        sftp = "sftp"

    class Region(BaseModel):
        model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
        repository: str = Field(examples=["s3:https://s3.example/bucket"])
        """Where the region's copies go."""
        kind: Kind = Kind.s3
        password: settings.SecretRef | None = None

    class Grown(BaseModel):
        model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
        window_start: dt.time = dt.time(1, 30)
        """Start of the night window."""
        stale_after: dt.timedelta = dt.timedelta(hours=36)
        mode: Literal["fast", "careful"] = "careful"
        countries: list[str] | None = None
        regions: dict[str, Region] = Field(default_factory=dict, examples=[{"au": {}}])
        """Offsite repositories by region."""

    live = render_example(commented=False, model=Grown)
    assert "[regions.au]" in live
    assert "[regions.au.password]" in live
    assert "# Start of the night window." in live
    parsed = Grown.model_validate(tomllib.loads(live))
    assert parsed.window_start == dt.time(1, 30)
    assert parsed.stale_after == dt.timedelta(hours=36)
    assert parsed.regions["au"].repository == "s3:https://s3.example/bucket"
    assert all(line.startswith("#") or not line for line in render_example(model=Grown).splitlines())
