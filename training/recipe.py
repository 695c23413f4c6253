"""Run a training recipe: phases of ``training.train`` in order, each warm-started from the export
of the one before (training/recipes/*.toml; v7.toml is the shipped decoder's).

    python -m training.recipe training/recipes/v7.toml --data data --out runs/v7
    python -m training.recipe training/recipes/v7.toml --data data --out runs/v7 --dry-run
    python -m training.recipe RECIPE --data data --out runs/x -- --device cuda   # more flags for every phase
    python -m training.recipe RECIPE --data data --out runs/x --nproc-per-node 4  # each phase on 4 GPUs (DDP)

Each phase trains in OUT/PHASE and is exported to OUT/PHASE/export/decoder.safetensors. Running
the same command again picks up where it stopped: finished phases are skipped, an interrupted one
resumes from its checkpoint. A recipe file has a ``[common]`` table of trainer flags and
``[[phase]]`` entries with ``name``, an optional ``note``, ``flags`` (added to the common ones,
replacing those of the same name) and ``init`` ("previous", the default; "none"; or a file).
Flag values: true = ``--flag``, false = ``--no-flag``, anything else ``--flag VALUE``; {data} and
{weights} in strings stand for --data and the weights folder.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from model.paths import WEIGHTS_DIR
from training.checkpoint import load as load_checkpoint
from training.export import export

DECODER = Path("export") / "decoder.safetensors"


@dataclass(frozen=True)
class Phase:
    name: str
    flags: dict[str, object]
    init: str = "previous"
    note: str = ""


def load_recipe(path: Path) -> list[Phase]:
    recipe = tomllib.loads(path.read_text())
    common = recipe.get("common", {})
    phases = [Phase(p["name"], {**common, **p.get("flags", {})}, p.get("init", "previous"), p.get("note", ""))
              for p in recipe.get("phase", [])]
    if not phases:
        raise ValueError(f"{path} has no [[phase]]")
    names = [p.name for p in phases]
    if len(set(names)) != len(names) or any(not n or "/" in n for n in names):
        raise ValueError(f"{path}: phase names must be unique folder names, got {names}")
    if phases[0].init == "previous":
        phases[0] = Phase(phases[0].name, phases[0].flags, "none", phases[0].note)
    return phases


def flag_args(flags: dict[str, object], data: Path) -> list[str]:
    args: list[str] = []
    for key, value in flags.items():
        if value is True:
            args.append(f"--{key}")
        elif value is False:
            args.append(f"--no-{key}")
        else:
            args += [f"--{key}", str(value).format(data=data, weights=WEIGHTS_DIR)]
    return args


def command(phase: Phase, previous: Path | None, data: Path, out: Path, extra: list[str], nproc: int = 1) -> list[str]:
    """The trainer command of a phase: resumed from its own checkpoint when it has one; under
    torchrun with ``nproc`` processes (one per GPU) when more than one."""
    run = out / phase.name
    start: list[str] = []
    if (run / "checkpoint.pt").exists():
        start = ["--resume", str(run / "checkpoint.pt")]
    elif phase.init == "previous" and previous is not None:
        start = ["--init", str(previous)]
    elif phase.init not in ("none", "previous"):
        start = ["--init", phase.init.format(data=data, weights=WEIGHTS_DIR)]
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc > 1 else []
    return [sys.executable, *launcher, "-m", "training.train", *flag_args(phase.flags, data), "--out", str(run),
            *start, *extra]


def run(recipe: Path, data: Path, out: Path, extra: list[str], dry_run: bool = False, nproc: int = 1) -> Path:
    """Run (or print) every phase not yet done; returns the last phase's decoder."""
    phases = load_recipe(recipe)
    previous: Path | None = None
    for i, phase in enumerate(phases, 1):
        run_dir, decoder = out / phase.name, out / phase.name / DECODER
        title = f"phase {i}/{len(phases)} {phase.name}" + (f": {phase.note}" if phase.note else "")
        if decoder.exists():
            print(f"{title} - done ({decoder})", flush=True)
        else:
            cmd = command(phase, previous, data, out, extra, nproc)
            print(f"{title}\n  {shlex.join(cmd)}", flush=True)
            if dry_run:
                previous = decoder
                continue
            subprocess.run(cmd, check=True)
            ckpt = load_checkpoint(run_dir / "checkpoint.pt")
            if ckpt["step"] < ckpt["args"]["max_iter"]:
                sys.exit(f"{phase.name} stopped at step {ckpt['step']} of {ckpt['args']['max_iter']}; "
                         "run the same command again to resume it")
            export(run_dir / "checkpoint.pt", run_dir / "export", data=f"recipe {recipe.name}, phase {phase.name}")
            print(f"  exported {decoder}", flush=True)
        previous = decoder
    return out / phases[-1].name / DECODER


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", type=Path)
    p.add_argument("--data", type=Path, default=Path("data"), help="the corpus folder ({data} in the recipe)")
    p.add_argument("--out", type=Path, required=True, help="one folder per phase is made here")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--nproc-per-node", type=int, default=1, help="processes (GPUs) per phase; > 1 runs torchrun")
    p.add_argument("--publish", metavar="NAME", help="at the end, the last phase's decoder into the model store as "
                   "NAME with the gate's held-out numbers ({data}/val/content x {data}/val/style; training/publish.py)")
    args = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    try:
        final = run(args.recipe, args.data, args.out, extra, args.dry_run, args.nproc_per_node)
    except (OSError, ValueError, KeyError, tomllib.TOMLDecodeError) as e:
        p.error(f"{args.recipe}: {e}")
    except subprocess.CalledProcessError as e:
        sys.exit(f"a phase failed (exit status {e.returncode}); fix it and run the same command again to resume")
    if not args.dry_run:
        print(f"recipe done: {final} (copy it to weights/ with its SHA256SUMS to ship it)")
    if args.publish and not args.dry_run:
        from training.publish import main as publish

        publish([str(final), "--name", args.publish, "--val-content-dir", str(args.data / "val" / "content"),
                 "--val-style-dir", str(args.data / "val" / "style")])


if __name__ == "__main__":
    main()
