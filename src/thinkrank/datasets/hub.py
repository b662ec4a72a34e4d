"""Tables of Hugging Face datasets, from the Hub, a local snapshot folder, or objects in memory.

Every adapter (BRIGHT, NevIR, FollowIR) reads its tables through :func:`load_table`, so each
works the same three ways: a Hub id (needs the network or the ``datasets`` cache), a folder
holding a downloaded snapshot of the repository (``<config>/<split>-*.parquet`` and the like),
or a mapping ``{config: datasets.Dataset | DatasetDict | list[dict]}`` already loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from thinkrank.errors import InvalidInputError, ThinkrankError, require

Source = str | Path | Mapping[str, Any]
_FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}


class DatasetUnavailableError(ThinkrankError, OSError):
    """A dataset could not be fetched (offline, not cached, no such dataset)."""


class MissingTableError(InvalidInputError):
    """The dataset has no such config/split (a local folder or mapping lacks the table)."""


def load_table(source: Source, config: str | None, split: str, dataset: str) -> Iterable[dict[str, Any]]:
    """The rows of ``config``/``split`` of a dataset, as dicts.

    Args:
        source: Hub id, local snapshot folder, or ``{config or split: table}``.
        dataset: a readable name for error messages ("BRIGHT biology", …).

    Raises:
        DatasetUnavailableError: the Hub could not be reached and the dataset is not cached.
        MissingTableError: the source has no such table (an InvalidInputError).
        MissingExtraError: ``datasets`` is not installed (``thinkrank[datasets]``).
    """
    if isinstance(source, Mapping):
        return _from_mapping(source, config, split, dataset)
    path = Path(source)
    if path.exists():
        return _from_folder(path, config, split, dataset)
    if isinstance(source, Path) or str(source).startswith((".", "/", "~")):
        raise InvalidInputError(f"{dataset}: local folder {source} does not exist")
    return _from_hub(str(source), config, split, dataset)


def _from_mapping(source: Mapping[str, Any], config: str | None, split: str, dataset: str) -> Iterable[dict[str, Any]]:
    key = config if config is not None and config in source else split
    if key not in source:
        raise MissingTableError(f"{dataset}: the tables given have no {config or split!r} (keys: {sorted(source)})")
    table = source[key]
    if isinstance(table, Mapping) and split in table:  # a DatasetDict
        table = table[split]
    return table


def _from_folder(root: Path, config: str | None, split: str, dataset: str) -> Iterable[dict[str, Any]]:
    datasets = require("datasets", "datasets")
    # Hub snapshots keep a config's files in <config>/ (the "default" config in data/), named
    # <split>-00000-of-00001.parquet, <split>.jsonl, <split>/0000.parquet or <config>-*.parquet;
    # a config-less dataset keeps <split>.jsonl at the top.
    folders = ([root / config] + ([root / "data"] if config == "default" else [])) if config else [root]
    patterns = [f"{split}-*", f"{split}.*", f"{split}/*"] + ([f"{config}-*", f"{config}.*"] if config else [f"data/{split}-*"])
    for folder in folders:
        for pattern in patterns:
            files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix in _FORMATS)
            if files:
                builder = _FORMATS[files[0].suffix]
                return datasets.load_dataset(builder, data_files=[str(p) for p in files], split="train")
    folder = folders[0]
    raise MissingTableError(
        f"{dataset}: no data files for {'config ' + repr(config) + ', ' if config else ''}split {split!r} in {folder} "
        f"(looked for {', '.join(patterns)} with extensions {', '.join(_FORMATS)})"
    )


def _from_hub(repo: str, config: str | None, split: str, dataset: str) -> Iterable[dict[str, Any]]:
    datasets = require("datasets", "datasets")
    try:
        return datasets.load_dataset(repo, config, split=split)
    except ValueError as exc:  # an unknown config or split
        raise MissingTableError(f"{dataset}: {repo!r} has no config {config!r} / split {split!r}: {exc}") from exc
    except OSError as exc:  # ConnectionError, offline mode, not found: all OSErrors in `datasets`
        raise DatasetUnavailableError(
            f"{dataset}: could not load {repo!r} (config {config!r}, split {split!r}) from the Hugging Face Hub: "
            f"{type(exc).__name__}: {exc}. Download it once where the Hub is reachable (it is then cached "
            "under ~/.cache/huggingface), or pass a local snapshot folder as the source."
        ) from exc
