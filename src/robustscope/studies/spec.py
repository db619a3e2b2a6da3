"""Study specs: one validated YAML (or preset) describing a family of runs and what to measure.

A study trains every combination of ``models`` × ``methods`` (each at every ε of its grid)
× ``seeds`` on one dataset, then evaluates each member with the ``evaluation`` attacks and
measures it with the ``probes``. Training options shared by all runs go in ``train``
(any :class:`~robustscope.training.TrainConfig` field; a model entry's own ``train``
replaces some of them for that model's runs); ε = 0 of an adversarial method is standard
training (one run, shared by all methods listing ε = 0). ``deviations`` (text, one item per
deviation) says where a spec departs from its paper's setup and why. Example::

    name: my-study
    dataset: fashion-mnist
    models: [{model: cnn}]
    methods:
      - {method: pgd, eps: [0, 0.05, 0.1, 0.2], params: {steps: 10}}
    seeds: [0]
    train: {epochs: 3, train_subset: 20000, track: [clean, input_fisher]}
    evaluation:
      n: 1000
      attacks:
        - {attack: pgd, eps: [0, 0.05, 0.1, 0.2, 0.3], params: {steps: 20}}
    probes:
      n: 1000
      train_n: 1000
      run: [{name: cckl}, {name: margins}]

``train_sizes`` (optional) adds an axis over the training-set size: every run of the grid
is trained once per size ``n`` on the first ``n`` training examples (``train.train_subset =
n``), for tsipras2019 Fig. 6 (standard accuracy vs training-set size, standard vs
adversarial training); the report's ``datasize`` section draws it. Unset, the runs are
those of the grid above, with the same ids. Example: ``train_sizes: [500, 2000, 8000]``.

``posthoc`` (optional) robustifies trained runs without retraining them (wu2020): each
standard run (``runs: standard``; ``all``: every run) is transformed by M1/M2/M3 at each
``percents`` value and every member measured (:func:`robustscope.posthoc.sweep.run_sweep`:
accuracy on the ``transferred`` attacks' examples made on the original, the challenge score
of the ``adaptive`` minimal attacks re-run, the evaluation's first attack re-run when
``robust``, eq. 4 at ``noise``, the common corruptions when ``corruptions``); stored as the
run's ``posthoc`` probe and measured again, like attacks, when these settings change.
Example::

    posthoc:
      methods: [m1, m2, m3]
      percents: [0, 1, 2, 3, 4, 5, 10, 20]
      n: 500
      transferred: [{attack: fgsm, eps: [0, 0.05, 0.1, 0.2]}, {attack: deepfool, eps: [0, 0.05, 0.1, 0.2]}]
      adaptive: [{attack: deepfool, norm: l2}]

``evaluation.escalate`` (default ``autoattack``, AutoAttack's ensemble; ``null``: never)
names the attack a run is re-evaluated with when a gradient-masking check fires on its
first evaluation (``evaluation.checks``), at the same ε and norm; the study reports the
lower robust accuracy per ε (:mod:`robustscope.studies.escalation`). A name, or a mapping
with parameters: ``escalate: {attack: autoattack-lite, params: {steps: 20}}``.

``checkpoints`` (optional) lists models the study measures without training them: each
entry a path or a glob (``runs/*/model.safetensors``; a run directory stands for its
``model.safetensors``; relative paths from the current directory), or a mapping with
``path``, an optional ``label`` (the run's name; a glob's label prefixes each match's name)
and an optional ``dataset`` (the dataset the weights are for, when the file records none;
checked like a recorded one). Every matched checkpoint is one run: loaded with
:func:`robustscope.checkpoint.load`, then evaluated, probed and post-hoc swept like a trained
run (:mod:`robustscope.studies.loaded`). With ``checkpoints`` and no ``methods`` the study
trains nothing. Example::

    checkpoints:
      - runs/mine/*/model.safetensors
      - {path: theirs.safetensors, label: theirs}

Errors name the field (``methods.0.eps``) and the allowed values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from robustscope.errors import RobustscopeError, field_errors, one_line
from robustscope.params import parse_eps_list, parse_number, positive_int
from robustscope.studies.store.vocab import attack_label, escalation_label

__all__ = [
    "DEFAULT_ESCALATION",
    "AttackEval",
    "CheckpointEntry",
    "Escalation",
    "EvaluationSpec",
    "MethodSpec",
    "ModelSpecEntry",
    "PosthocCorruptions",
    "PosthocSpec",
    "ProbeEntry",
    "ProbesSpec",
    "StudyError",
    "StudySpec",
    "load_spec",
    "sweep_param",
]


class StudyError(RobustscopeError):
    """A study spec is invalid, or a study cannot run or resume."""


def check_train_options(v: dict[str, Any]) -> dict[str, Any]:
    """``v`` if its keys are TrainConfig fields a study's ``train`` may set (the others are
    set by its dataset/models/methods/seeds)."""
    from robustscope.training.config import TrainConfig

    owned = {"dataset", "dataset_params", "model", "model_kwargs", "method"}
    owned |= {"method_params", "seed"}
    bad = sorted(set(v) & owned)
    if bad:
        raise ValueError(
            f"{', '.join(bad)} are set by the study's dataset/models/methods/seeds, not in train"
        )
    unknown = sorted(set(v) - set(TrainConfig.model_fields))
    if unknown:
        raise ValueError(
            f"unknown training option(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(set(TrainConfig.model_fields) - owned))}"
        )
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpecEntry(_Strict):
    """One architecture of the study (``robustscope models`` lists the names)."""

    model: str
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    label: str | None = Field(None, description="short name in tables (default: model + kwargs)")
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="TrainConfig fields for this model's runs only, replacing the study's "
        "(e.g. shi2020's learning rate 0.01 for VGG13 and 0.1 for the ResNets)",
    )

    @field_validator("train")
    @classmethod
    def _train(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_train_options(v)

    def display(self) -> str:
        if self.label:
            return self.label
        extra = ",".join(f"{k}={v}" for k, v in sorted(self.model_kwargs.items()))
        return f"{self.model}({extra})" if extra else self.model


class MethodSpec(_Strict):
    """A training method swept over an ε grid (ε = 0 trains with ``standard``)."""

    method: str
    eps: list[float] = Field(default_factory=lambda: [0.0])
    norm: Literal["linf", "l2"] = "linf"
    params: dict[str, Any] = Field(default_factory=dict, description="objective options")

    @field_validator("eps", mode="before")
    @classmethod
    def _eps(cls, v: Any) -> list[float]:
        if isinstance(v, list | tuple) and not v:
            raise ValueError("give at least one ε")
        return sorted(set(parse_eps_list(v, "ε")))

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in ("eps", "norm"):
            if key in v:
                raise ValueError(f"give {key} as the method's own field, not in params")
        return v


def sweep_param(method: str) -> str:
    """The parameter a method's ε grid sets: ``sigma`` for ``noise``, else ``eps``."""
    return "sigma" if method == "noise" else "eps"


class AttackEval(_Strict):
    """One attack evaluated at a list of ε (``robustscope attacks`` lists the names)."""

    attack: str = "pgd"
    norm: Literal["linf", "l2"] = "linf"
    eps: list[float] = Field(default_factory=lambda: [0.0, 0.1])
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None

    @field_validator("eps", mode="before")
    @classmethod
    def _eps(cls, v: Any) -> list[float]:
        return sorted(set(parse_eps_list(v, "ε")))

    def key(self) -> str:
        """The attack's name in the study's results (:func:`~.store.vocab.attack_label`)."""
        return attack_label(self.attack, self.norm, self.label)


#: the attack a flagged evaluation is escalated to unless the spec says otherwise: AutoAttack's
#: ensemble (registered as ``autoattack``)
DEFAULT_ESCALATION = "autoattack"


class Escalation(_Strict):
    """The attack (with its parameters) that re-evaluates a run whose first evaluation raised a
    gradient-masking flag (module doc); given as a name or as ``{attack, params}``."""

    attack: str = DEFAULT_ESCALATION
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _name(cls, v: Any) -> Any:
        return {"attack": v} if isinstance(v, str) else v

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in ("eps", "norm"):
            if key in v:
                raise ValueError(f"{key} is the flagged evaluation's: do not set it here")
        return v


class EvaluationSpec(_Strict):
    """Attacks run on the first ``n`` test points of every trained model."""

    n: int = Field(1000, ge=1)
    batch_size: int = Field(256, ge=1)
    checks: bool = Field(True, description="gradient-masking checks of the first attack")
    seed: int = 0
    attacks: list[AttackEval] = Field(default_factory=lambda: [AttackEval()])
    escalate: Escalation | None = Field(
        default_factory=Escalation,
        description="attack re-evaluating a run its checks flagged (module doc); null: none",
    )

    @field_validator("attacks")
    @classmethod
    def _distinct_labels(cls, v: list[AttackEval]) -> list[AttackEval]:
        seen: set[str] = set()
        for a in v:
            if a.key() in seen:
                raise ValueError(
                    f"two attacks are named {a.key()!r}: give each a distinct label "
                    "(e.g. label: pgd-20 and label: pgd-100)"
                )
            seen.add(a.key())
        return v

    @model_validator(mode="after")
    def _escalation_label(self) -> EvaluationSpec:
        if self.escalate is not None and self.attacks:
            name = escalation_label(self.attacks[0].key(), self.escalate.attack)
            if any(a.key() == name for a in self.attacks):
                raise ValueError(
                    f"an attack is labelled {name!r}, the name of the first attack's escalation: "
                    "give it another label"
                )
        return self


class ProbeEntry(_Strict):
    """One probe (``robustscope probes`` lists the names) with its options."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class ProbesSpec(_Strict):
    """Probes run on the first ``n`` test and ``train_n`` training points of every model."""

    n: int = Field(1000, ge=1)
    train_n: int = Field(1000, ge=0)
    run: list[ProbeEntry] = Field(default_factory=list)


class CheckpointEntry(_Strict):
    """Checkpoints measured without training (module doc): a path or a glob, or a mapping."""

    path: str = Field(min_length=1, description="a checkpoint file, run directory or glob")
    label: str | None = Field(
        None,
        min_length=1,
        description="the run's name (a glob's: the prefix of each match's); default: the "
        "file's stem, or its directory's name for a run directory's model.safetensors",
    )
    dataset: str | None = Field(
        None, description="the dataset the weights are for when the file records none"
    )

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, v: Any) -> Any:
        return {"path": v} if isinstance(v, str) else v


PosthocMethod = Literal["m1", "m2", "m3"]
POSTHOC_METHODS: tuple[PosthocMethod, ...] = ("m1", "m2", "m3")


class PosthocCorruptions(_Strict):
    """The common corruptions every post-hoc member is evaluated under."""

    types: list[str] | None = Field(None, description="corruption names (default: all 15)")
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    seed: int = 0

    @field_validator("types")
    @classmethod
    def _types(cls, v: list[str] | None) -> list[str] | None:
        from robustscope.corruptions import check_names

        return None if v is None else list(check_names(v))

    @field_validator("severities")
    @classmethod
    def _severities(cls, v: list[int]) -> list[int]:
        if not v or any(s not in (1, 2, 3, 4, 5) for s in v):
            raise ValueError(f"severities are among 1, 2, 3, 4, 5, got {v}")
        return sorted(set(v))


class PosthocSpec(_Strict):
    """wu2020's post-hoc sweep of trained runs (module doc)."""

    methods: list[PosthocMethod] = Field(default_factory=lambda: list(POSTHOC_METHODS))
    percents: list[float] = Field(
        default_factory=lambda: [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        description="p grid in [0, 100) (0, the original model, is always included)",
    )
    layer: str | None = Field(None, description="layer name or 'all' (default: penultimate)")
    runs: Literal["standard", "all"] = "standard"
    n: int = Field(500, ge=1, description="test points every member is measured on")
    train_n: int = Field(2000, ge=1, description="training examples M1 counts activity on")
    batch_size: int = Field(256, ge=1)
    seed: int = 0
    transferred: list[AttackEval] = Field(
        default_factory=lambda: [
            AttackEval(attack="fgsm", eps=[0.0, 0.05, 0.1, 0.2]),
            AttackEval(attack="deepfool", eps=[0.0, 0.05, 0.1, 0.2]),
        ]
    )
    adaptive: list[AttackEval] = Field(
        default_factory=lambda: [AttackEval(attack="deepfool", norm="l2", eps=[0.0])]
    )
    robust: bool = Field(True, description="re-run the evaluation's first attack on each member")
    noise: float | None = Field(None, description="C of wu2020 eq. (4); null: not measured")
    corruptions: PosthocCorruptions | None = None

    @field_validator("percents", mode="before")
    @classmethod
    def _percents(cls, v: Any) -> list[float]:
        if not isinstance(v, list | tuple) or not v:
            raise ValueError(f"give a list of percentages in [0, 100), got {v!r}")
        out = set()
        for p in v:
            q = parse_number(p, "percent")
            if not (0 <= q < 100):
                raise ValueError(f"a percentage is in [0, 100), got {p}")
            out.add(q)
        return sorted(out | {0.0})

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[PosthocMethod]) -> list[PosthocMethod]:
        if not v:
            raise ValueError("give at least one method (m1, m2, m3)")
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _attacks(self) -> PosthocSpec:
        from robustscope import attacks

        for field, entries in (("transferred", self.transferred), ("adaptive", self.adaptive)):
            seen: set[str] = set()
            for a in entries:
                if a.attack not in attacks.available():
                    raise ValueError(
                        f"{field}: unknown attack {a.attack!r}; allowed: "
                        f"{', '.join(sorted(attacks.available()))}"
                    )
                if a.key() in seen:
                    raise ValueError(f"{field}: two attacks are named {a.key()!r}: label them")
                seen.add(a.key())
        for a in self.adaptive:
            if not attacks.get(a.attack).minimal_norm:
                raise ValueError(
                    f"adaptive: {a.attack!r} is not a minimal-norm attack (the challenge score "
                    "needs one: deepfool, cw)"
                )
        return self


class StudySpec(_Strict):
    """A study: dataset, model family, training grid, evaluation and probes (module doc)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    reproduces: str = Field("", description="which figures/tables of which paper")
    deviations: list[str] = Field(
        default_factory=list,
        description="where the study departs from its paper's setup, and why (one item each)",
    )
    dataset: str = "fashion-mnist"
    dataset_params: dict[str, Any] = Field(default_factory=dict)
    models: list[ModelSpecEntry] = Field(default_factory=lambda: [ModelSpecEntry(model="cnn")])
    methods: list[MethodSpec] = Field(
        default_factory=lambda: [MethodSpec(method="pgd", eps=[0.0, 0.1])]
    )
    seeds: list[int] = Field(default_factory=lambda: [0])
    train_sizes: list[int] | None = Field(
        None,
        description=(
            "training-set sizes: every run is trained once per size n on the first n "
            "training examples (train_subset = n); unset: one size, train.train_subset"
        ),
    )
    train: dict[str, Any] = Field(
        default_factory=dict, description="TrainConfig fields shared by every run"
    )
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    probes: ProbesSpec = Field(default_factory=ProbesSpec)
    posthoc: PosthocSpec | None = Field(
        None, description="wu2020's post-hoc sweep of trained runs (module doc); unset: none"
    )
    checkpoints: list[CheckpointEntry] | None = Field(
        None, description="models measured without training (module doc); unset: none"
    )
    resources: dict[str, float] = Field(
        default_factory=lambda: {"num_cpus": 1.0, "num_gpus": 0.0},
        description="per-run resource request of the Ray executor",
    )

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("give at least one seed")
        return sorted(set(v))

    @field_validator("train_sizes", mode="before")
    @classmethod
    def _train_sizes(cls, v: Any) -> list[int] | None:
        if v is None:
            return None
        if not isinstance(v, list | tuple):
            raise ValueError(f"give a list of training-set sizes (e.g. [500, 2000]), got {v!r}")
        if not v:
            raise ValueError("give at least one training-set size (or leave train_sizes unset)")
        return sorted({positive_int(n, "training-set size") for n in v})

    @field_validator("train")
    @classmethod
    def _train(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_train_options(v)

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # an unset axis is left out, so a spec without it dumps (and hashes) as before
        out: dict[str, Any] = handler(self)
        for axis in ("train_sizes", "posthoc", "checkpoints"):
            if getattr(self, axis) is None:
                out.pop(axis, None)
        return out

    @model_validator(mode="before")
    @classmethod
    def _loaded_only(cls, v: Any) -> Any:
        # a spec listing checkpoints and no methods measures them and trains nothing
        if isinstance(v, dict) and v.get("checkpoints") and "methods" not in v:
            return {**v, "methods": []}
        return v

    @model_validator(mode="after")
    def _something(self) -> StudySpec:
        if not self.methods and not self.checkpoints:
            raise ValueError(
                "the study has no runs: give methods (models to train) or checkpoints "
                "(models to load)"
            )
        for i, entry in enumerate(self.checkpoints or []):
            if entry.dataset is not None and entry.dataset != self.dataset:
                raise ValueError(
                    f"checkpoints.{i}.dataset: {entry.dataset!r} differs from the study's "
                    f"dataset {self.dataset!r}; a study measures every model on its one dataset"
                )
        return self

    @model_validator(mode="after")
    def _one_size(self) -> StudySpec:
        if self.train_sizes is not None and "train_subset" in self.train:
            raise ValueError(
                "train_sizes and train.train_subset both set the training-set size: give the "
                "sizes in train_sizes only"
            )
        return self

    @model_validator(mode="after")
    def _names(self) -> StudySpec:
        from robustscope import attacks, data, models
        from robustscope.probes import available_probes
        from robustscope.training import available as available_methods

        checks = [
            ("dataset", [self.dataset], data.names()),
            ("models", [m.model for m in self.models], list(models.available())),
            ("methods", [m.method for m in self.methods], list(available_methods())),
            (
                "evaluation.attacks",
                [a.attack for a in self.evaluation.attacks],
                list(attacks.available()),
            ),
            ("probes.run", [p.name for p in self.probes.run], list(available_probes())),
        ]
        for field, names, valid in checks:
            for name in names:
                if name not in valid:
                    raise ValueError(
                        f"{field}: unknown name {name!r}; allowed: {', '.join(sorted(valid))}"
                    )
        self._check_escalation()
        return self

    def _check_escalation(self) -> None:
        from robustscope import attacks

        ev = self.evaluation
        if ev.escalate is None or not ev.attacks:
            return
        name = ev.escalate.attack
        if name not in attacks.available():
            raise ValueError(
                f"evaluation.escalate: unknown attack {name!r}; allowed: "
                f"{', '.join(sorted(attacks.available()))} (or null: no escalation)"
            )
        cls = attacks.get(name)
        norm = ev.attacks[0].norm
        if cls.minimal_norm or norm not in cls.norms:
            raise ValueError(
                f"evaluation.escalate: {name!r} cannot re-attack the first evaluation "
                f"({ev.attacks[0].key()}, {norm}) at its ε: give an attack with an ε budget "
                f"in the {norm} norm (e.g. {DEFAULT_ESCALATION}), or null"
            )


def _message(exc: ValidationError, source: str) -> str:
    return f"{source}: invalid study spec — " + "; ".join(field_errors(exc.errors()))


def load_spec(source: str | Path | dict[str, Any]) -> StudySpec:
    """A :class:`StudySpec` from a YAML file or a dict; errors name the file and the field."""
    if isinstance(source, dict):
        raw, where = source, "spec"
    else:
        path = Path(source)
        if not path.is_file():
            raise StudyError(
                f"{path}: no such study spec file (give a .yaml file or --preset NAME)"
            )
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise StudyError(f"{path}: not valid YAML: {one_line(exc)}") from None
        where = str(path)
        if not isinstance(raw, dict):
            raise StudyError(f"{path}: a study spec is a YAML mapping (name:, dataset:, ...)")
        raw.setdefault("name", path.stem)
    try:
        return StudySpec.model_validate(raw)
    except ValidationError as exc:
        raise StudyError(_message(exc, where)) from None
