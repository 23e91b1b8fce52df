"""Combine model folders of one architecture, to measure whether it helps on unseen CT.

The figures: the model table in Docs/model-development.md.

Not a test and not a product feature (neither helped, measured 2026-12-04):

- ``average OUT MODEL...``: a model folder whose FCN weights are the uniform average of the models' (a model and its
  fine-tune: WiSE-FT, Wortsman et al. 2022; fine-tunes of one start: a model soup); everything else from the first.
- ``ensemble CT OUT MODEL...``: segment CT with the models' FCN outputs (mask logits, label, completeness logit)
  averaged per patch, everything else from the first model; writes the usual outputs for ``spineseg evaluate``.

Usage: python Testing/benchmarks/combine_models.py average|ensemble ...
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from SpineSegmentationLib.io import read_image  # noqa: E402
from SpineSegmentationLib.models import load_model, save_model  # noqa: E402
from SpineSegmentationLib.networks.iterative_fcn import IterativeFCNOutput  # noqa: E402
from SpineSegmentationLib.outputs import write_outputs  # noqa: E402
from SpineSegmentationLib.pipeline import segment_spine  # noqa: E402


class Ensemble(torch.nn.Module):
    """The mean of several IterativeFCNs' outputs (the traversal sees one network)."""

    def __init__(self, nets: list[torch.nn.Module]) -> None:
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)
        self.config = nets[0].config

    def forward(self, x: torch.Tensor) -> IterativeFCNOutput:
        outs = [net(x) for net in self.nets]
        return IterativeFCNOutput(*[torch.stack([getattr(o, f) for o in outs]).mean(0)
                                    for f in IterativeFCNOutput._fields])


def average(out: str, paths: list[str]) -> None:
    models = [load_model(p) for p in paths]
    states = [m.fcn.state_dict() for m in models]
    base = models[0]
    base.fcn.load_state_dict({k: (sum(s[k].double() for s in states) / len(states)).to(v.dtype)
                              if v.is_floating_point() else v for k, v in states[0].items()})
    training = dict(base.training, averaged_from=paths)
    save_model(dataclasses.replace(base, name=f"{base.name}-average", training=training), out)
    print(f"written {out}")


def ensemble(ct: str, out: str, paths: list[str]) -> None:
    models = [load_model(p) for p in paths]
    model = dataclasses.replace(models[0], fcn=Ensemble([m.fcn for m in models]).eval())
    image = read_image(ct)  # read once: the pipeline and the outputs use the same image
    result = segment_spine(image, model=model, device="cpu")
    write_outputs(result, image, out, input_path=ct)
    print(" ".join(v.name for v in result.vertebrae))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="how", required=True)
    a = sub.add_parser("average")
    a.add_argument("out")
    a.add_argument("models", nargs="+")
    e = sub.add_parser("ensemble")
    e.add_argument("ct")
    e.add_argument("out")
    e.add_argument("models", nargs="+")
    args = ap.parse_args(argv)
    if len(args.models) < 2:
        ap.error("name at least two model folders")
    if args.how == "average":
        average(args.out, args.models)
    else:
        ensemble(args.ct, args.out, args.models)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
