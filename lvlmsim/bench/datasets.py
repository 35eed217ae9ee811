"""Named benchmark datasets (`--dataset-name sharegpt|visionarena|mmmu`) as distributions of prompt length, output
length, image count and image size, each with its sources; one YAML per dataset in workloads/datasets/."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from lvlmsim.errors import UnknownIdError
from lvlmsim.specs.base import StrictModel, load_yaml_as
from lvlmsim.specs.registry import datasets_dir
from lvlmsim.specs.workload import Dist, ImageSizeChoice


def _one_or_many(v: Any) -> Any:
    return [v] if isinstance(v, str | dict) else v


class BenchDataset(StrictModel):
    """A dataset as the benchmark clients sample it: what one request asks for, and where each number comes from."""

    id: str
    description: str
    prompt_tokens: Dist = Field(description="text tokens of the prompt")
    output_tokens: Dist = Field(description="tokens generated (the client's max_tokens, with --ignore-eos)")
    images: Dist = Field(description="images per request")
    image_size: Annotated[list[ImageSizeChoice], BeforeValidator(_one_or_many)] = Field(
        default_factory=lambda: [ImageSizeChoice(width=336, height=336)], min_length=1)
    sources: dict[str, str] = Field(description="where each number comes from; ASSUMED where none was found")


def dataset_ids() -> list[str]:
    return sorted(p.stem for p in datasets_dir().glob("*.yaml"))


def load_dataset(name: str) -> BenchDataset:
    path = datasets_dir() / f"{name}.yaml"
    if not path.is_file():
        raise UnknownIdError("dataset", name, {i: datasets_dir() / f"{i}.yaml" for i in dataset_ids()})
    return load_yaml_as(BenchDataset, path)


__all__ = ["BenchDataset", "dataset_ids", "load_dataset"]
