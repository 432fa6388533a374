"""Load a daemon's config file (YAML or INI) and read typed values with clear errors.

Every error names the file and the dotted field, so an operator can fix it without
reading code. INI files map `[section] key = value` onto the same `section.key` fields
as YAML's nested mappings (a dotted section such as `[xmpp.tls]` nests the same way);
INI values are strings and are converted on read.
"""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    """A config file is missing, unreadable or has a bad field."""

    def __init__(self, path: str, field: str, message: str) -> None:
        self.path = path
        self.field = field
        where = f"{path}: {field}: " if field else f"{path}: "
        super().__init__(where + message)


_MISSING = object()


class Settings:
    """A parsed config file; `get_*` read `section.key` fields with types and defaults."""

    def __init__(self, path: str, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def load(cls, path: str | Path) -> Settings:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise ConfigError(str(p), "", f"cannot read: {exc.strerror}") from exc
        if p.suffix in (".ini", ".conf", ".cfg"):
            parser = configparser.ConfigParser(interpolation=None)
            try:
                parser.read_string(text, source=str(p))
            except configparser.Error as exc:
                raise ConfigError(str(p), "", f"not valid INI: {exc}") from exc
            data: Any = {}
            for section in parser.sections():
                node = data
                for part in section.split("."):
                    node = node.setdefault(part, {})
                    if not isinstance(node, dict):
                        raise ConfigError(str(p), section, "is both a value and a section")
                for key, value in parser.items(section):
                    if isinstance(node.get(key), dict):
                        raise ConfigError(
                            str(p), f"{section}.{key}", "is both a value and a section"
                        )
                    node[key] = value
        else:
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(str(p), "", f"not valid YAML: {exc}") from exc
            if data is None:
                data = {}
        if not isinstance(data, dict):
            raise ConfigError(str(p), "", "top level must be a mapping of sections")
        return cls(str(p), data)

    def _raw(self, field: str, default: Any) -> Any:
        node: Any = self.data
        for part in field.split("."):
            if not isinstance(node, dict):
                raise ConfigError(self.path, field, "parent is not a mapping")
            if part not in node or node[part] is None:
                if default is _MISSING:
                    raise ConfigError(self.path, field, "is required")
                return default
            node = node[part]
        return node

    def error(self, field: str, message: str) -> ConfigError:
        return ConfigError(self.path, field, message)

    def get_str(self, field: str, default: Any = _MISSING) -> str:
        value = self._raw(field, default)
        if not isinstance(value, str):
            raise ConfigError(self.path, field, f"must be a string, got {value!r}")
        return value

    def get_int(
        self,
        field: str,
        default: Any = _MISSING,
        *,
        low: int | None = None,
        high: int | None = None,
    ) -> int:
        value = self._raw(field, default)
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ConfigError(self.path, field, f"must be an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.path, field, f"must be an integer, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(self.path, field, f"must be between {low} and {high}, got {value}")
        return value

    def get_float(self, field: str, default: Any = _MISSING) -> float:
        value = self._raw(field, default)
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(self.path, field, f"must be a number, got {value!r}") from None

    def get_bool(self, field: str, default: Any = _MISSING) -> bool:
        value = self._raw(field, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "0"):
            return False
        raise ConfigError(self.path, field, f"must be true or false, got {value!r}")

    def get_list(self, field: str, default: Any = _MISSING) -> list[str]:
        """A list of strings: a YAML list, or a comma-separated INI value."""
        value = self._raw(field, default)
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ConfigError(self.path, field, f"must be a list of strings, got {value!r}")

    def get_choice(self, field: str, choices: tuple[str, ...], default: Any = _MISSING) -> str:
        value = self.get_str(field, default)
        if value not in choices:
            raise ConfigError(
                self.path, field, f"must be one of {', '.join(choices)}, got {value!r}"
            )
        return value
