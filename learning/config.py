"""Experiment configuration: pydantic models and the named presets.

Every number the main job prints is produced under one `ExperimentConfig`,
which is written beside the results. Invalid values are rejected when the
config is built, with a message naming the field, the value and what is
allowed. Values are not converted between types: ``true`` or ``"100"``
where an integer belongs is rejected, not read as 1 or 100. Only an integer
is accepted where a float belongs.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import typing
from itertools import product
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

DIGITS_SIZE = 1797
"""Number of examples in scikit-learn's digits data set."""


class ConfigError(ValueError):
    """Raised when a configuration file or preset name is invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, strict=True
    )


class DataConfig(_Strict):
    """The data set and the sizes of its splits.

    MNIST-1D is generated locally by the `mnist1d` package (no download);
    ``digits`` is scikit-learn's bundled 8x8 digits set. MNIST,
    Fashion-MNIST and CIFAR-10 are read from the folder ``root``, and
    ``n_train`` and ``n_test`` examples are drawn from their splits with
    ``seed``.
    """

    name: Literal["mnist1d", "digits", "mnist", "fashion_mnist", "cifar10"] = "mnist1d"
    root: str | None = Field(
        None,
        description=(
            "folder holding MNIST, Fashion-MNIST or CIFAR-10 in their standard"
            " formats; required for those data sets, unused for the others"
        ),
    )
    n_train: int = Field(4000, ge=10, description="training examples")
    n_test: int = Field(
        10000,
        ge=10,
        description=(
            "test examples; 10000 keeps the 95% interval of one accuracy within"
            " about +-1 point, since 1.96 * sqrt(0.25 / 10000) = 0.0098"
        ),
    )
    seed: int = Field(42, ge=0, description="seed of the MNIST-1D generator")
    probe_size: int = Field(
        256, ge=1, description="held-out inputs on which L computes features"
    )

    @model_validator(mode="after")
    def _check_sizes(self) -> DataConfig:
        if self.name == "mnist1d" and (self.n_train + self.n_test) % 10:
            raise ValueError(
                f"n_train + n_test = {self.n_train + self.n_test} must be a multiple"
                " of 10 for MNIST-1D, which generates the same number of examples"
                " of each of its 10 classes; adjust n_train or n_test"
            )
        if self.name == "digits" and self.n_train + self.n_test > DIGITS_SIZE:
            raise ValueError(
                f"digits has {DIGITS_SIZE} examples, but n_train + n_test ="
                f" {self.n_train + self.n_test}; lower them (for example"
                " n_train=1000, n_test=797)"
            )
        local = ("mnist", "fashion_mnist", "cifar10")
        if self.name in local and not (self.root or "").strip():
            raise ValueError(
                f"data set {self.name!r} is read from a local folder; set data.root"
                " to the folder holding its files (nothing is downloaded)"
            )
        if self.name not in local and self.root is not None:
            raise ValueError(
                f"data.root = {self.root!r} is set, but {self.name!r} is not read"
                " from a folder (only mnist, fashion_mnist and cifar10 are);"
                " remove data.root or choose one of those data sets"
            )
        if self.probe_size > self.n_test:
            raise ValueError(
                f"probe_size = {self.probe_size} exceeds n_test = {self.n_test};"
                " the probe set is drawn from the test inputs, so lower probe_size"
            )
        return self


class ModelConfig(_Strict):
    """The network: an MLP, a 1-D CNN, a 2-D CNN or a CIFAR-style ResNet-18.

    ``cnn2d`` and the ResNets read images; their channel count and size come
    from the data's input shape (see `learning.models.image_shape`).
    ``resnet18_nobn`` is ``resnet18`` with identity maps in place of
    BatchNorm, kept trainable by a zero initialization of the last
    convolution of each residual branch.
    """

    kind: Literal["mlp", "cnn", "cnn2d", "resnet18", "resnet18_nobn"] = "mlp"
    hidden: int = Field(
        128,
        ge=1,
        description=(
            "width of the hidden layers (mlp) and of the feature layer (cnn, cnn2d)"
        ),
    )
    depth: int = Field(2, ge=1, description="number of hidden layers (MLP)")
    channels: int = Field(
        16,
        ge=1,
        description=(
            "convolution channels (cnn: every layer; cnn2d: the first layer,"
            " doubled by each of its two stride-2 layers)"
        ),
    )
    width: int = Field(
        64,
        ge=1,
        description=(
            "channels of the first ResNet stage; the four stages have width,"
            " 2 width, 4 width and 8 width channels (ResNet kinds)"
        ),
    )
    batch_norm: bool | None = Field(
        None,
        description=(
            "BatchNorm after each hidden layer or convolution; None takes the"
            " kind's default: on for cnn2d and resnet18, off for mlp, cnn and"
            " resnet18_nobn"
        ),
    )

    @model_validator(mode="after")
    def _check_batch_norm(self) -> ModelConfig:
        fixed = {"resnet18": True, "resnet18_nobn": False}
        if self.kind in fixed and self.batch_norm not in (None, fixed[self.kind]):
            other = "resnet18_nobn" if self.kind == "resnet18" else "resnet18"
            raise ValueError(
                f"kind = {self.kind!r} fixes batch_norm, but batch_norm ="
                f" {self.batch_norm}; use kind = {other!r} or leave batch_norm unset"
            )
        return self

    @property
    def has_batch_norm(self) -> bool:
        """Whether the network has BatchNorm layers, after the kind's default."""
        if self.batch_norm is not None:
            return self.batch_norm
        return self.kind in ("cnn2d", "resnet18")


class OptimizerConfig(_Strict):
    """One optimizer of the sweep, with its learning-rate schedule.

    ``natural_gradient`` preconditions each step by the empirical Fisher of
    the current batch (`learning.optim.NaturalGradient`).
    """

    name: Literal["sgd", "adam", "adamw", "rmsprop", "natural_gradient"]
    lr: float = Field(gt=0, description="learning rate (the schedule's peak)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD and RMSprop momentum")
    nesterov: bool = Field(False, description="Nesterov momentum (SGD only)")
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "cosine", "step"] = Field(
        "constant",
        description=(
            "learning rate over training: constant; cosine decay to 0 over all"
            " steps; or step: multiplied by step_gamma every step_every epochs"
        ),
    )
    step_every: int = Field(
        10, ge=1, description="epochs between steps (step schedule)"
    )
    step_gamma: float = Field(0.1, gt=0, le=1, description="factor per step")
    fisher_kind: Literal["diagonal", "lowrank"] = "diagonal"
    fisher_rank: int | None = Field(None, ge=1, description="rank of a low-rank Fisher")
    damping: float | None = Field(
        None, ge=0, description="Fisher damping; None takes the kind's default"
    )

    @model_validator(mode="after")
    def _check_combination(self) -> OptimizerConfig:
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ValueError(
                "nesterov = true needs name = 'sgd' with momentum > 0;"
                f" got name = {self.name!r}, momentum = {self.momentum}"
            )
        lowrank = self.name == "natural_gradient" and self.fisher_kind == "lowrank"
        if lowrank and self.fisher_rank is None:
            raise ValueError("fisher_kind = 'lowrank' needs fisher_rank; set it")
        return self

    @property
    def label(self) -> str:
        """Short name used in run ids and tables."""
        return self.name


class TrainConfig(_Strict):
    """The sweep: every combination of init seed, data seed and optimizer is a run."""

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(100, ge=1)
    checkpoint_every: int = Field(
        40, ge=1, description="optimizer steps between recorded checkpoints"
    )
    vectorized: bool = Field(
        False,
        description=(
            "train runs whose optimizer train_ensemble supports (SGD and Adam,"
            " constant rate) together in one vectorized pass; the others, and"
            " all runs of a model with BatchNorm, in a loop"
        ),
    )
    init_seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    data_seeds: list[int] = Field(default_factory=lambda: [0, 1], min_length=1)
    optimizers: list[OptimizerConfig] = Field(
        default_factory=lambda: [
            OptimizerConfig(name="sgd", lr=0.05),
            OptimizerConfig(name="adam", lr=1e-3),
        ],
        min_length=1,
    )

    @model_validator(mode="after")
    def _check_unique(self) -> TrainConfig:
        for field_name in ("init_seeds", "data_seeds"):
            values = getattr(self, field_name)
            if len(set(values)) != len(values):
                raise ValueError(
                    f"{field_name} = {values} repeats a seed; list each once"
                )
        for index, optimizer in enumerate(self.optimizers):
            if optimizer in self.optimizers[:index]:
                raise ValueError(
                    f"optimizers lists {optimizer.name!r} with the same settings"
                    f" twice (entries {self.optimizers.index(optimizer)} and"
                    f" {index}), which would train identical runs; list it once"
                )
        return self

    def optimizer_label(self, optimizer: OptimizerConfig) -> str:
        """Return the optimizer's name, with the settings that tell it apart.

        Where the sweep has two optimizers of one name, each label adds the
        fields in which they differ, as ``sgd (lr=0.05)`` and ``sgd (lr=0.01)``,
        so that tables and per-optimizer fits keep them apart.
        """
        own = optimizer.model_dump()
        namesakes = [
            o.model_dump() for o in self.optimizers if o.name == optimizer.name
        ]
        differing = [
            key
            for key, value in own.items()
            if key != "name" and any(other[key] != value for other in namesakes)
        ]
        if not differing:
            return optimizer.label
        settings = ", ".join(f"{key}={own[key]}" for key in differing)
        return f"{optimizer.label} ({settings})"

    def run_specs(self) -> list[RunSpec]:
        """Return the runs of the sweep in a fixed order."""
        return [
            RunSpec(index=i, init_seed=a, data_seed=b, optimizer=opt)
            for i, (a, b, opt) in enumerate(
                product(self.init_seeds, self.data_seeds, self.optimizers)
            )
        ]


class RunSpec(_Strict):
    """One training run of the sweep."""

    index: int
    init_seed: int
    data_seed: int
    optimizer: OptimizerConfig

    @property
    def name(self) -> str:
        """Readable run id, unique within a sweep."""
        return (
            f"r{self.index:03d}-init{self.init_seed}-data{self.data_seed}"
            f"-{self.optimizer.label}"
        )


class HomotopyConfig(_Strict):
    """Loss barriers on straight lines between final networks, and the threshold.

    The barrier of a pair is max over alpha of
    loss((1 - alpha) a + alpha b) - ((1 - alpha) loss(a) + alpha loss(b)),
    with the training loss (cross-entropy, nats) on the training set. Pairs
    with barrier <= tau are joined; homotopy classes are connected components.
    """

    tau: float = Field(
        0.1,
        ge=0,
        description=(
            "barrier threshold in nats; 0.1 is about 4% of the loss of a uniform"
            " guess over 10 classes (ln 10 = 2.30)"
        ),
    )
    n_alpha: int = Field(21, ge=3, description="points on each line, ends included")
    bn_statistics: Literal["recompute", "interpolate"] = Field(
        "recompute",
        description=(
            "BatchNorm statistics at interior points of a line: recomputed on"
            " training data, or interpolated between the ends' stored ones"
        ),
    )
    endpoint_statistics: Literal["recompute", "stored"] = Field(
        "recompute",
        description=(
            "BatchNorm statistics at the two ends of a line: recomputed on training"
            " data like the interior points, so that the whole line is normalized"
            " one way, or the networks' stored running averages"
        ),
    )
    tau_sweep: list[float] = Field(
        default_factory=lambda: [0.02, 0.05, 0.1, 0.2, 0.5, 1.0],
        description="other thresholds whose classes are reported for comparison",
    )
    align_permutations: bool = Field(
        True,
        description=(
            "also measure every pair's barrier after weight matching (b's hidden"
            " units permuted to fit a, learning.matching) and report the classes"
            " modulo permutations"
        ),
    )


class LandscapeConfig(_Strict):
    """The loss landscape on a filter-normalized random plane around each network."""

    resolution: int = Field(21, ge=3, description="grid points per axis")
    span: float = Field(
        1.0, gt=0, description="half-width of the grid, in filter-normalized units"
    )
    n_examples: int = Field(
        2000, ge=1, description="training examples on which the loss is evaluated"
    )
    seed: int = Field(0, ge=0, description="seed of the random directions")

    @field_validator("resolution")
    @classmethod
    def _check_odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(
                f"resolution = {value} must be odd so that the grid's centre is the"
                f" trained network itself; use {value + 1}"
            )
        return value


class FisherConfig(_Strict):
    """Fisher lengths of the recorded trajectories."""

    enabled: bool = True
    n_examples: int = Field(
        1000, ge=1, description="training examples on which the Fisher is estimated"
    )
    kind: Literal["diagonal", "lowrank"] = "diagonal"
    rank: int | None = Field(None, ge=1, description="rank of a low-rank Fisher")


class ExperimentConfig(_Strict):
    """Everything that determines the main job's numbers."""

    name: str = Field("custom", min_length=1, description="label used in reports")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    homotopy: HomotopyConfig = HomotopyConfig()
    landscape: LandscapeConfig = LandscapeConfig()
    fisher: FisherConfig = FisherConfig()
    functor_segments: int = Field(
        4, ge=2, description="segments each trajectory is cut into for L's law check"
    )
    device: str = Field(
        "auto", description="'auto' (CUDA when present, else CPU), 'cpu' or 'cuda[:N]'"
    )

    @model_validator(mode="after")
    def _check_batch_size(self) -> ExperimentConfig:
        if self.train.batch_size > self.data.n_train:
            raise ValueError(
                f"train.batch_size = {self.train.batch_size} exceeds data.n_train ="
                f" {self.data.n_train}, so every epoch would be one smaller step;"
                f" for full-batch training set batch_size to {self.data.n_train}"
            )
        return self

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value):
            raise ValueError(
                f"device {value!r} is not supported; use 'auto', 'cpu', 'cuda',"
                " 'cuda:N' or 'mps'"
            )
        return value

    @property
    def n_runs(self) -> int:
        """Number of training runs in the sweep."""
        t = self.train
        return len(t.init_seeds) * len(t.data_seeds) * len(t.optimizers)

    def fingerprint(self, *sections: str) -> str:
        """Return a short hash of the named sections (all when none are named)."""
        dumped = self.model_dump(mode="json")
        if sections:
            dumped = {key: dumped[key] for key in sections}
        text = json.dumps(dumped, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _tiny() -> ExperimentConfig:
    return ExperimentConfig(
        name="tiny",
        data=DataConfig(n_train=600, n_test=1000, probe_size=64),
        model=ModelConfig(hidden=32),
        train=TrainConfig(
            epochs=3,
            batch_size=50,
            checkpoint_every=12,
            init_seeds=[0, 1, 2],
            data_seeds=[0],
            optimizers=[OptimizerConfig(name="sgd", lr=0.05)],
        ),
        homotopy=HomotopyConfig(n_alpha=7),
        landscape=LandscapeConfig(resolution=9, n_examples=300),
        functor_segments=3,
    )


def _full() -> ExperimentConfig:
    return ExperimentConfig(
        name="full",
        train=TrainConfig(init_seeds=list(range(25)), data_seeds=[0, 1]),
    )


def _optimizers() -> ExperimentConfig:
    return ExperimentConfig(
        name="optimizers",
        train=TrainConfig(
            init_seeds=[0, 1, 2],
            data_seeds=[0],
            optimizers=[
                OptimizerConfig(name="sgd", lr=0.05),
                OptimizerConfig(name="adam", lr=1e-3),
                OptimizerConfig(name="natural_gradient", lr=0.01),
            ],
        ),
    )


PRESETS: dict[str, Any] = {
    "tiny": _tiny,
    "quick": lambda: ExperimentConfig(name="quick"),
    "full": _full,
    "optimizers": _optimizers,
}


def preset(name: str) -> ExperimentConfig:
    """Return a named preset.

    ``tiny`` (3 runs, for tests), ``quick`` (12 runs), ``full`` (100 runs) or
    ``optimizers`` (SGD, Adam and natural gradient from 3 initializations,
    for Fisher lengths side by side).
    """
    try:
        factory = PRESETS[name]
    except KeyError:
        choices = ", ".join(sorted(PRESETS))
        raise ConfigError(
            f"unknown preset {name!r}; choose one of: {choices}"
        ) from None
    config: ExperimentConfig = factory()
    return config


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Build a JSON object, raising on a key given twice (json keeps the last)."""
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ConfigError(
            f"key {repeated[0]!r} appears twice in the object with keys"
            f" {', '.join(dict.fromkeys(keys))}; keep one of them"
        )
    return dict(pairs)


def load_config(path: str | Path) -> ExperimentConfig:
    """Read an `ExperimentConfig` from a JSON file, naming any invalid field."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(), object_pairs_hook=_reject_duplicate_keys)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config {path} is a folder; name a JSON file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} cannot be read: {error}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"config file {path} is not valid JSON: {error}") from None
    except ConfigError as error:
        raise ConfigError(f"config file {path} is invalid: {error}") from None
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(
            f"config file {path} is invalid: {describe_validation_error(error)}"
        ) from None


def describe_validation_error(error: ValidationError) -> str:
    """Return a pydantic error as one line per problem: ``field: message``."""
    parts = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"]) or "config"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = _unknown_field_message(problem["loc"])
        elif problem["type"] != "missing" and not isinstance(
            problem.get("input"), dict | list
        ):
            message += f" (got {problem.get('input')!r})"
        parts.append(f"{field}: {message}")
    return "; ".join(parts)


def _unknown_field_message(location: tuple[int | str, ...]) -> str:
    """Return the message for an unknown field, naming the closest known one."""
    known = _fields_at(location[:-1])
    name = str(location[-1])
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"unknown field; did you mean {close[0]!r}?"
    if known:
        return f"unknown field; the fields here are {', '.join(known)}"
    return "unknown field"


def _fields_at(location: tuple[int | str, ...]) -> list[str]:
    """Return the field names of the config section at `location`, if known."""
    model: type[BaseModel] = ExperimentConfig
    for part in location:
        if isinstance(part, int):
            continue  # an item of a list, such as one optimizer
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        inner = _model_in(field.annotation)
        if inner is None:
            return []
        model = inner
    return sorted(model.model_fields)


def _model_in(annotation: object) -> type[BaseModel] | None:
    """Return the pydantic model an annotation names, directly or in a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None
