"""An option declared once, on the field of the frozen settings it belongs to.

``think_budget: int = option(1024, "Pointwise: most reasoning tokens per document.", minimum=1,
modes=("pointwise",))`` gives the field its default and carries, in the field's metadata, the
help text, the range and the modes it applies to. The spec checks values against it, the CLI
builds its flags from it (:mod:`thinkrank.cli.options`, in the way vLLM builds its argument
parser from ``EngineArgs``' fields), and ``--help`` shows its text: a limit changed here changes
the check, the error and the help together.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from thinkrank.validation import check_float, check_int


@dataclass(frozen=True)
class Declared:
    """What a settings field declares besides its type and default.

    ``help``: the text ``--help`` shows (plain: no rich markup). ``minimum`` / ``maximum``:
    inclusive bounds of a number; ``positive``: a number > 0. ``modes``: the reranker modes it
    applies to (empty: all). ``flags``: the CLI spellings (default ``--name-with-dashes``).
    ``cli_type``: the value type on the command line when it differs from the field's
    (``cascade`` is text there). ``envvar``: an environment variable the flag is read from;
    ``show_default``: whether ``--help`` shows the default (not for a secret). ``unit``: what
    the number counts, for an error message (``" seconds"``)."""

    help: str
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    modes: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    cli_type: Any = None
    envvar: str | None = None
    show_default: bool = True
    unit: str = ""

    def check(self, label: str, value: Any, kind: type, optional: bool) -> None:
        """``value`` in range, or an InvalidInputError naming ``label`` (a field or a flag)."""
        if kind is int:
            check_int(label, value, minimum=_int(self.minimum), maximum=_int(self.maximum), optional=optional)
        elif kind is float:
            check_float(label, value, minimum=self.minimum, maximum=self.maximum, positive=self.positive,
                        optional=optional)

    @property
    def rule(self) -> str:
        """The range in words (``">= 1"``, ``"in (0, 1]"``), empty when there is none."""
        if self.positive and self.maximum is not None:
            return f"in (0, {self.maximum:g}]"
        if self.positive:
            return "> 0"
        if self.minimum is not None and self.maximum is not None:
            return f"from {self.minimum:g} to {self.maximum:g}"
        if self.minimum is not None:
            return f">= {self.minimum:g}"
        return ""


def bounds(minimum: float | None = None, maximum: float | None = None) -> Declared:
    """The range of a command's own numeric flag, put beside its ``typer.Option`` in ``Annotated``
    (``Annotated[int, typer.Option(help=...), bounds(1)]``): the command's checks read it there."""
    return Declared("", minimum=minimum, maximum=maximum)


def _int(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


def option(default: Any = dataclasses.MISSING, help: str = "", *, default_factory: Any = dataclasses.MISSING,
           **declared: Any) -> Any:
    """A dataclass field with ``default`` that declares the option (see :class:`Declared`)."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"option": Declared(help, **declared)})


@dataclass(frozen=True)
class Field:
    """One declared option of a settings class: its name, value types, default and declaration;
    ``required``: the field has no default (``default`` is then None)."""

    name: str
    types: tuple[type, ...]
    default: Any
    declared: Declared
    required: bool = False

    @property
    def optional(self) -> bool:
        return type(None) in self.types

    @property
    def kind(self) -> type:
        """The value's type without None (``int`` for ``int | None``; the first of a union)."""
        return next(t for t in self.types if t is not type(None))

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` has one of the field's types (an int for a float; a bool only for a bool)."""
        if isinstance(value, bool):
            return bool in self.types
        return isinstance(value, self.types) or (float in self.types and isinstance(value, int))

    def check(self, value: Any, label: str | None = None) -> None:
        """``value`` of the field's type and in its range (the message names ``label``, default the field)."""
        self.declared.check(label or self.name, value, self.kind, self.optional)

    def applies(self, mode: str) -> bool:
        return not self.declared.modes or mode in self.declared.modes


def fields(cls: type) -> dict[str, Field]:
    """The declared options of the dataclass ``cls``, by name, in field order."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Field] = {}
    for f in dataclasses.fields(cls):
        if "option" not in f.metadata:
            continue
        hint = hints[f.name]
        members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out[f.name] = Field(f.name, tuple(typing.get_origin(t) or t for t in members), default, f.metadata["option"],
                            required)
    return out
