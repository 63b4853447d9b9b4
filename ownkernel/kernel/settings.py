"""Where the kernel's node lives and how it is configured.

Precedence, lowest first: built-in defaults, `<home>/config.json` (all
profiles), `<profile>/config.json` (one profile), then `OWNKERNEL_*`
environment variables. JSON rather than TOML because `tomllib` only arrived
in Python 3.11 and we support 3.10 without extra dependencies.

Several kernels on one machine: a profile is used by one process at a time
(the store holds an OS lock on it). When the profile was not chosen
explicitly and is busy, the kernel moves on to `default-2`, `default-3`, …
See docs/kernel.md.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_PROFILE",
    "MAX_PROFILES",
    "Settings",
    "SettingsError",
    "default_home",
    "load_settings",
    "profile_candidates",
]

DEFAULT_PROFILE = "default"
# Enough for a classroom of kernels on one laptop; beyond that something is
# wrong (leaked processes) and a clear error beats a profile-2731.
MAX_PROFILES = 32
CONFIG_NAME = "config.json"


class SettingsError(ValueError):
    """A setting or config file is unusable; the message says which and why."""


@dataclass(frozen=True)
class Settings:
    home: Path
    profile: str = DEFAULT_PROFILE
    # True when the user named the profile (env var, config, --profile): then
    # we never silently fall back to another one.
    explicit_profile: bool = False
    name: str | None = None
    listen: list[str] | None = None  # None: the Node's own default
    bootstrap: list[str] = field(default_factory=list)
    relay: bool = False
    sources: tuple[str, ...] = ()  # config files that were read, for %own status

    def profile_dir(self, profile: str | None = None) -> Path:
        return resolve_profile(self.home, profile or self.profile)


def default_home() -> Path:
    """`OWNKERNEL_HOME`, else the platform's user data dir (~/.local/share/ownkernel)."""
    return _home_from(os.environ.get("OWNKERNEL_HOME"))


def _home_from(value: str | None) -> Path:
    if value:
        return Path(value).expanduser()
    import platformdirs  # imported late: only needed when no home is given

    return Path(platformdirs.user_data_dir("ownkernel", appauthor=False))


def resolve_profile(home: Path, profile: str) -> Path:
    """A profile is a name under home, or a path (anything with a separator or ~)."""
    if os.sep in profile or (os.altsep and os.altsep in profile) or profile.startswith("~"):
        return Path(profile).expanduser().absolute()
    if profile in ("", ".", "..") or profile.startswith("."):
        raise SettingsError(f"invalid profile name {profile!r}")
    return home / profile


def _split_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        # Comma or whitespace separated, so a shell variable needs no quoting games.
        return [p for p in value.replace(",", " ").split() if p]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise SettingsError(f"{what}: expected a string or a list of strings, got {value!r}")


def _truthy(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{what}: expected true/false, got {value!r}")


def _read_config(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SettingsError(f"{path} is not valid JSON ({exc}); fix or remove it") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a JSON object at the top level")
    unknown = set(data) - {"profile", "name", "listen", "bootstrap", "relay"}
    if unknown:
        raise SettingsError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    return data


def _apply(settings: Settings, data: dict[str, Any], where: str) -> Settings:
    changes: dict[str, Any] = {}
    if data.get("profile") is not None:
        if not isinstance(data["profile"], str):
            raise SettingsError(f"{where}: profile must be a string")
        changes.update(profile=data["profile"], explicit_profile=True)
    if data.get("name") is not None:
        changes["name"] = str(data["name"])
    if "listen" in data:
        listen = data["listen"]
        # "none"/[]: don't listen at all (a purely local node); None keeps the default.
        if listen is not None:
            items = _split_list(listen, f"{where}: listen")
            changes["listen"] = [] if items in (["none"], ["off"]) else items
    if data.get("bootstrap") is not None:
        changes["bootstrap"] = _split_list(data["bootstrap"], f"{where}: bootstrap")
    if data.get("relay") is not None:
        changes["relay"] = _truthy(data["relay"], f"{where}: relay")
    return replace(settings, **changes)


def load_settings(
    environ: dict[str, str] | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Resolve settings from defaults, config files, env vars, then explicit overrides."""
    env = os.environ if environ is None else environ
    home = _home_from(env.get("OWNKERNEL_HOME"))
    settings = Settings(home=home.absolute())
    sources: list[str] = []

    from_env: dict[str, Any] = {}
    for key in ("profile", "name", "listen", "bootstrap", "relay"):
        value = env.get(f"OWNKERNEL_{key.upper()}")
        if value is not None and value != "":
            from_env[key] = value
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}

    home_cfg = _read_config(settings.home / CONFIG_NAME)
    if home_cfg is not None:
        settings = _apply(settings, home_cfg, str(settings.home / CONFIG_NAME))
        sources.append(str(settings.home / CONFIG_NAME))
    # The profile must be known before its own config file can be read.
    profile = overrides.get("profile") or from_env.get("profile") or settings.profile
    profile_cfg_path = resolve_profile(settings.home, profile) / CONFIG_NAME
    profile_cfg = _read_config(profile_cfg_path)
    if profile_cfg is not None:
        profile_cfg.pop("profile", None)  # a profile can't redirect to another one
        settings = _apply(settings, profile_cfg, str(profile_cfg_path))
        sources.append(str(profile_cfg_path))
    settings = _apply(settings, from_env, "environment (OWNKERNEL_*)")
    settings = _apply(settings, overrides, "command line")
    resolve_profile(settings.home, settings.profile)  # validate the name early
    return replace(settings, sources=tuple(sources))


def profile_candidates(settings: Settings) -> list[str]:
    """Profiles to try in order: the chosen one, then numbered siblings if implicit."""
    if settings.explicit_profile:
        return [settings.profile]
    return [settings.profile] + [f"{settings.profile}-{i}" for i in range(2, MAX_PROFILES + 1)]
