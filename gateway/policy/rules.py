"""The policy file: a region's privacy protocol in machine-readable form.

Loaded once at start (TOML -> validated, frozen `Policy`); an empty or
inconsistent file is refused with the rule that is wrong named, so a hub never
runs on a policy it misread. Deny by default: anything the file does not allow is
refused.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from gateway.errors import ConfigError

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,62}$")]
DomainName = Literal["zorg", "straf", "bestuur", "jeugd", "sociaal"]
Art6 = Literal["a", "b", "c", "d", "e", "f"]
Secrecy = Literal["consent", "statutory-duty", "conflict-of-duties"]
# art. 9(2) letters, or "art10" for criminal data
Special = Literal["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "art10"]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategoryRule(_Rule):
    description: str = ""
    special: bool = False
    gdpr_special: tuple[Special, ...] = ()
    gdpr_art6: Annotated[tuple[Art6, ...], Field(min_length=1)]
    secrecy: Annotated[tuple[Secrecy, ...], Field(min_length=1)]
    manual_release: bool = True


class ThemeRule(_Rule):
    description: str = ""
    dat_required: bool = True
    deadline_hours: Annotated[int, Field(ge=1, le=24 * 90)] = 72
    requesters: dict[DomainName, tuple[Name, ...]]


class Policy(_Rule):
    version: Literal[1]
    reason_codes: Annotated[tuple[Name, ...], Field(min_length=1)]
    categories: dict[Name, CategoryRule]
    themes: dict[Name, ThemeRule]

    def check_consistency(self) -> None:
        """Cross-references the schema cannot express; raises ConfigError naming the rule."""
        if not self.categories:
            raise ConfigError("policy: no [categories]: an empty policy would deny everything")
        if not self.themes:
            raise ConfigError("policy: no [themes]: an empty policy would deny everything")
        for name, rule in self.categories.items():
            if rule.special and not rule.gdpr_special:
                raise ConfigError(
                    f"policy: categories.{name}: a special category needs gdpr_special"
                )
            if not rule.special and rule.gdpr_special:
                raise ConfigError(
                    f"policy: categories.{name}: gdpr_special is only for special categories"
                )
        for tname, theme in self.themes.items():
            if not theme.requesters:
                raise ConfigError(f"policy: themes.{tname}.requesters is empty")
            for domain, cats in theme.requesters.items():
                for cat in cats:
                    if cat not in self.categories:
                        raise ConfigError(
                            f"policy: themes.{tname}.requesters.{domain}: unknown category {cat!r}"
                        )


def parse_policy(text: str, source: str = "policy") -> Policy:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    if not raw:
        raise ConfigError(f"{source}: the policy file is empty")
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from exc
    policy.check_consistency()
    return policy


def load_policy(path: Path) -> Policy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {path}: {exc}") from exc
    return parse_policy(text, str(path))


def default_policy_text() -> str:
    return resources.files("gateway.policy").joinpath("default_policy.toml").read_text("utf-8")
