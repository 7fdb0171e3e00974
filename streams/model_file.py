"""The lifetime-value model file: written by `tierstream model fit`, read by policies that
name it in `model:`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from models.errors import ModelFitError
from rules import lifetime_value as lv

KIND = "tierstream/lifetime-value-model"


def write(model: dict[str, Any], path: Path) -> None:
    path.write_text(yaml.safe_dump(model, sort_keys=False, allow_unicode=True), encoding="utf-8")


def read(path: Path) -> lv.Model:
    """A model file written by `write`, checked to be usable; ModelFitError names what is wrong."""
    try:
        model = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ModelFitError(f"{path}: cannot read the model file: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ModelFitError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(model, dict) or model.get("kind") != KIND:
        raise ModelFitError(f"{path}: not a tierstream model file (kind: {KIND} missing)")
    try:
        bg, gg = model["bgnbd"], model["gamma_gamma"]
        values = {k: float(bg[k]) for k in ("r", "alpha", "a", "b")}
        values |= {k: float(gg[k]) for k in ("p", "q", "v")}
        currency, calibration = str(model["currency"]), model.get("calibration")
        calibration = calibration if isinstance(calibration, dict) else {}
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFitError(f"{path}: missing or invalid parameter {error}") from None
    bad = [k for k, v in values.items() if not (math.isfinite(v) and v > 0)]
    if bad or values["q"] <= 1 or model.get("time_unit", "week") != "week":
        raise ModelFitError(f"{path}: parameters must be positive numbers with q > 1 and the time "
                            f"unit week; got {values}, time unit {model.get('time_unit')!r}")
    return lv.Model(lv.BgNbd(*(values[k] for k in ("r", "alpha", "a", "b"))),
                    lv.GammaGamma(*(values[k] for k in ("p", "q", "v"))), currency,
                    (str(calibration.get("start", "")), str(calibration.get("end", ""))))
