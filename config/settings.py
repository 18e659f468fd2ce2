"""Daemon settings: environment variables (``CANARY_*``) over an optional YAML file.

A daemon that starts with a bad setting and fails an hour later, mid-rollout, is worse than
one that refuses to start: every setting is checked at start and a bad one stops the daemon
with its name and the fix.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from config.errors import Problem, SpecError, render_path
from config.targets import Region


class TokenSpec(BaseModel):
    """An API token, stored only as the SHA-256 of its secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the token")
    role: Literal["read", "deploy", "operate"]


class SlackGrant(BaseModel):
    """A Slack user (U...) or user group (S...) and the role its members act with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slack: str = Field(pattern=r"^[US][A-Z0-9]{2,20}$", description="U... user or S... group id")
    role: Literal["read", "deploy", "operate"]


class CoreSettings(BaseSettings):
    """The daemon's own settings; each metric provider adds its own (``Settings``)."""

    model_config = SettingsConfigDict(env_prefix="CANARY_", extra="forbid", frozen=True)

    listen: str = Field(default="127.0.0.1:8080", description="host:port of the HTTP API")
    store_url: str = Field(
        default="sqlite:///./canary.db",
        description="where rollouts live: sqlite:///path (one daemon) or "
        "postgresql://user:password@host/db (several replicas)",
    )
    lease_ttl: float = Field(
        default=15.0,
        description="PostgreSQL: seconds a replica's lease on a rollout lasts without renewal "
        "(how long a dead replica's rollouts wait for another)",
    )
    lease_renew: float = Field(
        default=5.0, description="PostgreSQL: seconds between a replica's lease renewals"
    )
    retention_days: float = Field(
        default=90.0,
        description="days an ended rollout and its events are kept after it ended; 0 keeps "
        "them forever",
    )
    tokens: list[TokenSpec] = Field(default_factory=list)
    allow_anonymous: bool = Field(
        default=False, description="serve the API without tokens (development only)"
    )
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    aws_endpoint_url: str | None = Field(
        default=None, description="send AWS calls here (a local emulator); default: AWS itself"
    )
    strategies: Literal["real", "memory"] = Field(
        default="real",
        description="memory: every target is in-memory, nothing real moves (tests and demos)",
    )
    scenario: Path | None = Field(
        default=None,
        description="answer every gate from this scenario file (with strategies=memory only)",
    )
    aws_region: Region | None = Field(
        default=None,
        description="AWS region of targets without one; default: boto3's (AWS_REGION, profile)",
    )
    action_retry_budget: float = Field(
        default=300.0,
        description="seconds a start, shift or promotion may keep failing with retryable "
        "errors before it counts as failed",
    )
    slack_bot_token: SecretStr | None = Field(
        default=None,
        description="Slack bot token (xoxb-...): one live message and thread per rollout",
    )
    slack_webhook_url: SecretStr | None = Field(
        default=None,
        description="Slack incoming webhook URL: one message per event (instead of the bot "
        "token); never logged",
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None,
        description="the Slack app's signing secret: turns on the Promote / Pause / Abort "
        "buttons (bot mode); never logged",
    )
    slack_allowlist: list[SlackGrant] = Field(
        default_factory=list,
        description="who may press the buttons: Slack user or user group ids with a role",
    )
    slack_channel: str | None = Field(
        default=None,
        description="channel of rollouts whose spec names none (#name or id); needed with "
        "the bot token",
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/",
        description="Slack Web API base URL (a proxy or a test double)",
    )
    slack_rollback_mention: str | None = Field(
        default=None,
        description="who a failing rollback pings: a user id (U...) or user group id (S...)",
    )

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xoxb-"):
            raise ValueError(
                "is not a Slack bot token (they start with xoxb-); copy the Bot User OAuth "
                "Token from the app's OAuth & Permissions page"
            )
        return value

    @field_validator("slack_channel")
    @classmethod
    def _slack_channel(cls, value: str | None) -> str | None:
        from config.spec import SLACK_CHANNEL

        if value is not None and not re.match(SLACK_CHANNEL, value):
            raise ValueError(
                f"{value!r} is not a Slack channel; give #name (lower case, digits, - and _) "
                "or a channel id such as C0123ABCD"
            )
        return value

    @field_validator("slack_webhook_url")
    @classmethod
    def _webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError(
                "is not a URL; copy the Webhook URL (https://hooks.slack.com/services/...) "
                "from the app's Incoming Webhooks page"
            )
        return value

    @model_validator(mode="after")
    def _one_slack_mode(self) -> CoreSettings:
        found: list[tuple[str, str]] = []
        if self.slack_bot_token is not None and self.slack_webhook_url is not None:
            found.append(
                (
                    "slack_webhook_url",
                    "set together with CANARY_SLACK_BOT_TOKEN; canary posts one way: unset "
                    "one (the bot token gives one live message per rollout)",
                )
            )
        elif self.slack_bot_token is not None and self.slack_channel is None:
            found.append(("slack_channel", "required with CANARY_SLACK_BOT_TOKEN; e.g. #deploys"))
        elif self.slack_webhook_url is not None and self.slack_channel is not None:
            found.append(
                (
                    "slack_channel",
                    "an incoming webhook posts to the channel it was made for; unset "
                    "CANARY_SLACK_CHANNEL (or use CANARY_SLACK_BOT_TOKEN instead of the webhook)",
                )
            )
        if self.slack_signing_secret is not None and self.slack_bot_token is None:
            found.append(
                (
                    "slack_signing_secret",
                    "buttons live on the bot's message: set CANARY_SLACK_BOT_TOKEN too, or "
                    "unset CANARY_SLACK_SIGNING_SECRET",
                )
            )
        if self.slack_signing_secret is not None and not self.slack_allowlist:
            found.append(
                (
                    "slack_allowlist",
                    "required with CANARY_SLACK_SIGNING_SECRET (nobody could press a button); "
                    'e.g. [{"slack": "U0123ABCD", "role": "operate"}]',
                )
            )
        if self.slack_allowlist and self.slack_signing_secret is None:
            found.append(
                (
                    "slack_allowlist",
                    "is set but CANARY_SLACK_SIGNING_SECRET is not: without it there are no "
                    "buttons; set it (Basic Information > Signing Secret) or unset the allowlist",
                )
            )
        if found:
            raise PydanticCustomError(
                "setting_problems", "; ".join(m for _, m in found), {"problems": found}
            )
        return self

    @field_validator("slack_api_url")
    @classmethod
    def _slack_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"{value!r} is not an http(s) URL; e.g. https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @field_validator("slack_rollback_mention")
    @classmethod
    def _mention(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[US][A-Z0-9]{2,20}$", value):
            raise ValueError(
                f"{value!r} is not a Slack user id (U0123ABCD) or user group id (S0123ABCD)"
            )
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not host:port; e.g. 127.0.0.1:8080 or 0.0.0.0:8080")
        return value

    @field_validator("store_url")
    @classmethod
    def _store_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "memory://", "postgresql://")):
            shown = re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:***@", value)  # never a password
            raise ValueError(
                f"{shown!r} is not a supported store; use sqlite:///path/to/canary.db (one "
                "daemon), postgresql://user:password@host:5432/dbname (several replicas), "
                "or memory:// for throwaway runs"
            )
        return value

    @field_validator("lease_ttl", "lease_renew")
    @classmethod
    def _lease_seconds(cls, value: float) -> float:
        if not 0.1 <= value <= 3600:
            raise ValueError(f"{value:g} is not a number of seconds from 0.1 to 3600; e.g. 15")
        return value

    @field_validator("retention_days")
    @classmethod
    def _retention(cls, value: float) -> float:
        if not 0 <= value <= 36500:
            raise ValueError(
                f"{value:g} is not a number of days from 0 (keep forever) to 36500; e.g. 90"
            )
        return value

    @model_validator(mode="after")
    def _renew_within_ttl(self) -> CoreSettings:
        if self.lease_renew * 2 > self.lease_ttl:
            raise PydanticCustomError(
                "setting_problems",
                "renewal too slow for the lease",
                {
                    "problems": [
                        (
                            "lease_renew",
                            f"{self.lease_renew:g}s is more than half of CANARY_LEASE_TTL "
                            f"({self.lease_ttl:g}s): one late renewal would lose every lease; "
                            "renew at most every TTL/2 (the defaults are 15 and 5)",
                        )
                    ]
                },
            )
        return self

    @field_validator("scenario")
    @classmethod
    def _scenario_only_in_memory(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and info.data.get("strategies") != "memory":
            raise ValueError(
                "scripted metrics are for in-memory targets only; set CANARY_STRATEGIES=memory "
                "too, or unset CANARY_SCENARIO"
            )
        return value

    @field_validator("action_retry_budget")
    @classmethod
    def _budget(cls, value: float) -> float:
        if not 0 <= value <= 86400:
            raise ValueError(
                f"{value:g} is not a number of seconds from 0 to 86400 (a day); e.g. 300"
            )
        return value

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file (passed as init values).
        return (env_settings, init_settings)


def _compose() -> type[CoreSettings]:
    """The core settings and every provider's (``CANARY_PROMETHEUS_*``), as one class.

    Each provider declares its settings beside its code (``analysis.kind.ProviderKind.
    settings``); they are checked at start like the others and named by their variable.
    """
    from analysis.registry import PROVIDERS

    groups = tuple(p.settings for p in PROVIDERS if p.settings is not None)
    return type("Settings", (CoreSettings, *groups), {"__module__": __name__})


if TYPE_CHECKING:
    Settings = CoreSettings
else:
    Settings = _compose()


def load_settings(config_file: str | Path | None = None) -> Settings:
    """Settings from the environment over ``config_file``; ``SpecError`` names each bad one."""
    file_values: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SpecError([Problem("--config", f"cannot read {path}: {exc.strerror}")]) from None
        except yaml.YAMLError as exc:
            raise SpecError([Problem("--config", f"{path} is not valid YAML: {exc}")]) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise SpecError([Problem("--config", f"{path} must hold a mapping of settings")])
        file_values = loaded
    unknown = unknown_environment(os.environ)
    if unknown:
        raise SpecError(unknown)
    try:
        return Settings(**file_values)
    except SettingsError as exc:
        # Raised for a value that is not JSON where JSON is expected (lists, mappings).
        field = str(exc).split('"')[1] if '"' in str(exc) else "?"
        example = json.dumps([{"name": "ci", "sha256": "<64 hex digits>", "role": "deploy"}])
        if field == "slack_allowlist":
            example = json.dumps([{"slack": "U0123ABCD", "role": "operate"}])
        raise SpecError(
            [Problem(f"CANARY_{field.upper()}", f"is not valid JSON; e.g. {example}")]
        ) from None
    except ValidationError as exc:
        found = []
        for error in exc.errors(include_url=False):
            if error["type"] == "setting_problems":  # rules across several settings
                for name, message in (error.get("ctx") or {})["problems"]:
                    found.append(Problem(f"CANARY_{name.upper()}", message))
                continue
            field = render_path(error["loc"])
            top = str(error["loc"][0]) if error["loc"] else ""
            env_name = f"CANARY_{top.upper()}"
            if top in file_values and env_name not in os.environ:
                name = f"{config_file}: {field}"  # it came from the file: name it as written
            else:
                name = env_name + (field[len(top) :] if field != top else "")
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "missing":
                message = "required field is missing"
            elif error["type"] == "extra_forbidden":
                message = f"unknown setting {top!r}; see the README's configuration table"
            found.append(Problem(name, message))
        raise SpecError(found) from None


# CANARY_* variables read by other parts (the CLI as an API client, the test suite), not
# by the daemon: never reported as unknown.
CLIENT_VARIABLES = frozenset(
    {
        "CANARY_URL",
        "CANARY_TOKEN",
        "CANARY_DEBUG",
        "CANARY_REQUIRE_SERVICES",
        "CANARY_K8S_BIN",  # the test suite's Kubernetes server binaries (.ci/run sets it)
        "CANARY_IT_K8S",  # opt-in tests against a real cluster
    }
)


def unknown_environment(environ: Mapping[str, str]) -> list[Problem]:
    """``CANARY_*`` variables that are no setting: a typo would otherwise silently be ignored
    (a misspelled CANARY_STORE_URL would run the daemon on the default file)."""
    known = {f"CANARY_{name.upper()}" for name in Settings.model_fields}
    found = []
    for variable in sorted(environ):
        if not variable.startswith("CANARY_") or variable in known | CLIENT_VARIABLES:
            continue
        close = difflib.get_close_matches(variable, sorted(known), n=1)
        hint = f"did you mean {close[0]}?" if close else "see the README's configuration table"
        found.append(Problem(variable, f"is not a canary setting; {hint}"))
    return found
