"""The variant catalog: which ISA builds exist, what each needs, how fast each is.

The catalog is data. The default below is the table of ../shared/design.md, whose
numbers come from the user's guide (../shared/seed/cpu-variant-guide.md):
fp32/int8 scores are tickets/s of its embedding benchmark (all-MiniLM-L6-v2,
single core, batch 1). The guide has no bf16 figures, only its decision tree
("mixed-precision training: avx512bf16"), so bf16-training is a rank turned
into a score (6 - rank: higher is better), ordered after the guide's
summarization table (avx512 7.8 > Graviton3 6.1 > avx2 5.2).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from flox_isa.isa.nfd_flags import ARM64_FLAGS, DEFAULT_LABEL_BLACKLIST, X86_FLAGS
from flox_isa.isa.yamltext import YamlTextError, field_name, load_one

Workload = Literal["fp32-inference", "int8-inference", "bf16-training"]
WORKLOADS: Final[tuple[Workload, ...]] = get_args(Workload)
DEFAULT_WORKLOAD: Final[Workload] = "fp32-inference"
Arch = Literal["amd64", "arm64"]
ARCHES: Final[tuple[Arch, ...]] = get_args(Arch)

FLAGS_BY_ARCH: Final[Mapping[str, frozenset[str]]] = {"amd64": X86_FLAGS, "arm64": ARM64_FLAGS}
# A variant name becomes a label value, a Deployment name suffix and an environment suffix:
# a DNS-1123 subdomain (dot-separated DNS labels) of at most 32 characters.
_DNS_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
VARIANT_NAME_PATTERN: Final = re.compile(rf"^{_DNS_LABEL}([.]{_DNS_LABEL})*$")  # [.]: CEL-safe
MAX_VARIANT_NAME: Final = 32
# A package token ends a Flox package name (`...-cpu-<token>`): no '-', '/' or spaces.
PACKAGE_TOKEN_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]{0,31}$")


class CatalogError(ValueError):
    """A catalog that cannot be used; the message names the variant and the field."""


class Variant(BaseModel):
    """One ISA-specific build of an environment."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    name: str
    arch: Arch
    flags: frozenset[str] = Field(description="NFD CPUID flag names a node must have.")
    scores: dict[Workload, Annotated[float, Field(ge=0)]]
    environment_suffix: str = ""
    # The ISA token that ends this variant's Flox package names (default: the name).
    package_token: str = ""

    @field_validator("name")
    @classmethod
    def _name_is_a_label_value(cls, name: str) -> str:
        if len(name) > MAX_VARIANT_NAME or not VARIANT_NAME_PATTERN.fullmatch(name):
            raise ValueError(
                f"{name!r} is not a valid variant name (it ends Deployment names): use a DNS-1123"
                f" subdomain of 1-{MAX_VARIANT_NAME} characters, lower-case letters, digits, '-'"
                " and '.', each dot-separated part starting and ending with a letter or digit"
                " (e.g. armv8.2)"
            )
        return name

    @field_validator("package_token")
    @classmethod
    def _token_ends_a_package_name(cls, token: str) -> str:
        if token and not PACKAGE_TOKEN_PATTERN.match(token):
            raise ValueError(
                f"{token!r} is not a valid package token: use 1-32 letters, digits, '_' or '.',"
                " starting with a letter or digit (it ends a package name after its last '-')"
            )
        return token

    @model_validator(mode="after")
    def _check_flags_and_scores(self) -> Variant:
        unknown = sorted(self.flags - FLAGS_BY_ARCH[self.arch])
        if unknown:
            raise ValueError(
                f"flags: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not"
                f" NFD {self.arch} CPUID flag name(s) (NFD spells them upper-case, e.g."
                f" {'AVX512VNNI, FMA3' if self.arch == 'amd64' else 'SVE, I8MM'})"
            )
        unlabelled = sorted(self.flags & DEFAULT_LABEL_BLACKLIST)
        if unlabelled:
            raise ValueError(
                f"flags: NFD leaves {', '.join(unlabelled)} out of its node labels by default,"
                " so a nodeSelector on them never matches; require an x86-64 level flag"
                " (X86_64_V2, X86_64_V3, X86_64_V4) instead"
            )
        missing = [w for w in WORKLOADS if w not in self.scores]
        if missing:
            raise ValueError(f"scores: missing a score for {', '.join(missing)}")
        if not self.environment_suffix:
            object.__setattr__(self, "environment_suffix", f"-{self.name}")
        if not self.package_token:
            object.__setattr__(self, "package_token", self.name)
        # The reference grammar lives in contract, which imports this module: read late.
        from flox_isa.isa.contract import SUFFIX_PATTERN  # noqa: PLC0415 - import cycle

        if SUFFIX_PATTERN.fullmatch(self.environment_suffix) is None:
            raise ValueError(
                f"environmentSuffix: {self.environment_suffix!r} would not make owner/name a"
                " Flox environment: use letters, digits, '.', '_' or '-' (no '/', ':' or spaces)"
            )
        return self

    def score(self, workload: Workload) -> float:
        return self.scores[workload]


class Catalog(BaseModel):
    """The variants on offer, in the order the user wrote them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    variants: tuple[Variant, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_are_unique(self) -> Catalog:
        seen: set[str] = set()
        for variant in self.variants:
            if variant.name in seen:
                raise ValueError(f"variant {variant.name!r}: name: duplicate variant name")
            seen.add(variant.name)
        tokens: dict[str, str] = {}
        for variant in self.variants:
            other = tokens.setdefault(variant.package_token, variant.name)
            if other != variant.name:
                raise ValueError(
                    f"variant {variant.name!r}: packageToken: {variant.package_token!r} is"
                    f" already variant {other!r}'s (each variant's packages need their own)"
                )
        return self

    @model_validator(mode="after")
    def _environments_name_one_variant(self) -> Catalog:
        """Reading an environment back must name one variant: no suffix ends another."""
        for index, variant in enumerate(self.variants):
            for other in self.variants[:index]:
                mine, theirs = variant.environment_suffix, other.environment_suffix
                if mine.endswith(theirs) or theirs.endswith(mine):
                    how = (
                        "is also" if mine == theirs
                        else "ends with" if mine.endswith(theirs)
                        else "is the ending of"
                    )  # fmt: skip
                    raise ValueError(
                        f"variant {variant.name!r}: environmentSuffix: {mine!r} {how} the"
                        f" suffix {theirs!r} of variant {other.name!r}, so an environment could"
                        " name either build; give each variant a suffix no other suffix ends with"
                    )
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants)

    def get(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    @functools.cached_property
    def _by_suffix_length(self) -> tuple[Variant, ...]:
        """The variants, longest environment suffix first (stable: ties keep their order)."""
        return tuple(sorted(self.variants, key=lambda v: -len(v.environment_suffix)))

    @functools.cached_property
    def _suffixes(self) -> tuple[str, ...]:
        return tuple(v.environment_suffix for v in self.variants)

    def variant_for_environment(self, environment: str) -> Variant | None:
        """The variant whose suffix ends `environment` (the longest match wins)."""
        if not environment.endswith(self._suffixes):  # one call: most names are a base's
            return None
        for variant in self._by_suffix_length:
            if environment.endswith(variant.environment_suffix):
                return variant
        return None


_AVX512: Final = ["AVX512F", "AVX512CD", "AVX512BW", "AVX512DQ", "AVX512VL"]

DEFAULT_CATALOG_DATA: Final[dict[str, Any]] = {
    "variants": [
        {"name": "avx2", "arch": "amd64", "flags": ["AVX2", "FMA3"],
         "scores": {"fp32-inference": 35, "int8-inference": 35, "bf16-training": 2}},
        {"name": "avx512", "arch": "amd64", "flags": _AVX512,
         "scores": {"fp32-inference": 52, "int8-inference": 52, "bf16-training": 4}},
        {"name": "avx512bf16", "arch": "amd64", "flags": [*_AVX512, "AVX512BF16"],
         "scores": {"fp32-inference": 52, "int8-inference": 52, "bf16-training": 5}},
        {"name": "avx512vnni", "arch": "amd64", "flags": [*_AVX512, "AVX512VNNI"],
         "scores": {"fp32-inference": 52, "int8-inference": 85, "bf16-training": 4}},
        {"name": "armv8.2", "arch": "arm64", "flags": ["ASIMD", "FPHP", "ASIMDHP"],
         "packageToken": "armv8_2",
         "scores": {"fp32-inference": 28, "int8-inference": 28, "bf16-training": 1}},
        {"name": "armv9", "arch": "arm64", "flags": ["SVE", "SVE2", "BF16", "I8MM"],
         "scores": {"fp32-inference": 41, "int8-inference": 41, "bf16-training": 3}},
    ]
}  # fmt: skip


def default_catalog() -> Catalog:
    return catalog_from_data(DEFAULT_CATALOG_DATA)


def catalog_from_data(data: object) -> Catalog:
    """Validate already-parsed catalog data; errors name the variant and the field."""
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(_describe(exc, data)) from None


def parse_catalog(text: str) -> Catalog:
    """A catalog from YAML or JSON text (JSON is YAML; both are accepted)."""
    try:
        data = load_one(text)
    except YamlTextError as exc:
        raise CatalogError(f"catalog {exc}") from None
    if isinstance(data, Mapping) and data.get("kind") == "ConfigMap":
        data = data.get("data")  # a whole ConfigMap: its data section
        if not isinstance(data, Mapping) or "catalog.yaml" not in data:
            raise CatalogError("ConfigMap: data.catalog.yaml is missing")
    if isinstance(data, Mapping) and "catalog.yaml" in data:
        inner = data["catalog.yaml"]  # a ConfigMap's data section
        if not isinstance(inner, str):
            raise CatalogError("ConfigMap data: catalog.yaml must be a string (the catalog YAML)")
        try:
            data = load_one(inner)
        except YamlTextError as exc:
            raise CatalogError(f"ConfigMap data: catalog.yaml {exc}") from None
    return catalog_from_data(data)


def catalog_to_yaml(catalog: Catalog) -> str:
    """The catalog in the file format `parse_catalog` reads (what the chart ships)."""
    data = json.loads(catalog.model_dump_json(by_alias=True))
    for variant in data["variants"]:
        variant["flags"] = sorted(variant["flags"])
    return yaml.safe_dump(data, sort_keys=False)


def _describe(exc: ValidationError, data: object) -> str:
    lines = []
    errors = exc.errors()
    for error in errors:
        if error["type"] == "too_short" and len(errors) > 1:
            continue  # the variants list is short only because an entry is refused
        loc = list(error["loc"])
        where = "catalog"
        if len(loc) >= 2 and loc[0] == "variants" and isinstance(loc[1], int):
            where = f"variant {_variant_label(data, loc[1])}"
            loc = loc[2:]
        field = ".".join(field_name(part) for part in loc if part != "[key]")
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "literal_error" and field == "arch":
            message = f"unknown arch {error['input']!r}; allowed: {', '.join(ARCHES)}"
        elif error["type"] == "literal_error" and field.startswith("scores."):
            message = f"unknown workload; allowed: {', '.join(WORKLOADS)}"
        elif error["type"] == "too_short" and field == "variants":
            message = "at least one variant is required"
        elif error["type"] == "extra_forbidden":
            message = "unknown field"
        if where == "catalog" and not field and message.startswith("variant "):
            where, message = message.split(": ", 1)  # a rule across variants names one
        lines.append(f"{where}: {field + ': ' if field else ''}{message}")
    return "invalid catalog: " + "; ".join(lines)


def _variant_label(data: object, index: int) -> str:
    try:
        name = data["variants"][index]["name"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        name = None
    return repr(name) if isinstance(name, str) and name else f"#{index + 1} (no name)"
